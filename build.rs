//! Records the compiler version for the `tortie_build_info` metric (under a name outside
//! `TORTIE_`: cargo also sets it when running the binary, and the agent reads `TORTIE_*` as
//! configuration).

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_INFO_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
