//! Device strings as they appear in configs and on the command line.

use crate::{Error, Result};
use candle_core::Device;

/// Parses "cpu", "cuda" (= "cuda:0"), "cuda:N", "metal" or "auto" (CUDA if this build and
/// machine have it, else Metal, else CPU). Anything else, or a GPU this build was compiled
/// without, is an [`Error::Device`] that says what was expected.
pub fn parse_device(s: &str) -> Result<Device> {
    let spec = s.trim();
    let err = |msg: String| Error::Device { spec: s.to_string(), msg };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).map_err(|e| err(e.to_string()))
            } else if candle_core::utils::metal_is_available() {
                Device::new_metal(0).map_err(|e| err(e.to_string()))
            } else {
                Ok(Device::Cpu)
            }
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(err("this build has no Metal support (build with --features metal)".into()));
            }
            Device::new_metal(0).map_err(|e| err(e.to_string()))
        }
        _ => {
            let ordinal = if spec == "cuda" {
                0
            } else if let Some(n) = spec.strip_prefix("cuda:") {
                n.parse::<usize>()
                    .map_err(|_| err(format!("`{n}` is not a GPU index; expected \"cuda:N\" with N a number")))?
            } else {
                return Err(err("expected \"cpu\", \"cuda\", \"cuda:N\", \"metal\" or \"auto\"".into()));
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(err("this build has no CUDA support (build with --features cuda)".into()));
            }
            Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_auto() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        // Without GPU features, auto must fall back to the CPU.
        #[cfg(not(any(feature = "cuda", feature = "metal")))]
        assert!(parse_device("auto").unwrap().is_cpu());
    }

    #[test]
    fn rejects_garbage_with_a_clear_message() {
        for bad in ["gpu", "cuda:x", "CPU0", ""] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("expected") || e.contains("GPU index"), "{bad}: {e}");
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0").unwrap_err().to_string().contains("features cuda"));
    }
}
