//! Fuzz target `router_model`. The invariants live in `checks/router_model.rs`,
//! shared with the regression test `tests/it/fuzz_regressions.rs`; see
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../checks/router_model.rs"]
mod router_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    router_model::check(data);
});
