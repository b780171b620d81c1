//! How a refusal is answered over HTTP: the status that fits each kind of
//! [`Error`], and the short JSON body `{"error":"..."}`.
//!
//! Public so that an [`crate::http::App`] written outside this crate answers
//! its own refusals exactly the way tandem answers its.

use hyper::{Response, StatusCode};

use super::body::{self, Body};
use crate::error::{Error, Kind};

/// The HTTP status an error is answered with.
pub fn status_of(e: &Error) -> StatusCode {
    match e.kind() {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Kind::UriTooLong => StatusCode::URI_TOO_LONG,
        Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Kind::BadGateway => StatusCode::BAD_GATEWAY,
        Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The JSON body of an error answer: `{"error":"..."}`, escaped so that it
/// is safe inside a `<script>` too.
pub fn error_json(e: &Error) -> String {
    let mut out = String::from("{\"error\":");
    crate::transport::json::push_str(&mut out, e.message());
    out.push('}');
    out
}

/// The whole answer to a refused request: its status, `application/json`,
/// no caching, and [`error_json`]; a 503 says `Retry-After: 1`.
pub fn error_response(e: &Error) -> Response<Body> {
    let status = status_of(e);
    let mut resp = body::json(status, error_json(e));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Worth trying again soon (a full server, a backplane reconnecting).
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = Error::too_large("event too large (max 3 bytes)");
        assert_eq!(status_of(&e), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            error_json(&e),
            r#"{"error":"event too large (max 3 bytes)"}"#
        );
        assert_eq!(status_of(&Error::rate_limited("slow down")), 429);
        assert_eq!(status_of(&Error::head_too_large("head")), 431);
        assert_eq!(status_of(&Error::uri_too_long("url")), 414);
        assert_eq!(status_of(&Error::request_timeout("slow")), 408);
        assert_eq!(status_of(&Error::unavailable("full")), 503);
        assert_eq!(status_of(&Error::bad_gateway("upstream unreachable")), 502);
        assert_eq!(status_of(&Error::gateway_timeout("upstream too slow")), 504);
    }
}
