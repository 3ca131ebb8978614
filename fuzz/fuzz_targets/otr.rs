#![no_main]
//! Fuzz target `otr`: see `e2elab::fuzz::Target::Otr`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Otr, data);
});
