//! Fuzz target `inject`. The invariants live in `checks/inject.rs`, shared with
//! the regression test `tests/it/fuzz_regressions.rs`; see `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/inject.rs"]
mod inject;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inject::check(data);
});
