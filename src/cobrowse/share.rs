//! Sharing the application's own session with the agents who joined (seed 002).
//!
//! When a customer asks for help, co-browsing asks a [`ShareSession`] which
//! application session the request belongs to (for most apps: the value of
//! its session cookie) and keeps that handle server-side, in the help
//! session. Later, when a joined agent's browser asks the application for a
//! page, the application asks [`crate::cobrowse::Cobrowse::shared_session`]
//! with the request's URI and headers: it answers the customer's handle if,
//! and only if, the page is one of an agent's view (its query names the help
//! session: `tandem_view=ID`, per page, so two tabs of one agent show two
//! customers) and the request carries the cookie of a signed-in agent who
//! joined that help session. The application then serves the
//! page from that session, so the agent sees the customer's cart, sign-in
//! and form state, while the cookie value itself never leaves the server.

use hyper::header::HeaderMap;

/// How an application finds its own session in a customer's request.
pub trait ShareSession: Send + Sync + 'static {
    /// The application session of this request, as an opaque handle kept
    /// server-side (never sent to a browser), or `None` to share nothing.
    fn capture(&self, headers: &HeaderMap) -> Option<String>;
}

/// A [`ShareSession`] for applications whose session is one cookie.
#[derive(Debug, Clone)]
pub struct CookieShare {
    name: String,
}

impl CookieShare {
    /// Shares the session named by the cookie `name`.
    pub fn new(name: &str) -> CookieShare {
        CookieShare {
            name: name.to_string(),
        }
    }
}

impl ShareSession for CookieShare {
    fn capture(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, &self.name)
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; portal=xyz".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "portal").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(CookieShare::new("a").capture(&h).as_deref(), Some("1"));
    }
}
