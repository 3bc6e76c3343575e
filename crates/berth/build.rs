//! Release builds on x86-64 Linux, linked by LLD (Rust's default there), place the functions
//! that start-up runs next to each other (`startup-order.txt`, made by
//! `bench/startup-order.sh`): the kernel maps code in 64 KiB pieces around each page it
//! runs, so start-up code spread across the binary maps most of it. A name the build does
//! not have (an older list) is skipped quietly; the list only moves code, never changes it.

fn main() {
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=BERTH_NO_STARTUP_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let lld_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    // A linker chosen by hand may not know the option.
    let own_linker = var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        || std::env::vars().any(|(k, _)| k.starts_with("CARGO_TARGET_") && k.ends_with("_LINKER"));
    if release && lld_default && !own_linker && std::env::var_os("BERTH_NO_STARTUP_ORDER").is_none()
    {
        let list = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("startup-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
