//! Fuzz target `tls_config`. The invariants live in `checks/tls_config.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/tls_config.rs"]
mod tls_config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tls_config::check(data);
});
