//! Fuzz target `forwarded`. The invariants live in `checks/forwarded.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/forwarded.rs"]
mod forwarded;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    forwarded::check(data);
});
