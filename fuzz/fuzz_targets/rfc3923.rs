#![no_main]
//! Fuzz target `rfc3923`: see `e2elab::fuzz::Target::Rfc3923`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Rfc3923, data);
});
