//! Find libotr and libgcrypt with pkg-config and run bindgen over `wrapper.h`.
#![allow(clippy::expect_used, clippy::panic)]

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    // libotr's .pc file does not pull in libgcrypt: probe both.
    let otr = pkg_config::Config::new()
        .atleast_version("4.0")
        .probe("libotr")
        .expect("libotr >= 4.0 not found by pkg-config (install libotr5-dev)");
    let gcrypt = pkg_config::Config::new()
        .probe("libgcrypt")
        .expect("libgcrypt not found by pkg-config (install libgcrypt20-dev)");
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("otrl_.*")
        .allowlist_function("gcry_check_version")
        .allowlist_function("gcry_strerror")
        // Used only by the test-only DH export of the safe wrapper.
        .allowlist_function("gcry_mpi_aprint")
        .allowlist_function("gcry_free")
        // The harness's libgcrypt floors: the symmetric primitives libotr's
        // data messages run, called directly.
        .allowlist_function("gcry_cipher_(open|close|setkey|setctr|encrypt)")
        .allowlist_function("gcry_md_(open|close|setkey|write|read|hash_buffer)")
        .allowlist_type("gcry_(cipher|md)_(algos|modes|flags)")
        .allowlist_type("gcry_mpi_format")
        .allowlist_type("Otrl.*|ConnContext")
        .allowlist_var("OTRL_.*")
        .allowlist_var("DH1536_GROUP_ID")
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for p in otr.include_paths.iter().chain(gcrypt.include_paths.iter()) {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on libotr's headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
    if let Some(v) = otr.version.split('.').next() {
        println!("cargo:version_major={v}");
    }
    println!("cargo:version={}", otr.version);
}
