//! Fuzz target `request_headers`. The invariants live in
//! `checks/request_headers.rs`, shared with the regression test
//! `tests/it/fuzz_regressions.rs`; see `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/request_headers.rs"]
mod request_headers;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    request_headers::check(data);
});
