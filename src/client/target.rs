//! A channel URL taken apart: where to connect, the channel, the transport.
//!
//! `http[s]://host:port[/prefix]/ch/NAME[/TRANSPORT][?query]` (the
//! `http://` may be left out, as with curl): the prefix is
//! kept (a `Service` mounted under `/push` serves `/push/ch/NAME`), the
//! query's `since` becomes the starting cursor and its other parameters
//! (`client`, `backlog`, ...) travel on every request, except the ones the
//! client sets itself (`since`, `timeout`, `callback`, `envelope`).

use hyper::Uri;

use super::cursor::{self, Cursor};
use super::error::Error;
use super::transport::Transport;

/// Where to open connections (the pool keeps connections per endpoint, so
/// an `https` one never gets a plain connection).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// `host:port`, for `TcpStream::connect` (names are resolved there).
    pub(crate) addr: String,
    /// The `Host` header: the URL's authority as written.
    pub(crate) host: String,
    /// `https`: the name the server's certificate must carry (the URL's
    /// host, an IPv6 address without its brackets).
    pub(crate) tls: Option<String>,
}

/// A parsed channel URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) endpoint: Endpoint,
    /// The path before `/ch/`, empty or starting with `/`.
    prefix: String,
    pub(crate) channel: String,
    /// The transport the path names, if it names one.
    pub(crate) transport: Option<Transport>,
    /// `?since=` of the URL.
    pub(crate) since: Option<Cursor>,
    /// The other query parameters, as written (`k=v`, still encoded).
    query: Vec<String>,
}

/// Parameters the client sets itself on each request.
const OWN_PARAMS: [&str; 4] = ["since", "timeout", "callback", "envelope"];

const URL_FORM: &str = "http[s]://HOST:PORT/ch/NAME[/TRANSPORT]";

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, Error> {
        // `localhost:8080/ch/x` as curl takes it: http is the default.
        let with_scheme;
        let full = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let uri: Uri = full
            .parse()
            .map_err(|e| Error::input(format!("bad url {url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(Error::input(format!("bad url {url:?} (want {URL_FORM})"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Error::input(format!("bad url {url:?}: no host")))?;
        if authority.as_str().contains('@') {
            return Err(Error::input(format!(
                "bad url {url:?}: credentials in a url are not supported"
            )));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host();
        let endpoint = Endpoint {
            addr: format!("{host}:{port}"),
            host: authority.as_str().to_string(),
            tls: https.then(|| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            }),
        };
        let not_a_channel =
            || Error::input(format!("not a channel url: {url:?} (want {URL_FORM})"));
        let path = uri.path();
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        // The first `ch` segment followed by a name and at most one more.
        let at = (1..segments.len())
            .find(|&i| segments[i] == "ch" && segments.len() - i <= 3 && segments.len() - i >= 2)
            .ok_or_else(not_a_channel)?;
        let channel = segments[at + 1];
        if channel.is_empty() {
            return Err(not_a_channel());
        }
        let transport = match segments.get(at + 2) {
            Some(t) => Some(t.parse::<Transport>()?),
            None => None,
        };
        let mut since = None;
        let mut query = Vec::new();
        for pair in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if key == "since" {
                let value = pair.split_once('=').map_or("", |(_, v)| v);
                since = Some(cursor::parse(
                    &value.replace("%3A", ":").replace("%3a", ":"),
                )?);
            } else if !OWN_PARAMS.contains(&key) {
                query.push(pair.to_string());
            }
        }
        Ok(Target {
            endpoint,
            prefix: segments[..at].join("/"),
            channel: channel.to_string(),
            transport,
            since,
            query,
        })
    }

    /// The publish path: `/ch/NAME` with the URL's query and `extra`.
    pub(crate) fn publish_path(&self, extra: &[(&str, &str)]) -> String {
        self.path(None, extra)
    }

    /// A subscribe path on `transport`, with the URL's query and `extra`.
    pub(crate) fn subscribe_path(&self, transport: Transport, extra: &[(&str, &str)]) -> String {
        self.path(Some(transport.name()), extra)
    }

    /// Whether the URL's query names this parameter.
    pub(crate) fn has_param(&self, key: &str) -> bool {
        self.query
            .iter()
            .any(|p| p.split_once('=').map_or(p.as_str(), |(k, _)| k) == key)
    }

    fn path(&self, tail: Option<&str>, extra: &[(&str, &str)]) -> String {
        let mut p = format!("{}/ch/{}", self.prefix, self.channel);
        if let Some(t) = tail {
            p.push('/');
            p.push_str(t);
        }
        let mut sep = '?';
        for pair in &self.query {
            p.push(sep);
            p.push_str(pair);
            sep = '&';
        }
        for (k, v) in extra {
            p.push(sep);
            p.push_str(k);
            p.push('=');
            p.push_str(&encode(v));
            sep = '&';
        }
        p
    }
}

/// Percent-encodes a query value: everything but the unreserved characters
/// and `:` (which cursors hold and servers read as is).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_channel_url_apart() {
        let t = Target::parse("http://127.0.0.1:8080/ch/news/sse?since=ab:3&client=me&timeout=9")
            .unwrap();
        assert_eq!(t.endpoint.addr, "127.0.0.1:8080");
        assert_eq!(t.endpoint.host, "127.0.0.1:8080");
        assert_eq!(t.channel, "news");
        assert_eq!(t.transport, Some(Transport::Sse));
        assert_eq!(t.since, Some(cursor::parse("ab:3").unwrap()));
        assert_eq!(
            t.subscribe_path(Transport::Poll, &[("since", "ab:4"), ("timeout", "25")]),
            "/ch/news/poll?client=me&since=ab:4&timeout=25"
        );
        assert_eq!(t.publish_path(&[]), "/ch/news?client=me");
        assert!(t.has_param("client") && !t.has_param("since"));
    }

    #[test]
    fn keeps_a_prefix_and_defaults_the_port() {
        let t = Target::parse("http://example.com/push/ch/a.b:c@d/").unwrap();
        assert_eq!(t.endpoint.addr, "example.com:80");
        assert_eq!(t.endpoint.host, "example.com");
        assert_eq!(t.channel, "a.b:c@d");
        assert_eq!(t.transport, None);
        assert_eq!(
            t.publish_path(&[("type", "a b")]),
            "/push/ch/a.b:c@d?type=a%20b"
        );
        let t = Target::parse("localhost:8080/ch/x").unwrap();
        assert_eq!(
            (t.endpoint.addr.as_str(), t.channel.as_str()),
            ("localhost:8080", "x")
        );
        let t = Target::parse("http://[::1]:9/ch/ch/mixed").unwrap();
        assert_eq!(t.endpoint.addr, "[::1]:9");
        assert_eq!(
            (t.channel.as_str(), t.transport),
            ("ch", Some(Transport::Mixed))
        );
        assert_eq!(t.endpoint.tls, None);
    }

    #[test]
    fn https_names_the_certificate_and_defaults_to_443() {
        let t = Target::parse("https://Push.Example.com/ch/a").unwrap();
        assert_eq!(t.endpoint.addr, "Push.Example.com:443");
        assert_eq!(t.endpoint.tls.as_deref(), Some("Push.Example.com"));
        let t = Target::parse("https://[::1]:8443/ch/a/poll").unwrap();
        assert_eq!(t.endpoint.addr, "[::1]:8443");
        assert_eq!(t.endpoint.host, "[::1]:8443");
        assert_eq!(t.endpoint.tls.as_deref(), Some("::1"));
        let plain = Target::parse("http://[::1]:8443/ch/a").unwrap();
        assert_ne!(plain.endpoint, t.endpoint, "never the same pool entry");
    }

    #[test]
    fn says_what_is_wrong_with_a_url() {
        for (url, words) in [
            ("ftp://h/ch/a", "want http[s]://"),
            ("http://h/a/b", "not a channel url"),
            ("http://h/ch/", "not a channel url"),
            ("http://h/ch/a/b/c", "not a channel url"),
            ("http://h/ch/a/websocket", "unknown transport \"websocket\""),
            ("http://u:p@h/ch/a", "credentials"),
            ("http://h/ch/a?since=x", "invalid cursor"),
            ("no url", "bad url"),
            ("ftp:/x", "not a channel url"),
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.is_input(), "{url}: {e:?}");
            assert!(e.to_string().contains(words), "{url}: {e}");
        }
    }
}
