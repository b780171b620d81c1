//! The client's error: what went wrong, asked with `is_*()`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use hyper::StatusCode;

type Source = Box<dyn StdError + Send + Sync>;

/// Why a publish failed, or why a subscription gave up.
///
/// A subscription retries what may pass (a refused or broken connection, a
/// timeout, a 5xx or 429 answer, an answer that does not parse) with backoff,
/// and yields an error only when it gives up; a publish yields at once.
/// Messages are lowercase; a server's refusal keeps its status and its
/// `{"error":"..."}` message.
pub struct Error {
    kind: Kind,
    source: Option<Source>,
}

#[derive(Debug)]
enum Kind {
    Input(String),
    Connect(String),
    Timeout(String, Duration),
    Io(String),
    Status(StatusCode, String),
    Protocol(String),
    Token,
}

impl Error {
    pub(crate) fn input(msg: impl Into<String>) -> Error {
        Error::new(Kind::Input(msg.into()))
    }
    pub(crate) fn connect(addr: &str, e: impl Into<Source>) -> Error {
        Error::new(Kind::Connect(addr.into())).with_source(e)
    }
    pub(crate) fn timeout(what: impl Into<String>, after: Duration) -> Error {
        Error::new(Kind::Timeout(what.into(), after))
    }
    pub(crate) fn io(addr: &str, e: impl Into<Source>) -> Error {
        Error::new(Kind::Io(addr.into())).with_source(e)
    }
    pub(crate) fn refused(status: StatusCode, message: impl Into<String>) -> Error {
        Error::new(Kind::Status(status, message.into()))
    }
    pub(crate) fn protocol(msg: impl Into<String>) -> Error {
        Error::new(Kind::Protocol(msg.into()))
    }
    pub(crate) fn token(e: impl Into<Source>) -> Error {
        Error::new(Kind::Token).with_source(e)
    }

    fn new(kind: Kind) -> Error {
        Error { kind, source: None }
    }
    fn with_source(mut self, e: impl Into<Source>) -> Error {
        self.source = Some(e.into());
        self
    }

    /// Whether the caller's input was wrong: a URL, cursor or transport name.
    pub fn is_input(&self) -> bool {
        matches!(self.kind, Kind::Input(_))
    }
    /// Whether no connection could be made (refused, unknown host...).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect(_))
    }
    /// Whether the server took too long: to connect, to answer, or (on a
    /// stream) to send anything at all, heartbeats included.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(..))
    }
    /// Whether an open connection failed or closed mid-answer.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }
    /// Whether the server refused with an error status (see [`Error::status`]).
    pub fn is_status(&self) -> bool {
        matches!(self.kind, Kind::Status(..))
    }
    /// Whether the server's answer was not what tandem writes (a proxy in
    /// the way, or not a tandem server).
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }
    /// Whether the token source ([`Client::with_token_source`]) failed.
    ///
    /// [`Client::with_token_source`]: super::Client::with_token_source
    pub fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token)
    }
    /// The status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            Kind::Status(s, _) => Some(s),
            _ => None,
        }
    }
    /// The server's message of a refusal (its `{"error":"..."}`), e.g.
    /// `event too large (max 65536 bytes)`.
    pub fn server_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Status(_, m) => Some(m),
            _ => None,
        }
    }

    /// Whether trying again later may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self.kind {
            Kind::Input(_) => false,
            Kind::Status(s, _) => s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS,
            _ => true,
        }
    }
}

/// An OS message such as "Connection refused (os error 111)", lowercased
/// at the start so it reads as the rest of the sentence.
fn lower_first(s: String) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f.is_uppercase() && !c.next().is_some_and(char::is_uppercase) => {
            f.to_lowercase().chain(s[f.len_utf8()..].chars()).collect()
        }
        _ => s,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = || {
            self.source
                .as_ref()
                .map(|s| format!(": {}", lower_first(s.to_string())))
                .unwrap_or_default()
        };
        match &self.kind {
            Kind::Input(m) | Kind::Protocol(m) => f.write_str(m),
            Kind::Connect(addr) => write!(f, "cannot connect to {addr}{}", source()),
            Kind::Timeout(what, d) => write!(f, "{what} timed out after {d:?}"),
            Kind::Io(addr) => write!(f, "connection to {addr} failed{}", source()),
            Kind::Token => write!(f, "getting a token failed{}", source()),
            Kind::Status(s, m) => {
                let reason = s.canonical_reason().unwrap_or("error").to_lowercase();
                write!(f, "{} {reason}: {m}", s.as_u16())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("client::Error");
        d.field("kind", &self.kind);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_keep_the_server_words() {
        let e = Error::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event too large (max 8 bytes)",
        );
        assert_eq!(
            e.to_string(),
            "413 payload too large: event too large (max 8 bytes)"
        );
        assert_eq!(e.status(), Some(StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(e.server_message(), Some("event too large (max 8 bytes)"));
        assert!(!e.is_transient());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::connect("127.0.0.1:1", io);
        assert!(e
            .to_string()
            .starts_with("cannot connect to 127.0.0.1:1: connection refused"));
        assert!(e.is_connect() && e.is_transient());
        assert!(Error::refused(StatusCode::SERVICE_UNAVAILABLE, "full").is_transient());
        assert_eq!(lower_first("HTTP error".into()), "HTTP error");
    }
}
