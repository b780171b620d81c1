//! Checks for the small header parsers of requests: the `Cookie` reader of
//! co-browsing and of the shared application session
//! (`tandem::cobrowse::share::cookie`, through the hidden
//! `tandem::__private::cookie_for_test`) and the `Accept` negotiation of
//! `GET /ch/{c}` (`tandem::__private::negotiate_for_test`).
//!
//! Input layout: byte 0 picks the cookie name looked up (from `NAMES`);
//! the rest is lines, each one `Cookie` header value (the first line is
//! also the `Accept` value). Then the same lines are read as `name=value`
//! pairs for the round trip.
//!
//! Invariants:
//! * the cookie found is the value of the *first* pair whose name is
//!   exactly the one asked (not a prefix or suffix of another, not in a
//!   value), in header order, quotes trimmed, and never empty; a value
//!   found contains no `;`;
//! * round trip: pairs written into `Cookie` headers (split over several
//!   header lines at input-chosen points) are read back, each name giving
//!   the value of its first pair;
//! * `Accept`: `text/event-stream` anywhere (any case) gives SSE, then
//!   `multipart/mixed`, then `multipart/x-mixed-replace`, else long-poll;
//!   a value hyper would refuse, or none, gives long-poll.
#![allow(dead_code)]

use tandem::__private::{cookie_for_test, negotiate_for_test, Sub};

pub const NAMES: [&str; 8] = [
    "tandem_help",
    "tandem_agent",
    "tandem_present",
    "tandem_follow",
    "portal",
    "a",
    "tandem",
    "",
];

fn storable(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 32 && b != 127))
}

fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

/// The first pair named `name`, read the way RFC 6265 5.4 writes them.
fn model(values: &[&[u8]], name: &str) -> Option<String> {
    for v in values {
        if !storable(v) || !visible(v) {
            continue;
        }
        let v = std::str::from_utf8(v).unwrap();
        for pair in v.split(';') {
            let pair = pair.trim_matches(|c: char| c == ' ' || c == '\t');
            let Some(eq) = pair.find('=') else { continue };
            if &pair[..eq] == name {
                let value = pair[eq + 1..].trim_matches('"');
                return (!value.is_empty()).then(|| value.to_string());
            }
        }
    }
    None
}

pub fn check(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(sel) % NAMES.len()];
    let lines: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    let got = cookie_for_test(&lines, name);
    assert_eq!(got, model(&lines, name), "{name:?} in {lines:?}");
    if let Some(v) = &got {
        assert!(!v.is_empty() && !v.contains(';'), "{v:?}");
    }

    // Round trip: pairs over a cookie-safe alphabet, written out.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in &lines {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let n = &line[..eq];
        let v = &line[eq + 1..];
        let token = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
        let octet = |c: &u8| (0x21..0x7f).contains(c) && !b"\",;\\".contains(c);
        if n.is_empty() || !n.iter().all(token) || !v.iter().all(octet) {
            continue;
        }
        pairs.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(v.to_vec()).unwrap(),
        ));
    }
    if !pairs.is_empty() {
        let mut headers: Vec<String> = vec![String::new()];
        for (i, (n, v)) in pairs.iter().enumerate() {
            let last = headers.last_mut().unwrap();
            if !last.is_empty() {
                last.push_str("; ");
            }
            last.push_str(&format!("{n}={v}"));
            if sel & (1 << (i % 8)) != 0 {
                headers.push(String::new());
            }
        }
        let values: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
        for (n, _) in &pairs {
            let first = &pairs.iter().find(|(m, _)| m == n).unwrap().1;
            let want = (!first.is_empty()).then(|| first.clone());
            assert_eq!(cookie_for_test(&values, n), want, "{n:?} in {headers:?}");
        }
    }

    // Accept.
    let accept = lines[0];
    let lower = if storable(accept) && visible(accept) {
        String::from_utf8(accept.to_ascii_lowercase()).unwrap()
    } else {
        String::new()
    };
    let want = if lower.contains("text/event-stream") {
        Sub::Sse
    } else if lower.contains("multipart/mixed") {
        Sub::Mixed
    } else if lower.contains("multipart/x-mixed-replace") {
        Sub::Multipart
    } else {
        Sub::Poll
    };
    assert_eq!(negotiate_for_test(Some(accept)), want, "{accept:?}");
    assert_eq!(negotiate_for_test(None), Sub::Poll);
}
