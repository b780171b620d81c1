//! The one error type, with the HTTP status that fits it.
//!
//! Expected outcomes (a subscriber lagging, a poll timing out, a stream
//! closing) are not errors; they are `Delivery::Gap`, an empty poll answer and
//! the end of a stream. What is left here is a request the server refuses.

use std::fmt;

use hyper::StatusCode;

/// A refused request: a status and a lowercase message that names the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
    /// A refusal with any status, for an [`crate::http::App`] to answer with.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Error {
        Error::new(status, message)
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn too_large(message: impl Into<String>) -> Error {
        Error::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The message, e.g. `event too large (max 65536 bytes)`.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Whether the input was malformed (400).
    pub fn is_bad_request(&self) -> bool {
        self.status == StatusCode::BAD_REQUEST
    }
    /// Whether the input was over a size or count limit (413).
    pub fn is_too_large(&self) -> bool {
        self.status == StatusCode::PAYLOAD_TOO_LARGE
    }
    /// The JSON body of the error response: `{"error":"..."}`.
    pub fn json(&self) -> String {
        let mut out = String::from("{\"error\":");
        crate::json_escape::push_str(&mut out, &self.message);
        out.push('}');
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
