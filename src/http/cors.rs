//! CORS: which origins may read streams and publish, with credentials.
//!
//! The default is same origin only. `--allow-origin https://app.example` (or
//! `*`) lets other origins in; the allowed origin is echoed back rather than
//! `*` because browsers refuse `*` on credentialed requests.
//!
//! A publish carrying an `Origin` that is neither the server's own nor allowed
//! is refused with 403: a plain cross-site HTML form needs no preflight, so
//! without this check any page could publish into any channel.

use hyper::header::{HeaderMap, HeaderValue, HOST, ORIGIN};
use hyper::{Response, StatusCode};

use super::body::Body;
use super::config::HttpConfig;
use crate::error::Error;

/// What the `Origin` of a request is to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// No `Origin` header (curl, script tags, same-origin GETs).
    None,
    /// The server's own origin.
    Same,
    /// Another origin, allowed by the configuration.
    Allowed(HeaderValue),
    /// Another origin, not allowed.
    Denied,
}

pub(crate) fn classify(headers: &HeaderMap, cfg: &HttpConfig) -> Origin {
    let Some(origin) = headers.get(ORIGIN) else {
        return Origin::None;
    };
    let o = origin.to_str().unwrap_or("");
    let authority = o.split_once("://").map_or("", |(_, a)| a);
    // Behind a reverse proxy `Host` may be the upstream's address; the
    // browser's host then arrives as `X-Forwarded-Host` (docs/deployment.md).
    let same = [HOST.as_str(), "x-forwarded-host"].iter().any(|name| {
        let host = headers
            .get(*name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        !host.is_empty() && authority.eq_ignore_ascii_case(host)
    });
    if same {
        return Origin::Same;
    }
    if cfg
        .allow_origins
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
    {
        return Origin::Allowed(origin.clone());
    }
    Origin::Denied
}

/// Adds the CORS response headers for an allowed origin.
pub(crate) fn decorate(resp: &mut Response<Body>, origin: &Origin) {
    if let Origin::Allowed(o) = origin {
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", o.clone());
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("Content-Type, Event-Id, Event-Type"),
        );
        h.append("vary", HeaderValue::from_static("Origin"));
    }
}

/// The answer to an `OPTIONS` preflight.
pub(crate) fn preflight(origin: &Origin, allow: &'static str) -> Response<Body> {
    match origin {
        Origin::Denied => {
            super::error_response(&Error::forbidden("origin not allowed (see --allow-origin)"))
        }
        _ => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
            if let Origin::Allowed(_) = origin {
                let h = resp.headers_mut();
                h.insert(
                    "access-control-allow-methods",
                    HeaderValue::from_static(allow),
                );
                h.insert(
                    "access-control-allow-headers",
                    HeaderValue::from_static(
                        "Content-Type, Event-Type, Last-Event-ID, X-Requested-With",
                    ),
                );
                h.insert("access-control-max-age", HeaderValue::from_static("600"));
            }
            decorate(&mut resp, origin);
            resp
        }
    }
}
