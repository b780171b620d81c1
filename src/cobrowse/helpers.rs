//! Small helpers for the rest of co-browsing: the limits on what clients
//! send, string fields and paths within the site.

use serde_json::{Map, Value};

use crate::error::Error;

/// Longest URL a session event carries.
pub(crate) const MAX_URL: usize = 2048;
/// Longest page title.
pub(crate) const MAX_TITLE: usize = 200;
/// Longest message a customer sends with a help request.
pub(crate) const MAX_MESSAGE: usize = 500;
/// Longest chat line.
pub(crate) const MAX_CHAT: usize = 2000;
/// Longest customer label.
pub(crate) const MAX_LABEL: usize = 64;
/// Chat lines a help session keeps for pages that load later (the oldest
/// go first beyond it).
pub(crate) const MAX_CHAT_LINES: usize = 500;

/// A string field: at most `max` characters; "" when absent and not required.
pub(crate) fn field(
    body: &Map<String, Value>,
    name: &str,
    max: usize,
    required: bool,
) -> Result<String, Error> {
    match body.get(name) {
        Some(Value::String(s)) if s.chars().count() > max => Err(Error::bad_request(format!(
            "{name} too long (max {max} characters)"
        ))),
        Some(Value::String(s)) if required && s.is_empty() => {
            Err(Error::bad_request(format!("{name} is empty")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(Error::bad_request(format!("{name} is required"))),
        Some(_) => Err(Error::bad_request(format!("{name} must be a string"))),
    }
}

/// A URL within the site: a path (`/...`, not `//host`), no control characters.
/// Pushing a customer to another site, or to `javascript:`, is never possible.
pub(crate) fn site_url(url: &str) -> Result<String, Error> {
    if url.starts_with('/')
        && !url.starts_with("//")
        && !url.contains('\\')
        && !url.chars().any(|c| c.is_control() || c == ' ')
    {
        Ok(url.to_string())
    } else {
        Err(Error::bad_request(
            "url must be a path within this site (starting with one /, no spaces)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_on_the_site() {
        assert!(site_url("/portal/cart?x=1#y").is_ok());
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a b",
            "/a\\b",
            "",
            "/\n",
        ] {
            assert!(site_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_name_their_limit() {
        let body: Map<String, Value> = serde_json::from_str(r#"{"a":"xyz","n":1}"#).unwrap();
        assert_eq!(field(&body, "a", 3, true).unwrap(), "xyz");
        assert_eq!(
            field(&body, "a", 2, true).unwrap_err().message(),
            "a too long (max 2 characters)"
        );
        assert_eq!(field(&body, "b", 2, false).unwrap(), "");
        assert!(field(&body, "b", 2, true).is_err());
        assert!(field(&body, "n", 2, false).is_err());
    }
}
