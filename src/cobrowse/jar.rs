//! A cookie jar per help session, kept on the server (proxy mode).
//!
//! When tandem proxies an application, the customer's browser sends the
//! application's cookies (`HttpOnly` ones too) through tandem, and the
//! application sets them through tandem. A help session opened through the
//! proxy keeps a jar filled from both, so the agent's view of the customer's
//! pages is served with the customer's session while no cookie value ever
//! reaches the agent's browser (see `proxied.rs`).
//!
//! The customer's browser stays the source of truth: every request it sends
//! says which cookies it holds for that path, and the jar follows (a cookie
//! that the page's script deleted, or that expired in the browser, goes).
//! A cookie the application sets in answer to the agent's view is kept here
//! and handed to the customer's browser with its next answer on that path,
//! so an application that rotates its session cookie keeps one session, not
//! two that log each other out.
//!
//! Paths follow RFC 6265 (§5.1.4 path-match, §5.2.4 default path); the
//! domain does not matter, since the browser sees one host, the proxy's.
//! `Secure` is not tracked (the jar only sees what passed). Limits, as
//! browsers have them: [`MAX_COOKIES`] cookies of at most
//! [`MAX_COOKIE_BYTES`] each; beyond that a cookie is not kept (and the
//! agent's view may lack it), never an error on the customer's request.
//!
//! Plain data behind the caller's lock: no I/O.

use std::time::{Duration, Instant, SystemTime};

/// Cookies a jar keeps.
pub(crate) const MAX_COOKIES: usize = 64;
/// The longest `name=value` a jar keeps.
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// One help session's cookies on the application.
#[derive(Debug, Default)]
pub(crate) struct Jar {
    cookies: Vec<Cookie>,
}

#[derive(Debug)]
struct Cookie {
    name: String,
    value: String,
    path: String,
    expires: Option<Instant>,
    /// The same, in ms since 1970, fixed when it was set: what Redis keeps
    /// (`--redis`), unchanged by reading it back.
    expires_ms: Option<u64>,
    /// The `Set-Cookie` line the customer's browser has not had yet (the
    /// application set it in answer to the agent's view).
    pending: Option<String>,
}

impl Cookie {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// Whether the cookie path `cookie` covers the request path `path`.
fn path_match(cookie: &str, path: &str) -> bool {
    path == cookie
        || (path.starts_with(cookie)
            && (cookie.ends_with('/') || path.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// The path a cookie set without `Path` gets: the request path's directory.
fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].into(),
    }
}

/// The `name=value` pairs of `Cookie` header values.
pub(crate) fn pairs<'a>(values: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    values
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

impl Jar {
    /// A jar holding what a request to `path` carried.
    pub(crate) fn seeded(path: &str, sent: &[(String, String)]) -> Jar {
        let mut jar = Jar::default();
        jar.saw_request(path, sent);
        jar
    }

    /// Drops expired cookies, but not a deletion the browser has yet to get.
    fn forget_expired(&mut self, now: Instant) {
        self.cookies.retain(|c| c.live(now) || c.pending.is_some());
    }

    fn find(&mut self, name: &str, path: &str) -> Option<&mut Cookie> {
        self.cookies
            .iter_mut()
            .find(|c| c.name == name && c.path == path)
    }

    fn keep(&mut self, cookie: Cookie) {
        if cookie.name.len() + cookie.value.len() + 1 > MAX_COOKIE_BYTES {
            log::debug!(
                "cookie jar: {} not kept (longer than {MAX_COOKIE_BYTES} bytes)",
                cookie.name
            );
            return;
        }
        if let Some(c) = self.find(&cookie.name, &cookie.path) {
            *c = cookie;
            return;
        }
        if self.cookies.len() >= MAX_COOKIES {
            log::debug!(
                "cookie jar: {} not kept (the jar holds {MAX_COOKIES} cookies)",
                cookie.name
            );
            return;
        }
        self.cookies.push(cookie);
    }

    /// The customer's browser sent `sent` with a request to `path`: that is
    /// exactly what it holds for this path. Cookies the jar has for the
    /// path but the browser did not send are gone from the browser (deleted,
    /// expired), unless the browser has not had them yet.
    pub(crate) fn saw_request(&mut self, path: &str, sent: &[(String, String)]) {
        let now = Instant::now();
        self.forget_expired(now);
        self.cookies.retain(|c| {
            c.pending.is_some()
                || !path_match(&c.path, path)
                || sent.iter().any(|(n, _)| *n == c.name)
        });
        for (name, value) in sent {
            // The most specific path of that name the browser could have sent.
            let known = self
                .cookies
                .iter_mut()
                .filter(|c| c.name == *name && path_match(&c.path, path))
                .max_by_key(|c| c.path.len());
            match known {
                Some(c) if c.pending.is_some() => {}
                Some(c) => c.value.clone_from(value),
                None => self.keep(Cookie {
                    name: name.clone(),
                    value: value.clone(),
                    path: "/".into(),
                    expires: None,
                    expires_ms: None,
                    pending: None,
                }),
            }
        }
    }

    /// The application set a cookie (`line`, a `Set-Cookie` value) in answer
    /// to a request to `path`: for the customer's browser (which gets the
    /// line itself) or for the agent's view (the browser gets it later,
    /// from [`Jar::hand_over`]).
    pub(crate) fn set(&mut self, line: &str, path: &str, for_view: bool) {
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return;
        }
        let now = Instant::now();
        let (mut cookie_path, mut max_age, mut expires) = (None, None, None);
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("path") && v.starts_with('/') {
                cookie_path = Some(v.to_string());
            } else if k.eq_ignore_ascii_case("max-age") {
                max_age = v.parse::<i64>().ok();
            } else if k.eq_ignore_ascii_case("expires") {
                expires = httpdate::parse_http_date(v).ok();
            }
        }
        let path = cookie_path.unwrap_or_else(|| default_path(path));
        // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
        let expires = match (max_age, expires) {
            (Some(s), _) if s <= 0 => Some(now),
            (Some(s), _) => now.checked_add(Duration::from_secs(s as u64)),
            (None, Some(at)) => Some(match at.duration_since(SystemTime::now()) {
                Ok(left) => now.checked_add(left).unwrap_or(now),
                Err(_) => now,
            }),
            (None, None) => None,
        };
        if expires.is_some_and(|t| t <= now) {
            // A deletion; the browser gets it all the same if it is pending.
            if for_view {
                if let Some(c) = self.find(name, &path) {
                    c.value.clear();
                    c.expires = Some(now);
                    c.expires_ms = Some(super::store::now_ms());
                    c.pending = Some(line.to_string());
                    return;
                }
            }
            self.cookies.retain(|c| !(c.name == name && c.path == path));
            return;
        }
        self.keep(Cookie {
            name: name.to_string(),
            value: value.to_string(),
            path,
            expires,
            expires_ms: expires.map(|t| {
                super::store::now_ms() + t.saturating_duration_since(now).as_millis() as u64
            }),
            pending: for_view.then(|| line.to_string()),
        });
    }

    /// The `Cookie` header for a request to `path` (longer paths first, as
    /// browsers send them), or `None` when no cookie applies.
    pub(crate) fn header(&self, path: &str) -> Option<String> {
        let now = Instant::now();
        let mut applies: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| c.live(now) && path_match(&c.path, path))
            .collect();
        applies.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let header = applies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        (!header.is_empty()).then_some(header)
    }

    /// The `Set-Cookie` lines the customer's browser has not had yet for
    /// `path`, now handed over (a deletion among them leaves the jar).
    pub(crate) fn hand_over(&mut self, path: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &mut self.cookies {
            if path_match(&c.path, path) {
                if let Some(l) = c.pending.take() {
                    lines.push(l);
                }
            }
        }
        self.forget_expired(Instant::now());
        lines
    }

    /// Every cookie as Redis keeps it (`store.rs`): the field
    /// `name \n path` and `{"v": value, "e": expiry (ms since 1970) or
    /// null, "p": the line the browser has yet to get, or null}`.
    pub(crate) fn entries(&self) -> std::collections::HashMap<String, String> {
        self.cookies
            .iter()
            .map(|c| {
                (
                    format!("{}\n{}", c.name, c.path),
                    serde_json::json!({"v": c.value, "e": c.expires_ms, "p": c.pending})
                        .to_string(),
                )
            })
            .collect()
    }

    /// The jar [`Jar::entries`] describes (from another node).
    pub(crate) fn from_entries(entries: &std::collections::HashMap<String, String>) -> Jar {
        let (now, wall) = (Instant::now(), super::store::now_ms());
        let mut jar = Jar::default();
        for (field, json) in entries {
            let (Some((name, path)), Ok(v)) = (
                field.split_once('\n'),
                serde_json::from_str::<serde_json::Value>(json),
            ) else {
                continue;
            };
            let expires_ms = v["e"].as_u64();
            let expires = expires_ms.map(|ms| {
                if ms <= wall {
                    now
                } else {
                    now + Duration::from_millis(ms - wall)
                }
            });
            jar.keep(Cookie {
                name: name.to_string(),
                value: v["v"].as_str().unwrap_or_default().to_string(),
                path: path.to_string(),
                expires,
                expires_ms,
                pending: v["p"].as_str().map(str::to_string),
            });
        }
        jar
    }

    /// How many cookies it holds.
    pub(crate) fn len(&self) -> usize {
        self.cookies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(s: &str) -> Vec<(String, String)> {
        pairs(std::iter::once(s))
    }

    /// What Redis keeps of a jar (`--redis`) makes the same jar again: its
    /// cookies, their paths, their lifetimes and the lines still to hand over.
    #[test]
    fn a_jar_goes_through_its_entries_unchanged() {
        let mut jar = Jar::seeded("/", &sent("sid=1; theme=dark"));
        jar.set("sid=2; Path=/; Max-Age=3600", "/account", true);
        jar.set("cart=x; Path=/shop", "/shop/a", false);
        let again = Jar::from_entries(&jar.entries());
        assert_eq!(again.entries(), jar.entries());
        // The same cookies (of one path length, in any order).
        let set = |j: &Jar, p: &str| {
            let mut v: Vec<String> = j
                .header(p)
                .unwrap_or_default()
                .split("; ")
                .map(str::to_string)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            again.header("/shop/a").unwrap().split("; ").next(),
            Some("cart=x")
        );
        assert_eq!(set(&again, "/shop/a"), set(&jar, "/shop/a"));
        assert_eq!(set(&again, "/"), set(&jar, "/"));
        let mut again = again;
        assert_eq!(again.hand_over("/"), vec!["sid=2; Path=/; Max-Age=3600"]);
        // An expired cookie stays expired.
        jar.set("old=1; Max-Age=0", "/", true);
        let again = Jar::from_entries(&jar.entries());
        assert_eq!(set(&again, "/"), set(&jar, "/"));
        assert!(!again.header("/").unwrap().contains("old="));
    }

    #[test]
    fn paths_match_as_rfc_6265_says() {
        assert!(path_match("/", "/anything"));
        assert!(path_match("/a", "/a"));
        assert!(path_match("/a", "/a/b"));
        assert!(path_match("/a/", "/a/b"));
        assert!(!path_match("/a", "/ab"));
        assert!(!path_match("/a/b", "/a"));
        assert_eq!(default_path("/"), "/");
        assert_eq!(default_path("/x"), "/");
        assert_eq!(default_path("/a/b/c"), "/a/b");
    }

    #[test]
    fn it_follows_the_customers_browser() {
        let mut jar = Jar::seeded("/", &sent("sid=1; theme=dark"));
        assert_eq!(jar.header("/x").as_deref(), Some("sid=1; theme=dark"));
        // The browser now holds sid=2 and no theme.
        jar.saw_request("/page", &sent("sid=2"));
        assert_eq!(jar.header("/x").as_deref(), Some("sid=2"));
        jar.set("cart=3; Path=/shop; HttpOnly", "/shop/add", false);
        assert_eq!(jar.header("/shop/list").as_deref(), Some("cart=3; sid=2"));
        assert_eq!(jar.header("/other").as_deref(), Some("sid=2"));
        // A request outside /shop says nothing about cart.
        jar.saw_request("/other", &sent("sid=2"));
        assert_eq!(jar.len(), 2);
        // Deleted by the application.
        jar.set("sid=; Max-Age=0; Path=/", "/logout", false);
        assert_eq!(jar.header("/x"), None);
        jar.set("old=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/", false);
        assert_eq!(jar.len(), 1);
        // Without Path: the request's directory.
        jar.set("deep=1", "/a/b/c", false);
        assert_eq!(jar.header("/a/b/x").as_deref(), Some("deep=1"));
        assert_eq!(jar.header("/a/x"), None);
    }

    #[test]
    fn a_cookie_set_for_the_view_reaches_the_customer_later() {
        let mut jar = Jar::seeded("/", &sent("sid=old"));
        jar.set("sid=new; Path=/; HttpOnly", "/account", true);
        assert_eq!(jar.header("/").as_deref(), Some("sid=new"));
        // The customer's browser still sends the old one: the new one stays.
        jar.saw_request("/", &sent("sid=old"));
        assert_eq!(jar.header("/").as_deref(), Some("sid=new"));
        assert_eq!(jar.hand_over("/"), vec!["sid=new; Path=/; HttpOnly"]);
        assert!(jar.hand_over("/").is_empty(), "handed over once");
        // Now the browser has it; its word counts again.
        jar.saw_request("/", &sent("sid=newer"));
        assert_eq!(jar.header("/").as_deref(), Some("sid=newer"));
        // A deletion for the view reaches the browser too.
        jar.set("sid=; Max-Age=0; Path=/", "/logout", true);
        assert_eq!(jar.header("/"), None);
        assert_eq!(jar.hand_over("/"), vec!["sid=; Max-Age=0; Path=/"]);
        assert_eq!(jar.len(), 0);
    }

    #[test]
    fn limits_hold() {
        let mut jar = Jar::default();
        for i in 0..MAX_COOKIES + 10 {
            jar.set(&format!("c{i}=v"), "/", false);
        }
        assert_eq!(jar.len(), MAX_COOKIES);
        let big = "x".repeat(MAX_COOKIE_BYTES);
        let mut jar = Jar::default();
        jar.set(&format!("big={big}"), "/", false);
        assert_eq!(jar.len(), 0);
        // Nonsense is ignored.
        jar.set("novalue", "/", false);
        jar.set("=v", "/", false);
        assert_eq!(jar.len(), 0);
    }
}
