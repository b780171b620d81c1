//! Paths and query strings: from a request line to a [`Route`] and [`Query`].
//!
//! Pure functions with no I/O, so the fuzz target `route` can hammer them and
//! check that whatever they accept is valid (channel names, callbacks, numbers).

use std::time::Duration;

use crate::error::Error;
use crate::event::{check_channel, check_client, check_type, Cursor};

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A file the binary serves itself (`/`, `/tandem.js`, the demo pages).
    Static(String),
    /// `/healthz`
    Health,
    /// `/metrics`
    Metrics,
    /// `/ch/{c}`: publish (POST) or negotiated subscribe (GET).
    Channel(String),
    /// `/ch/{c}/{transport}`
    Subscribe(String, Sub),
    /// `/ch/{c}/info`
    Info(String),
}

/// The subscribe routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// `/multipart`
    Multipart,
    /// `/mixed`
    Mixed,
    /// `/sse`
    Sse,
    /// `/poll`
    Poll,
    /// `/jsonp`
    Jsonp,
    /// `/iframe`
    Iframe,
}

/// Parses a path (already stripped of the mount prefix). `Ok(None)` is "no such route".
pub fn parse_path(path: &str) -> Result<Option<Route>, Error> {
    let route = match path {
        p if super::assets::find(p).is_some() => Route::Static(p.to_string()),
        "/healthz" => Route::Health,
        "/metrics" => Route::Metrics,
        _ => {
            let Some(rest) = path.strip_prefix("/ch/") else {
                return Ok(None);
            };
            let (name, tail) = match rest.split_once('/') {
                Some((n, t)) => (n, Some(t)),
                None => (rest, None),
            };
            let name = percent_decode(name, false)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            check_channel(&name)?;
            match tail {
                None => Route::Channel(name),
                Some("info") => Route::Info(name),
                Some(t) => {
                    let sub = match t {
                        "multipart" => Sub::Multipart,
                        "mixed" => Sub::Mixed,
                        "sse" => Sub::Sse,
                        "poll" => Sub::Poll,
                        "jsonp" => Sub::Jsonp,
                        "iframe" => Sub::Iframe,
                        _ => return Ok(None),
                    };
                    Route::Subscribe(name, sub)
                }
            }
        }
    };
    Ok(Some(route))
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set, for forms).
pub fn percent_decode(s: &str, plus: bool) -> Result<Vec<u8>, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                match v {
                    Some(v) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                        out.push(v)
                    }
                    _ => return Err(Error::bad_request("invalid percent-encoding")),
                }
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
    Ok(out)
}

/// Splits `a=1&b=2` into decoded pairs.
pub fn parse_pairs(s: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = String::from_utf8(percent_decode(k, true)?)
            .map_err(|_| Error::bad_request("query parameter names must be utf-8"))?;
        out.push((k, percent_decode(v, true)?));
    }
    Ok(out)
}

/// The query parameters tandem reads, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `since=EPOCH:ID` (or a bare `ID`): resume after that cursor.
    pub since: Option<Cursor>,
    /// `backlog=N`: replay the last N buffered events.
    pub backlog: Option<u64>,
    /// `timeout=S`: long-poll hold in seconds (fractions allowed).
    pub timeout: Option<Duration>,
    /// `callback=f` for JSONP and the iframe.
    pub callback: Option<String>,
    /// `client=ID`: who is subscribing or publishing.
    pub client: Option<String>,
    /// `type=T`: event type of a raw publish.
    pub kind: Option<String>,
    /// `envelope=json`: SSE events carry their JSON object as data (for `EventSource`).
    pub envelope: bool,
}

/// Longest JSONP / iframe callback name.
pub const MAX_CALLBACK_LEN: usize = 64;

/// Checks a callback: dotted JavaScript identifiers of ASCII letters, digits,
/// `_` and `$`, at most 64 characters. Nothing else can reach the output.
pub fn check_callback(cb: &str) -> Result<(), Error> {
    let ident = |p: &str| {
        let mut b = p.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b'$')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
    };
    if cb.len() > MAX_CALLBACK_LEN || !cb.split('.').all(ident) {
        return Err(Error::bad_request(format!(
            "invalid callback (a dotted JavaScript identifier of at most {MAX_CALLBACK_LEN} characters)"
        )));
    }
    Ok(())
}

fn number(name: &str, v: &[u8]) -> Result<u64, Error> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::bad_request(format!("{name} must be a non-negative integer")))
}

fn text(name: &str, v: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(v).map_err(|_| Error::bad_request(format!("{name} must be utf-8")))
}

impl Query {
    /// Parses and validates a query string (without the `?`). Unknown
    /// parameters are ignored, so cache-busting `_=123` works.
    pub fn parse(qs: &str) -> Result<Query, Error> {
        let mut q = Query::default();
        for (k, v) in parse_pairs(qs)? {
            match k.as_str() {
                "since" => q.since = Some(Cursor::parse_in("since", &String::from_utf8_lossy(&v))?),
                "backlog" => q.backlog = Some(number("backlog", &v)?),
                "timeout" => {
                    let s = text("timeout", v)?;
                    let secs: f64 = s
                        .parse()
                        .ok()
                        .filter(|t: &f64| t.is_finite() && *t >= 0.0 && *t <= 86_400.0)
                        .ok_or_else(|| {
                            Error::bad_request("timeout must be a number of seconds (0 to 86400)")
                        })?;
                    q.timeout = Some(Duration::from_secs_f64(secs));
                }
                "callback" => {
                    let cb = text("callback", v)?;
                    check_callback(&cb)?;
                    q.callback = Some(cb);
                }
                "client" => {
                    let c = text("client", v)?;
                    check_client(&c)?;
                    q.client = Some(c);
                }
                "type" => {
                    let t = text("type", v)?;
                    check_type(&t)?;
                    q.kind = Some(t);
                }
                "envelope" => {
                    if v != b"json" {
                        return Err(Error::bad_request("envelope must be json"));
                    }
                    q.envelope = true;
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/ch/a%3Ab/sse").unwrap(),
            Some(Route::Subscribe("a:b".into(), Sub::Sse))
        );
        assert_eq!(
            parse_path("/ch/x").unwrap(),
            Some(Route::Channel("x".into()))
        );
        assert_eq!(
            parse_path("/ch/x/info").unwrap(),
            Some(Route::Info("x".into()))
        );
        assert_eq!(parse_path("/ch/x/nope").unwrap(), None);
        assert!(parse_path("/ch/a b").is_err());
        assert!(parse_path("/ch/").is_err());
        assert_eq!(parse_path("/other").unwrap(), None);
    }

    #[test]
    fn queries() {
        let q = Query::parse("since=5&timeout=0.5&callback=a.b_c$&client=me&_=1").unwrap();
        assert_eq!(q.since, Some(Cursor::bare(5)));
        assert_eq!(q.timeout, Some(Duration::from_millis(500)));
        assert_eq!(q.callback.as_deref(), Some("a.b_c$"));
        let q = Query::parse("since=k3j9x2a%3A17").unwrap();
        assert_eq!(q.since.unwrap().to_string(), "k3j9x2a:17");
        let e = Query::parse("since=x").unwrap_err();
        assert_eq!(
            e.message(),
            "invalid cursor \"x\" in since (EPOCH:ID or ID, where EPOCH is 1 to 16 of 0-9 a-z and ID a non-negative integer)"
        );
        assert!(Query::parse("since=K:1").is_err());
        assert!(Query::parse("since=a:").is_err());
        assert!(Query::parse("since=-1").is_err());
        assert!(Query::parse("callback=alert(1)").is_err());
        assert!(Query::parse("callback=a..b").is_err());
        assert!(Query::parse("callback=1a").is_err());
        assert!(Query::parse("since=%zz").is_err());
    }
}
