//! Invariants of the publish body parsers (`tandem::http::publish`).
//!
//! Shared by the fuzz target `publish_body` and by `tests/it/fuzz_regressions.rs`,
//! so it uses only tandem's public API, std, tokio and bytes.
//!
//! Input layout (every input is valid, so the fuzzer never wastes a run):
//!
//! * byte 0 picks the limits: `max_parts = 1 + (b & 7)`, and bits 3..6 pick
//!   `max_event_bytes` from [`EVENT_LIMITS`]; small limits reach the 413 paths
//!   with small inputs.
//! * up to the first `\n`: a `Content-Type` header, classified with
//!   `BodyKind::from_content_type`; the body is then parsed as that kind says.
//! * the rest: the body. It is also parsed as a form and as
//!   `multipart/form-data` with the fixed boundary [`BOUNDARY`], whatever the
//!   header said, so the body parsers are reached even when the header is junk.
//!
//! What must hold: no panic; an accepted body gives 1 to `max_parts` events,
//! each with a valid type and at most `max_event_bytes` of data; a refusal is a
//! 400 or 413 with a non-empty lowercase message.

use bytes::Bytes;
use tandem::__private::{parse_form, parse_multipart, BodyKind};
use tandem::{Config, Error, NewEvent};

/// The boundary of the fixed-boundary multipart parse.
pub const BOUNDARY: &str = "fuzz";

/// `max_event_bytes` choices: tiny ones make the size limit reachable.
pub const EVENT_LIMITS: [usize; 8] = [1, 2, 5, 16, 64, 256, 4096, 65536];

/// The type given to events whose body or part names none.
const DEFAULT_TYPE: &str = "message";

/// What each parse gave: the number of events, or the refusal's status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The body as a form.
    pub form: Option<Result<usize, u16>>,
    /// The body as multipart with [`BOUNDARY`].
    pub multipart: Option<Result<usize, u16>>,
    /// The body as its content type says (`None` for raw and for forms, which
    /// `form` already covers).
    pub by_header: Option<Result<usize, u16>>,
}

/// Runs every parser on one input and checks what comes out. The outcome lets
/// hand-written inputs also say what they expect.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((&limits, rest)) = data.split_first() else {
        return out;
    };
    let cfg = Config::default()
        .max_parts(1 + (limits & 7) as usize)
        .max_event_bytes(EVENT_LIMITS[((limits >> 3) & 7) as usize]);
    cfg.validate().expect("the fuzz config is valid");
    let (header, body) = match rest.iter().position(|&c| c == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };

    let form = parse_form(body, DEFAULT_TYPE, &cfg).map(|e| vec![e]);
    out.form = Some(check_many("form", form, &cfg));
    let fixed = multipart(body, BOUNDARY, &cfg);
    out.multipart = Some(check_many("multipart (fixed boundary)", fixed, &cfg));

    // Header values reach the server as `&str` only when they are valid text.
    let Ok(header) = std::str::from_utf8(header) else {
        return out;
    };
    let ct = Some(header).filter(|h| !h.is_empty());
    match BodyKind::from_content_type(ct) {
        Err(e) => {
            check_error("content type", &e);
            assert!(e.is_bad_request(), "a bad content type is a 400: {e:?}");
        }
        Ok(kind) => {
            // Every kind must allow at least one full-size event.
            assert!(kind.max_body(&cfg) >= cfg.max_event_bytes, "{kind:?}");
            match kind {
                BodyKind::Raw(Some(ct)) => {
                    assert_eq!(ct, ct.trim(), "a raw content type is trimmed");
                    assert!(!ct.is_empty());
                }
                BodyKind::Raw(None) => assert!(header.trim().is_empty()),
                // Already parsed as a form above.
                BodyKind::Form => {}
                BodyKind::Multipart(boundary) => {
                    let r = multipart(body, &boundary, &cfg);
                    out.by_header = Some(check_many("multipart (header boundary)", r, &cfg));
                }
            }
        }
    }
    out
}

/// Drives the async multipart parser to completion. The body is one chunk that
/// is always ready, so a current-thread runtime without timers or I/O will do;
/// one per thread, because building one per input would dominate a fuzz run.
fn multipart(body: &[u8], boundary: &str, cfg: &Config) -> Result<Vec<NewEvent>, Error> {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    let body = Bytes::copy_from_slice(body);
    RT.with(|rt| rt.block_on(parse_multipart(body, boundary, DEFAULT_TYPE, cfg)))
}

fn check_many(what: &str, r: Result<Vec<NewEvent>, Error>, cfg: &Config) -> Result<usize, u16> {
    match r {
        Ok(events) => {
            assert!(!events.is_empty(), "{what}: accepted with no event");
            assert!(
                events.len() <= cfg.max_parts,
                "{what}: {} events, max_parts is {}",
                events.len(),
                cfg.max_parts
            );
            for e in &events {
                check_event(what, e, cfg);
            }
            Ok(events.len())
        }
        Err(e) => {
            check_error(what, &e);
            Err(tandem::http::status_of(&e).as_u16())
        }
    }
}

fn check_event(what: &str, e: &NewEvent, cfg: &Config) {
    assert!(
        tandem::check_type(&e.kind).is_ok(),
        "{what}: accepted invalid type {:?}",
        e.kind
    );
    assert!(
        e.data.len() <= cfg.max_event_bytes,
        "{what}: accepted {} bytes of data, max_event_bytes is {}",
        e.data.len(),
        cfg.max_event_bytes
    );
    // The parsers never know the publisher; the service sets `from` afterwards.
    assert_eq!(e.from, None, "{what}: parser set from");
}

/// A refusal is a client error the server can answer as-is: 400 or 413 and a
/// message in the house style (lowercase, like Rust's own error messages).
/// Character classes such as `A-Z` name the rule exactly, so they may keep
/// their capitals; nothing else may.
fn check_error(what: &str, e: &Error) {
    assert!(
        e.is_bad_request() || e.is_too_large(),
        "{what}: status {} for {:?}",
        tandem::http::status_of(e),
        e.message()
    );
    let msg = e.message();
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    assert!(
        !msg.replace("A-Z", "").chars().any(char::is_uppercase),
        "{what}: error message is not lowercase: {msg:?}"
    );
}
