#![no_main]
//! Fuzz target `esessions_content`: see `e2elab::fuzz::Target::EsessionsContent`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::EsessionsContent, data);
});
