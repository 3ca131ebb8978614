#![no_main]
//! Fuzz target `ox`: see `e2elab::fuzz::Target::Ox`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Ox, data);
});
