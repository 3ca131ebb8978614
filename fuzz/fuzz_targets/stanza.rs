#![no_main]
//! Fuzz target `stanza`: see `e2elab::fuzz::Target::Stanza`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::Stanza, data);
});
