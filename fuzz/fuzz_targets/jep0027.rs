#![no_main]
//! Fuzz target `jep0027`: see `e2elab::fuzz::Target::Jep0027`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Jep0027, data);
});
