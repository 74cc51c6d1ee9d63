// Records the compiler version for summary.json.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("--version").output() {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("cargo:rustc-env=SLUICE_RUSTC_VERSION={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
