//! Fuzz target `token`. The invariants live in `checks/token.rs`, shared
//! with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/token.rs"]
mod token;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    token::check(data);
});
