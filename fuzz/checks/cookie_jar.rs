//! Checks for the `cookie_jar` target: the proxy's per-help-session cookie
//! jar (`src/cobrowse/jar.rs`), which reads `Cookie` headers from browsers
//! and `Set-Cookie` lines from the application, against a model.
//!
//! Input layout: lines (split on `\n`); each line is one operation, its
//! first character picks it (`% 4`), the rest is `PATH\tTEXT` (a path without a
//! tab is the whole rest, with an empty text):
//!
//! * 0: the customer's browser sent `Cookie: TEXT` to `PATH`;
//! * 1: the application set `TEXT` (a `Set-Cookie` value) for the customer;
//! * 2: the same, in answer to the agent's view;
//! * 3: the pending lines for `PATH` are handed over.
//!
//! Paths that do not start with `/` get one. Checked after every operation:
//!
//! * no panic; never more than the limit of cookies;
//! * every pair of `header(path)` is `name=value` with a non-empty name,
//!   within the byte limit;
//! * as long as nothing was set for the agent's view (whose changes wait
//!   for the browser), after the browser sent unique names, `header(path)`
//!   holds each pair it sent (if the jar has room);
//! * handing over twice in a row gives nothing the second time;
//! * a cookie deleted at `Path=/` (`Max-Age=0` or less) is not in the
//!   header for `/` afterwards.

use tandem::__private::JarForTest;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (max_cookies, max_bytes) = JarForTest::LIMITS;
    let mut jar = JarForTest::default();
    // Names whose latest change came from the agent's view, not yet handed over.
    let mut pending: Vec<String> = Vec::new();
    for line in text.split('\n').take(200) {
        let Some(first) = line.chars().next() else {
            continue;
        };
        let op = first as u32;
        let rest = &line[first.len_utf8()..];
        let (path, arg) = rest.split_once('\t').unwrap_or((rest, ""));
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        match op % 4 {
            0 => {
                jar.saw_request(&path, arg);
                let sent = JarForTest::pairs(arg);
                let unique = sent
                    .iter()
                    .all(|(n, _)| sent.iter().filter(|(m, _)| m == n).count() == 1);
                let fits = jar.len() < max_cookies;
                if unique && fits && pending.is_empty() {
                    let header = jar.header(&path).unwrap_or_default();
                    let got = JarForTest::pairs(&header);
                    for (n, v) in &sent {
                        if n.len() + v.len() < max_bytes && !v.contains(';') {
                            assert!(
                                got.iter().any(|(k, w)| k == n && w == v),
                                "sent {n}={v} to {path}, the jar gives {header:?}"
                            );
                        }
                    }
                }
            }
            1 | 2 => {
                let for_view = op % 4 == 2;
                jar.set(arg, &path, for_view);
                let Some((n, _)) = arg.split(';').next().and_then(|kv| kv.split_once('=')) else {
                    continue;
                };
                let n = n.trim().to_string();
                if for_view {
                    pending.push(n);
                    continue;
                }
                // The last Path and Max-Age count, as in the jar.
                let attr = |name: &str| {
                    arg.split(';')
                        .skip(1)
                        .filter_map(|a| a.split_once('='))
                        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim())
                        .last()
                };
                let cookie_path = arg
                    .split(';')
                    .skip(1)
                    .filter_map(|a| a.split_once('='))
                    .filter(|(k, v)| {
                        k.trim().eq_ignore_ascii_case("path") && v.trim().starts_with('/')
                    })
                    .map(|(_, v)| v.trim())
                    .last();
                let deleted = attr("max-age")
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|s| s <= 0);
                if deleted && cookie_path == Some("/") && !n.is_empty() {
                    let h = jar.header("/").unwrap_or_default();
                    assert!(
                        JarForTest::pairs(&h).iter().all(|(k, _)| *k != n),
                        "{n} deleted at /, still in {h:?}"
                    );
                }
            }
            _ => {
                jar.hand_over(&path);
                assert!(jar.hand_over(&path).is_empty(), "handed over twice");
            }
        }
        assert!(jar.len() <= max_cookies, "{} cookies kept", jar.len());
        for p in [path.as_str(), "/"] {
            if let Some(h) = jar.header(p) {
                let pairs: Vec<&str> = h.split("; ").collect();
                for pair in &pairs {
                    let (n, _) = pair.split_once('=').expect("name=value");
                    assert!(!n.is_empty() && pair.len() <= max_bytes, "{pair:?}");
                }
            }
        }
    }
}
