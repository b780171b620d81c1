//! Fuzz target `sniff`. The invariants live in `checks/sniff.rs`, shared with
//! the regression test `tests/it/fuzz_regressions.rs`; see `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/sniff.rs"]
mod sniff;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sniff::check(data);
});
