//! Static builds only (`-C target-feature=+crt-static`, scripts/build-static.sh):
//! libpcap.a needs libdbus-1.a, which needs two libsystemd functions that
//! have no static library; a stub provides them. A dynamic build emits nothing.

fn main() {
    println!("cargo:rerun-if-changed=static/sd_stub.c");
    println!("cargo:rerun-if-env-changed=CARGO_CFG_TARGET_FEATURE");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        return;
    }
    cc::Build::new().file("static/sd_stub.c").cargo_metadata(false).compile("ossensor_sd_stub");
    // rustc places a crate's native libraries before its dependencies' ones,
    // so pcap is named again here, ahead of what it needs (dbus-1, the stub).
    // Unbundled: the linker must see them in this order, after the rlibs.
    println!("cargo:rustc-link-search=native={}", std::env::var("OUT_DIR").unwrap());
    println!("cargo:rustc-link-lib=static:-bundle=pcap");
    println!("cargo:rustc-link-lib=static:-bundle=dbus-1");
    println!("cargo:rustc-link-lib=static:-bundle=ossensor_sd_stub");
}
