//! Fuzz target `wire_roundtrip`. The invariants live in `checks/wire_roundtrip.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/wire_roundtrip.rs"]
mod wire_roundtrip;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_roundtrip::check(data));
