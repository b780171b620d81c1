//! What the proxy changes in headers, as pure functions: hop-by-hop headers
//! (RFC 9110 §7.6.1), `Location`/`Content-Location` naming the upstream's
//! origin, `Set-Cookie` domains naming the upstream's host.

use hyper::header::{HeaderMap, HeaderName, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};

use super::config::Upstream;

/// Headers that describe one connection, not the message (RFC 9110
/// §7.6.1), beside those that `Connection` names. `Expect` is answered by
/// the proxy's own server side (hyper sends `100 Continue` when the body is
/// read), so it is not passed on either.
const HOP_BY_HOP: [&str; 5] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
];

/// Removes the hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
/// `Proxy-Authenticate`, `Proxy-Authorization`, `Expect`. `Trailer` is
/// end-to-end and stays (trailers themselves pass through as frames).
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE] {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Whether a request's `TE` asks for trailers (then the proxy asks the
/// upstream for them too: it passes trailer frames through).
pub(crate) fn wants_trailers(h: &HeaderMap) -> bool {
    h.get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// A `Location` or `Content-Location` that names the upstream's own origin
/// (`http://upstream:port/path`, `https://...` for an https upstream, or
/// `//upstream:port/path`), as the same path on the proxy: `/path`, which
/// the browser resolves against the proxy's origin whatever its scheme.
/// `None` when it is left alone (relative, or another origin: redirects
/// elsewhere go to the browser as they are, and tandem never follows them).
pub(crate) fn rewrite_location(value: &str, up: &Upstream) -> Option<String> {
    let origin = format!("{}://", up.scheme());
    let n = origin.len();
    let rest = if value.len() >= n && value[..n].eq_ignore_ascii_case(&origin) {
        &value[n..]
    } else {
        value.strip_prefix("//")?
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !up.is(&rest[..end]) {
        return None;
    }
    let path = &rest[end..];
    Some(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

/// A `Set-Cookie` without the `Domain=` attribute when that names the
/// upstream's host (or a domain the host is in): the cookie becomes a
/// host-only cookie of the proxy's host, the only host the browser sees.
/// `None` when nothing changes (another domain is left for the browser to
/// refuse, as it would without the proxy).
pub(crate) fn rewrite_set_cookie(value: &str, up: &Upstream) -> Option<String> {
    let host = up.host();
    let mut changed = false;
    let kept: Vec<&str> = value
        .split(';')
        .enumerate()
        .filter(|(i, attr)| {
            if *i == 0 {
                return true;
            }
            let (name, v) = attr.split_once('=').unwrap_or((attr, ""));
            if !name.trim().eq_ignore_ascii_case("domain") {
                return true;
            }
            let d = v.trim().trim_start_matches('.');
            let names_upstream = host.eq_ignore_ascii_case(d)
                || (host.len() > d.len()
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.'
                    && host[host.len() - d.len()..].eq_ignore_ascii_case(d));
            changed |= names_upstream;
            !names_upstream
        })
        .map(|(_, a)| a)
        .collect();
    changed.then(|| kept.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn up() -> Upstream {
        "http://app.internal:9000".parse().unwrap()
    }

    #[test]
    fn hop_by_hop_goes() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("trailer", "x-checksum"),
            ("x-kept", "yes"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        assert!(wants_trailers(&h));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["trailer", "x-kept"]);
        assert!(!wants_trailers(&h));
    }

    #[test]
    fn locations() {
        let u = up();
        let r = |s: &str| rewrite_location(s, &u);
        assert_eq!(
            r("http://app.internal:9000/a?b=1").as_deref(),
            Some("/a?b=1")
        );
        assert_eq!(r("HTTP://APP.internal:9000").as_deref(), Some("/"));
        assert_eq!(r("http://app.internal:9000?q").as_deref(), Some("/?q"));
        assert_eq!(r("//app.internal:9000/x").as_deref(), Some("/x"));
        assert_eq!(r("/relative"), None);
        assert_eq!(r("other/relative"), None);
        assert_eq!(
            r("http://app.internal/x"),
            None,
            "port 80 is another origin"
        );
        assert_eq!(r("http://evil.example/x"), None);
        assert_eq!(r("https://app.internal:9000/x"), None, "another scheme");

        let tls: Upstream = "https://app.internal".parse().unwrap();
        let r = |s: &str| rewrite_location(s, &tls);
        assert_eq!(r("https://app.internal/a").as_deref(), Some("/a"));
        assert_eq!(r("HTTPS://app.internal:443/a").as_deref(), Some("/a"));
        assert_eq!(r("//app.internal/a").as_deref(), Some("/a"));
        assert_eq!(r("http://app.internal/a"), None, "another scheme");
        assert_eq!(r("https://app.internal:8443/a"), None, "another port");
    }

    #[test]
    fn cookie_domains() {
        let u = up();
        let r = |s: &str| rewrite_set_cookie(s, &u);
        assert_eq!(
            r("a=1; Domain=app.internal; Path=/; HttpOnly").as_deref(),
            Some("a=1; Path=/; HttpOnly")
        );
        assert_eq!(r("a=1;domain=.internal").as_deref(), Some("a=1"));
        assert_eq!(r("a=1; Domain=other.example"), None);
        assert_eq!(r("a=1; Domain=nal"), None, "not a domain the host is in");
        assert_eq!(r("a=1; Path=/"), None);
    }
}

/// A `Content-Security-Policy` value whose `frame-ancestors` lets the
/// proxy's own pages frame it (`'self'` added, `'none'` dropped), for the
/// agent's view of a customer's page; `None` when it needs no change.
pub(crate) fn allow_self_framing(csp: &str) -> Option<String> {
    let mut changed = false;
    let policies: Vec<String> = csp
        .split(',')
        .map(|policy| {
            policy
                .split(';')
                .map(|d| {
                    let mut words = d.split_ascii_whitespace();
                    let is_fa = words
                        .next()
                        .is_some_and(|n| n.eq_ignore_ascii_case("frame-ancestors"));
                    let sources: Vec<&str> = words.collect();
                    if !is_fa
                        || sources
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case("'self'") || *s == "*")
                    {
                        return d.to_string();
                    }
                    changed = true;
                    let mut kept: Vec<&str> = sources
                        .into_iter()
                        .filter(|s| !s.eq_ignore_ascii_case("'none'"))
                        .collect();
                    kept.insert(0, "'self'");
                    format!(" frame-ancestors {}", kept.join(" "))
                })
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect();
    changed.then(|| policies.join(","))
}

#[cfg(test)]
mod framing_tests {
    use super::allow_self_framing;

    #[test]
    fn frame_ancestors_let_the_proxy_frame() {
        assert_eq!(
            allow_self_framing("default-src 'self'; frame-ancestors 'none'").as_deref(),
            Some("default-src 'self'; frame-ancestors 'self'")
        );
        assert_eq!(
            allow_self_framing("frame-ancestors https://a.example").as_deref(),
            Some(" frame-ancestors 'self' https://a.example")
        );
        assert_eq!(allow_self_framing("frame-ancestors 'self'"), None);
        assert_eq!(allow_self_framing("script-src 'self'"), None);
    }
}
