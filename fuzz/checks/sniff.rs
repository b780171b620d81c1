//! Checks for the `sniff` target: the server's own request-head parser and
//! its choice of path (`src/server/sniff.rs`), against `httparse` read
//! directly. The input is the first bytes of a connection, as they are.
//!
//! * no panic;
//! * incomplete exactly when `httparse` says so (with the same 48 headers,
//!   or with 100 for a head with more);
//! * refused (400) when `httparse` refuses it, or `http`'s types refuse
//!   what it parsed; refused (431) or given to hyper whole beyond 48
//!   headers;
//! * refused for its framing exactly when hyper would refuse it (a model
//!   of hyper's rules below): a length that is not plain digits or two
//!   different lengths before any `Transfer-Encoding`, a last
//!   `Transfer-Encoding` line not ending in `chunked`, a
//!   `Transfer-Encoding` in HTTP/1.0; no head hyper would refuse is served;
//! * a head turned into a request keeps the method, the path (origin form:
//!   exactly, less a `#fragment`), every header with its exact value (the
//!   values of one name in order), and leaves exactly the bytes after the
//!   head in the buffer;
//! * `Content-Length` is taken only when it is one header of plain digits;
//! * the lean paths are chosen only for what they can serve: an exchange is
//!   an HTTP/1.1 `POST` with a usable length, or `GET` without a body (a
//!   long-poll), with no `Transfer-Encoding`, `Upgrade` or `Expect`, and a
//!   plain or absent `Connection`; a stream is a `GET` with no body and
//!   nothing after it.

use std::collections::BTreeMap;

use tandem::__private::{sniff_bytes, SniffOutcome};

const MAX_HEADERS: usize = 48;

pub fn check(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut want = httparse::Request::new(&mut headers);
    let parsed = want.parse(data);
    let got = sniff_bytes(data);
    match (parsed, got) {
        (Ok(httparse::Status::Partial), SniffOutcome::Partial) => {}
        (Err(httparse::Error::TooManyHeaders), got) => {
            let mut more = [httparse::EMPTY_HEADER; 100];
            let mut head = httparse::Request::new(&mut more);
            match (head.parse(data), got) {
                (Ok(httparse::Status::Partial), SniffOutcome::Partial) => {}
                (Ok(httparse::Status::Complete(_)), SniffOutcome::Other { taken, rest }) => {
                    assert_eq!(
                        framing_refused(head.version, head.headers),
                        None,
                        "a head hyper would refuse is given to hyper"
                    );
                    assert!(taken.is_empty(), "a head for hyper is not taken out");
                    assert_eq!(rest, data, "all of it goes to hyper");
                }
                // Handed to hyper only if hyper would take its framing.
                (Ok(httparse::Status::Complete(_)), SniffOutcome::Refused { why }) => {
                    assert_eq!(
                        Some(why),
                        framing_refused(head.version, head.headers),
                        "refused for its framing"
                    );
                }
                (Err(httparse::Error::TooManyHeaders), SniffOutcome::Refused { .. }) => {}
                (Err(_), SniffOutcome::Refused { .. }) => {}
                (parsed, got) => panic!("httparse (100) says {parsed:?}, sniff says {got:?}"),
            }
        }
        (Err(_), SniffOutcome::Refused { .. }) => {}
        // Valid for httparse, not for `http`'s types (hyper refuses these
        // too), or framed as hyper would refuse: refused.
        // (A head wrong both ways may be refused for either.)
        (Ok(httparse::Status::Complete(_)), SniffOutcome::Refused { why }) => {
            let for_framing = why.contains("Content-Length") || why.contains("Transfer-Encoding");
            if for_framing {
                assert_eq!(
                    Some(why),
                    framing_refused(want.version, want.headers),
                    "refused for its framing"
                );
            }
        }
        (
            Ok(httparse::Status::Complete(n)),
            SniffOutcome::Head {
                method,
                uri,
                version,
                headers,
                length,
                special,
                keep_alive,
                path,
                rest,
            },
        ) => {
            assert_eq!(Some(method.as_str()), want.method);
            assert_eq!(
                framing_refused(want.version, want.headers),
                None,
                "a head hyper would refuse is served"
            );
            let target = want.path.expect("a complete head has a path");
            if target.starts_with('/') {
                // `http`'s `Uri` drops a fragment (as hyper's requests do).
                let without_fragment = target.split('#').next().unwrap_or("");
                assert_eq!(uri, without_fragment, "the path is kept as sent");
            }
            assert_eq!(Some(version), want.version);
            assert_eq!(rest, &data[n..], "the bytes after the head stay");
            // A header map keeps the values of one name in order, and groups
            // the names (as hyper's requests do): compare name by name.
            let mut kept: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
            for (name, value) in &headers {
                kept.entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(value);
            }
            let mut sent: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
            for h in want.headers.iter() {
                sent.entry(h.name.to_ascii_lowercase())
                    .or_default()
                    .push(h.value);
            }
            assert_eq!(kept, sent, "every header is kept, with its exact value");
            let lengths = values(want.headers, "content-length");
            let expected_length = match lengths.as_slice() {
                [] => Some(0),
                [v] if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok()),
                _ => None,
            };
            assert_eq!(length, expected_length, "Content-Length {lengths:?}");
            let expected_special = ["transfer-encoding", "upgrade", "expect"]
                .iter()
                .any(|n| !values(want.headers, n).is_empty());
            assert_eq!(special, expected_special);
            let connections = values(want.headers, "connection");
            let expected_keep_alive = match connections.as_slice() {
                [] => Some(true),
                [v] if v.eq_ignore_ascii_case(b"keep-alive") => Some(true),
                [v] if v.eq_ignore_ascii_case(b"close") => Some(false),
                _ => None,
            };
            assert_eq!(
                keep_alive, expected_keep_alive,
                "Connection {connections:?}"
            );
            match path {
                "exchange" => {
                    assert!(
                        method == "POST" || (method == "GET" && length == Some(0)),
                        "{method} {length:?}"
                    );
                    assert_eq!(version, 1);
                    assert!(length.is_some() && !special && keep_alive.is_some());
                }
                "stream" => {
                    assert_eq!(method, "GET");
                    assert_eq!(length, Some(0));
                    assert!(!special && rest.is_empty());
                }
                "hyper" => {}
                other => panic!("unknown path {other}"),
            }
        }
        (parsed, got) => panic!("httparse says {parsed:?}, sniff says {got:?}"),
    }
}

/// The values of every header called `name`, in order.
fn values<'a>(headers: &[httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// hyper's verdict on a head's framing (`proto/h1/role.rs`), with the
/// message tandem's refusal gives: found by position rather than in one
/// pass as the server does.
fn framing_refused(version: Option<u8>, headers: &[httparse::Header]) -> Option<&'static str> {
    let is = |h: &httparse::Header, name: &str| h.name.eq_ignore_ascii_case(name);
    let first_te = headers.iter().position(|h| is(h, "transfer-encoding"));
    // Lengths after a `Transfer-Encoding` are not read.
    let before = &headers[..first_te.unwrap_or(headers.len())];
    let mut first = None;
    for h in before.iter().filter(|h| is(h, "content-length")) {
        let digits = !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
        let n = digits
            .then(|| std::str::from_utf8(h.value).ok()?.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n < u64::MAX - 1);
        match (n, first) {
            (None, _) => return Some("invalid Content-Length: digits only"),
            (Some(n), Some(f)) if n != f => return Some("conflicting Content-Length headers"),
            (Some(n), _) => first = Some(n),
        }
    }
    let te = first_te?;
    if version == Some(0) {
        return Some("Transfer-Encoding in an HTTP/1.0 request");
    }
    let last = headers[te..]
        .iter()
        .rev()
        .find(|h| is(h, "transfer-encoding"))
        .expect("one at least");
    let text = std::str::from_utf8(last.value)
        .ok()
        .filter(|t| t.chars().all(|c| c == '\t' || (' '..='~').contains(&c)));
    let chunked = text
        .and_then(|t| t.split(',').next_back())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
    (!chunked).then_some("a Transfer-Encoding must end with chunked")
}
