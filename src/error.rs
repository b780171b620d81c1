//! The one error type: what was refused, and why, in words that name the limit.
//!
//! Expected outcomes (a subscriber lagging, a poll timing out, a stream
//! closing) are not errors; they are `Delivery::Gap`, an empty poll answer and
//! the end of a stream. What is left here is a request the server refuses.
//!
//! The kind is private and asked about with `is_*()` (hyper's way), so a
//! kind can be added without breaking anyone. This module knows nothing of
//! HTTP: the status each kind is answered with, and the `{"error":"..."}`
//! body, are the HTTP layer's business (`crate::http::status_of`,
//! `crate::http::error_response`).

use std::fmt;

/// A refused request: a kind (asked with `is_*()`) and a lowercase message
/// that says what was wrong and names the limit, e.g.
/// `event too large (max 65536 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: Box<str>,
}

/// Why a request was refused. Private: ask with [`Error::is_bad_request`] and
/// its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    TooLarge,
    HeadTooLarge,
    UriTooLong,
    RequestTimeout,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    Internal,
    BadGateway,
    GatewayTimeout,
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $make:ident, $is:ident => $kind:ident;)*) => {
        impl Error {
            $(
                $(#[$doc])*
                pub fn $make(message: impl Into<String>) -> Error {
                    Error { kind: Kind::$kind, message: message.into().into_boxed_str() }
                }
            )*
            $(
                #[doc = concat!("Whether this is an error made by [`Error::", stringify!($make), "`].")]
                pub fn $is(&self) -> bool {
                    self.kind == Kind::$kind
                }
            )*
        }
    };
}

kinds! {
    /// Malformed input: a bad name, cursor, header or body (HTTP 400).
    bad_request, is_bad_request => BadRequest;
    /// No credentials, or credentials that name nobody (HTTP 401).
    unauthorized, is_unauthorized => Unauthorized;
    /// Credentials that do not allow this (HTTP 403).
    forbidden, is_forbidden => Forbidden;
    /// No such route, channel or session (HTTP 404).
    not_found, is_not_found => NotFound;
    /// A method the route does not take (HTTP 405).
    method_not_allowed, is_method_not_allowed => MethodNotAllowed;
    /// Over a size or count limit (HTTP 413).
    too_large, is_too_large => TooLarge;
    /// A request head over the size limit (HTTP 431).
    head_too_large, is_head_too_large => HeadTooLarge;
    /// A request target (URL) over the length limit (HTTP 414).
    uri_too_long, is_uri_too_long => UriTooLong;
    /// A request that did not arrive in time: its head or body came too
    /// slowly (HTTP 408).
    request_timeout, is_request_timeout => RequestTimeout;
    /// A body in a format the route does not read (HTTP 415).
    unsupported_media_type, is_unsupported_media_type => UnsupportedMediaType;
    /// Too many requests from one client for now (HTTP 429).
    rate_limited, is_rate_limited => RateLimited;
    /// The server cannot take this now: full, or shutting down (HTTP 503).
    unavailable, is_unavailable => Unavailable;
    /// A failure on the server's side (HTTP 500).
    internal, is_internal => Internal;
    /// The upstream application (behind the proxy) could not be reached or
    /// answered with something that is not HTTP (HTTP 502).
    bad_gateway, is_bad_gateway => BadGateway;
    /// The upstream application took too long to connect or answer (HTTP 504).
    gateway_timeout, is_gateway_timeout => GatewayTimeout;
}

impl Error {
    /// The message, e.g. `event too large (max 65536 bytes)`.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_predicate_per_kind() {
        let e = Error::too_large("event too large (max 3 bytes)");
        assert!(e.is_too_large() && !e.is_bad_request());
        assert_eq!(e.to_string(), "event too large (max 3 bytes)");
        assert!(Error::rate_limited("x").is_rate_limited());
    }
}
