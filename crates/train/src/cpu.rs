//! The CPU the process runs on, as benchmark records name it: the `model name` line of
//! `/proc/cpuinfo` (what `lscpu` prints as "Model name"), vendor, family and model.

use serde_json::{json, Value};

/// The `model name` of the first processor in /proc/cpuinfo; "unknown" elsewhere.
pub fn model_name() -> String {
    field("model name").unwrap_or_else(|| "unknown".into())
}

fn field(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
        .map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default())
}

/// `{"model": .., "f32_kernel": .., "vendor": .., "family": .., "model_number": .., "features": [..]}`:
/// the CPU facts a figure depends on (SIMD features that pick kernels included) and the
/// recurrent-product strategy the fused f32 kernel chose on it.
pub fn describe() -> Value {
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(if std::is_x86_feature_detected!($f) { features.push($f); })*};
        }
        probe!("avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "avx512bf16", "avxvnni");
    }
    json!({
        "model": model_name(),
        "f32_kernel": model::fused::micro::strategy(),
        "vendor": field("vendor_id"),
        "family": field("cpu family"),
        "model_number": field("model"),
        "features": features,
    })
}
