//! Fuzz target `publish_body`. The invariants live in `checks/publish_body.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/publish_body.rs"]
mod publish_body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    publish_body::check(data);
});
