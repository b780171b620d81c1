//! The co-browsing proxy (issue 10): `inject.rs` puts the co-browsing scripts into the HTML pages it forwards.
pub(crate) mod inject;
