//! Fuzz target `route_query`. The invariants live in `checks/route_query.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/route_query.rs"]
mod route_query;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    route_query::check(data);
});
