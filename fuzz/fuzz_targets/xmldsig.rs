#![no_main]
//! Fuzz target `xmldsig`: see `e2elab::fuzz::Target::Xmldsig`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Xmldsig, data);
});
