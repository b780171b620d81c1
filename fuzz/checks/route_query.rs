//! Invariants of path and query parsing (`tandem::http::route`).
//!
//! Shared by the fuzz target `route_query` and by `tests/it/fuzz_regressions.rs`,
//! so it uses only tandem's public API and std.
//!
//! The input, as text (lossily if it is not UTF-8), is tried as a path, a query
//! string, a callback and a percent-encoded string; its first 8 bytes are also
//! a number. What must hold: no panic; whatever is accepted is valid by rules
//! written out again here (channel names, callbacks, client ids, types); the
//! percent decoder agrees with a second, simpler one; numbers, cursors and
//! channel names survive a trip through a query string or a path; the input is
//! a cursor (`EPOCH:ID` or `ID`) exactly when a grammar written out again here
//! says so.

use tandem::__private::{check_callback, parse_path, percent_decode, Query, Route};
use tandem::{check_channel, check_type, Cursor, Error};

/// What the input gave as a path and as a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `parse_path` of the input.
    pub path: Result<Option<Route>, Error>,
    /// `Query::parse` of the input.
    pub query: Result<Query, Error>,
}

/// Runs every parser on one input and checks what comes out. The outcome lets
/// hand-written inputs also say what they expect.
pub fn check(data: &[u8]) -> Outcome {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();

    let out = Outcome {
        path: parse_path(s),
        query: Query::parse(s),
    };
    check_path(s, &out.path);
    check_query(s, &out.query);
    check_callback_agrees(s);
    check_percent(s);
    check_channel_path(s);
    check_cursor(s);
    let mut n = [0u8; 8];
    let k = data.len().min(8);
    n[..k].copy_from_slice(&data[..k]);
    check_number(u64::from_le_bytes(n));
    out
}

fn check_path(s: &str, path: &Result<Option<Route>, Error>) {
    match path {
        Ok(Some(Route::Channel(c) | Route::Info(c) | Route::Subscribe(c, _))) => {
            assert!(check_channel(c).is_ok(), "path {s:?} gave channel {c:?}");
            assert!(is_name(c, 128), "path {s:?} gave channel {c:?}");
            assert!(s.starts_with("/ch/"), "path {s:?} gave channel {c:?}");
        }
        Ok(_) => {}
        Err(e) => check_error(s, e),
    }
}

fn check_query(s: &str, q: &Result<Query, Error>) {
    let q = match q {
        Ok(q) => q,
        Err(e) => return check_error(s, e),
    };
    if let Some(cb) = &q.callback {
        assert!(is_callback(cb), "query {s:?} gave callback {cb:?}");
    }
    if let Some(c) = &q.client {
        assert!(is_name(c, 64), "query {s:?} gave client {c:?}");
    }
    if let Some(t) = &q.kind {
        assert!(is_name(t, 64), "query {s:?} gave type {t:?}");
        assert!(check_type(t).is_ok());
    }
    if let Some(t) = q.timeout {
        assert!(
            t.as_secs_f64() <= 86_400.0,
            "query {s:?} gave timeout {t:?}"
        );
    }
    // What was read back out must read the same when written again.
    if let Some(n) = q.backlog {
        let again = Query::parse(&format!("backlog={n}")).expect("a number parses");
        assert_eq!(again.backlog, Some(n), "backlog={n}");
    }
    if let Some(c) = q.since {
        let again = Query::parse(&format!("since={c}")).expect("a cursor parses");
        assert_eq!(again.since, Some(c), "since={c}");
    }
}

/// `Cursor`'s parser accepts exactly `EPOCH:ID` (EPOCH 1 to 16 of `0-9 a-z`)
/// and `ID` (ASCII digits that fit a u64), and gives back what it read.
fn check_cursor(s: &str) {
    let theirs = s.parse::<Cursor>();
    let ours = cursor(s);
    match (&theirs, &ours) {
        (Ok(c), Some((epoch, id))) => {
            assert_eq!(c.epoch.as_ref().map(|e| e.as_str()), *epoch, "{s:?}");
            assert_eq!(c.id, *id, "{s:?}");
            // Written again it reads the same (leading zeros are dropped).
            assert_eq!(c.to_string().parse::<Cursor>().as_ref(), Ok(c), "{s:?}");
        }
        (Err(e), None) => {
            check_error(s, e);
            assert!(e.message().contains("EPOCH:ID or ID"), "{s:?}: {e:?}");
        }
        _ => panic!("{s:?} parsed as {theirs:?}, expected {ours:?}"),
    }
}

fn cursor(s: &str) -> Option<(Option<&str>, u64)> {
    let (epoch, id) = match s.find(':') {
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    };
    if let Some(e) = epoch {
        let ok = (1..=16).contains(&e.len())
            && e.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
        if !ok {
            return None;
        }
    }
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((epoch, id.parse().ok()?))
}

/// `check_callback` must accept exactly the dotted JavaScript identifiers of at
/// most 64 characters: no less (callers would break) and no more (a callback is
/// written into a script, so anything else is an injection).
fn check_callback_agrees(s: &str) {
    let theirs = check_callback(s);
    assert_eq!(
        theirs.is_ok(),
        is_callback(s),
        "check_callback({s:?}) = {theirs:?}"
    );
    if let Err(e) = theirs {
        check_error(s, &e);
    }
}

/// A dotted JavaScript identifier, ASCII only, at most 64 characters.
fn is_callback(s: &str) -> bool {
    s.len() <= 64
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            let first = chars.next();
            matches!(first, Some('a'..='z' | 'A'..='Z' | '_' | '$'))
                && chars.all(|c| matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '$'))
        })
}

/// 1 to `max` of `A-Z a-z 0-9 . _ ~ : @ -` (channel names, types, client ids).
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_~:@".contains(c))
}

/// Compares `percent_decode` with a decoder written from the rule: `%` and two
/// hex digits is that byte, `%` otherwise is an error, `+` is a space in forms.
fn check_percent(s: &str) {
    for plus in [false, true] {
        let theirs = percent_decode(s, plus);
        let ours = decode(s.as_bytes(), plus);
        match (&theirs, &ours) {
            (Ok(a), Some(b)) => assert_eq!(a, b, "percent_decode({s:?}, {plus})"),
            (Err(e), None) => check_error(s, e),
            _ => panic!("percent_decode({s:?}, {plus}) = {theirs:?}, expected {ours:?}"),
        }
        // Encoding every byte and decoding gives the bytes back.
        if let Ok(bytes) = theirs {
            let again = percent_decode(&encode(&bytes), plus).expect("encoded text decodes");
            assert_eq!(again, bytes, "re-encoding {s:?}");
        }
    }
}

fn decode(s: &[u8], plus: bool) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A name written into a path, escaped, is routed to that very channel if and
/// only if it is a valid channel name.
fn check_channel_path(name: &str) {
    let path = format!("/ch/{}/sse", encode(name.as_bytes()));
    match parse_path(&path) {
        Ok(Some(Route::Subscribe(c, _))) => {
            assert_eq!(c, name, "path {path:?}");
            assert!(is_name(name, 128), "path {path:?} accepted {name:?}");
        }
        Ok(other) => panic!("path {path:?} gave {other:?}"),
        Err(e) => {
            assert!(!is_name(name, 128), "path {path:?} refused {name:?}: {e:?}");
            check_error(&path, &e);
        }
    }
}

/// Numbers survive `since=`, `backlog=`, with leading zeros too, and as the
/// id of an `EPOCH:ID` cursor; one past `u64::MAX` is refused rather than
/// wrapped.
fn check_number(n: u64) {
    let q = Query::parse(&format!("since={n}&backlog=000{n}")).expect("numbers parse");
    assert_eq!(
        (q.since, q.backlog),
        (Some(Cursor::bare(n)), Some(n)),
        "n = {n}"
    );
    let q = Query::parse(&format!("since=0z%3A{n}")).expect("a cursor parses");
    let c = q.since.expect("since");
    assert_eq!(
        (c.epoch.map(|e| e.to_string()), c.id),
        (Some("0z".into()), n)
    );
    assert_eq!(c.to_string(), format!("0z:{n}"));
    let over = u128::from(u64::MAX) + 1 + u128::from(n);
    let e = Query::parse(&format!("since={over}")).expect_err("past u64::MAX is refused");
    check_error("since", &e);
    assert!(Query::parse(&format!("since=-{n}")).is_err());
    assert!(Query::parse(&format!("since=+{n}")).is_err());
}

/// Every refusal here is the client's fault: a 400 with a message.
fn check_error(input: &str, e: &Error) {
    assert!(e.is_bad_request(), "{input:?}: {e:?}");
    assert!(!e.message().is_empty(), "{input:?}: empty message");
}
