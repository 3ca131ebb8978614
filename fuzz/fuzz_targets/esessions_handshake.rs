#![no_main]
//! Fuzz target `esessions_handshake`: see `e2elab::fuzz::Target::EsessionsHandshake`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    e2elab::fuzz::run(e2elab::fuzz::Target::EsessionsHandshake, data);
});
