//! Fuzz target `cookie_jar`. The invariants live in `checks/cookie_jar.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/cookie_jar.rs"]
mod cookie_jar;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cookie_jar::check(data);
});
