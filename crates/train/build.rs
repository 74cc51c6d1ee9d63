// Records the compiler and the locked versions of the crates that shape the numbers, for
// summary.json.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("--version").output() {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("cargo:rustc-env=SLUICE_RUSTC_VERSION={v}");
    }
    let lock = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (krate, var) in [
        ("candle-core", "SLUICE_CANDLE_VERSION"),
        ("tokenizers", "SLUICE_TOKENIZERS_VERSION"),
        ("gemm", "SLUICE_GEMM_VERSION"),
    ] {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        let v = text
            .find(&needle)
            .map(|i| &text[i + needle.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("unknown");
        println!("cargo:rustc-env={var}={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", lock.display());
}
