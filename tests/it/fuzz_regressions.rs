//! The fuzz targets' checks, run by `cargo test` (see `docs/fuzzing.md`).
//!
//! Each target's invariants live in `fuzz/checks/TARGET.rs`, plain Rust that
//! the fuzz target and this module both include. Here they run on:
//!
//! * every file under `fuzz/regressions/TARGET/`: crashes the fuzzer found
//!   (minimized, and fixed since) and committed seeds, so a bug once found
//!   stays fixed without a nightly toolchain or cargo-fuzz;
//! * a few inputs written out below, with what they must give, so the test
//!   still says something if the files are lost and shows how inputs are laid
//!   out.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/checks/cookie_jar.rs"]
mod cookie_jar;
#[path = "../../fuzz/checks/forwarded.rs"]
mod forwarded;
#[path = "../../fuzz/checks/inject.rs"]
mod inject;
#[path = "../../fuzz/checks/publish_body.rs"]
mod publish_body;
#[path = "../../fuzz/checks/request_headers.rs"]
mod request_headers;
#[path = "../../fuzz/checks/route_query.rs"]
mod route_query;
#[path = "../../fuzz/checks/router_model.rs"]
mod router_model;
#[path = "../../fuzz/checks/sniff.rs"]
mod sniff;
#[path = "../../fuzz/checks/tls_config.rs"]
mod tls_config;
#[path = "../../fuzz/checks/token.rs"]
mod token;
#[path = "../../fuzz/checks/wire_roundtrip.rs"]
mod wire_roundtrip;

/// The committed inputs of a target, sorted; there must be some.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// Runs `check` on every committed input of `target`, naming the file that fails.
fn replay<T>(target: &str, check: fn(&[u8]) -> T) {
    for path in inputs(target) {
        let data = std::fs::read(&path).expect("readable input");
        let outcome = std::panic::catch_unwind(|| {
            check(&data);
        });
        assert!(
            outcome.is_ok(),
            "{} fails its check (the panic is printed above)",
            path.display()
        );
    }
}

#[test]
fn token_regressions() {
    replay("token", token::check);
}

#[test]
fn tls_config_regressions() {
    replay("tls_config", tls_config::check);
}

/// The layout of `tls_config`'s inputs, and what each part must give.
#[test]
fn tls_config_examples() {
    // PEM: garbage files, then the known pair wrapped in text.
    tls_config::check(b"\x00not a certificate\xffnot a key");
    tls_config::check(b"\x02\x01\x07A");
    // HTTP/2: an absolute URI and no Host; with a Host; a bad Host.
    tls_config::check(b"\x01https://example.test:8443/ch/c/sse?since=0");
    tls_config::check(b"\x01https://a.test/ch/c\nb.test");
    tls_config::check(b"\x01https://a.test/\nbad\x7fhost");
    let (uri, host) =
        tandem::__private::h2_as_http1_for_test(b"https://a.test:1/p?q=1", None).unwrap();
    assert_eq!(uri, "/p?q=1");
    assert_eq!(host.as_deref(), Some(&b"a.test:1"[..]));
    assert!(tandem::__private::tls_from_pem_for_test(b"", b"")
        .unwrap_err()
        .starts_with("cert: "));
}

#[test]
fn cookie_jar_regressions() {
    replay("cookie_jar", cookie_jar::check);
}

#[test]
fn forwarded_regressions() {
    replay("forwarded", forwarded::check);
}

#[test]
fn forwarded_seeds() {
    // A trusted proxy (10.0.0.1, byte 1 = 1) behind 10/8 (byte 0 = 1):
    // the first untrusted address from the right.
    forwarded::check(b"\x01\x01X6.6.6.6, 203.0.113.9, 10.0.0.2");
    let got = |trusted: &[&str], peer: &str, h: &[(&str, &[u8])]| {
        tandem::__private::client_addr_for_test(trusted, peer.parse().unwrap(), h)
    };
    let xff: &[(&str, &[u8])] = &[("x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.2")];
    assert_eq!(
        got(&["10.0.0.0/8"], "10.0.0.1", xff).to_string(),
        "203.0.113.9"
    );
    assert_eq!(
        got(&["10.0.0.0/8"], "192.0.2.1", xff).to_string(),
        "192.0.2.1"
    );
    // The IPv4-mapped block form of `--trusted-proxy` holds IPv4 peers
    // (it held nothing before the fuzzer's model said otherwise).
    assert_eq!(
        got(&["::ffff:10.0.0.0/104"], "10.0.0.1", xff).to_string(),
        "203.0.113.9"
    );
    assert_eq!(
        tandem::__private::cidr_contains_for_test(
            "::ffff:10.0.0.0/104",
            "10.9.9.9".parse().unwrap()
        ),
        Some(true)
    );
    forwarded::check(b"\x80\x00::ffff:10.0.0.0/104 10.1.2.3");
}

#[test]
fn publish_body_regressions() {
    replay("publish_body", publish_body::check);
}

#[test]
fn publish_body_seeds() {
    use publish_body::{check, Outcome};
    // Byte 0 = 0x3f: max_parts 8, max_event_bytes 65536 (the defaults' scale).
    let form = check(b"\x3fapplication/x-www-form-urlencoded\ntype=chat&data=hi+there%21");
    assert_eq!(form.form, Some(Ok(1)));
    // Two parts, one a file with its own content type.
    let two = check(
        b"\x3fmultipart/form-data; boundary=xyz\n\
          --xyz\r\nContent-Disposition: form-data; name=\"chat\"\r\n\r\nhello\r\n\
          --xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
          Content-Type: image/png\r\n\r\n\x89PNG\r\n--xyz--\r\n",
    );
    assert_eq!(two.by_header, Some(Ok(2)));
    // The fixed boundary, whatever the header says; byte 0 = 0x38: max_parts 1.
    let body = format!(
        "\x38\n--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\ny\r\n--{b}--\r\n",
        b = publish_body::BOUNDARY
    );
    assert_eq!(check(body.as_bytes()).multipart, Some(Err(413)));
    // A part whose name is no valid type, and a form over a 1-byte limit.
    let bad = check(
        b"\x07multipart/form-data; boundary=q\n\
          --q\r\nContent-Disposition: form-data; name=\"a b\"\r\n\r\nx\r\n--q--\r\n",
    );
    assert_eq!(bad.by_header, Some(Err(400)));
    assert_eq!(check(b"\x00\nhello").form, Some(Err(413)));
    assert_eq!(
        check(b"\x3fmultipart/form-data\n"),
        Outcome {
            form: Some(Ok(1)),
            multipart: Some(Err(400)),
            by_header: None,
        }
    );
}

#[test]
fn request_headers_regressions() {
    replay("request_headers", request_headers::check);
}

#[test]
fn request_headers_seeds() {
    use tandem::__private::{cookie_for_test, negotiate_for_test, Sub};
    request_headers::check(b"\x00text/event-stream\ntandem_help=abc.def; a=1");
    let h: &[&[u8]] = &[b"xtandem_help=no; tandem_help=\"q\"", b"tandem_help=later"];
    assert_eq!(cookie_for_test(h, "tandem_help").as_deref(), Some("q"));
    assert_eq!(
        cookie_for_test(&[b"tandem_help=; tandem_help=x"], "tandem_help"),
        None
    );
    assert_eq!(negotiate_for_test(Some(b"TEXT/Event-Stream")), Sub::Sse);
    assert_eq!(
        negotiate_for_test(Some(b"multipart/mixed, text/event-stream")),
        Sub::Sse
    );
    assert_eq!(negotiate_for_test(Some(b"image/png,\xff")), Sub::Poll);
}

#[test]
fn route_query_regressions() {
    replay("route_query", route_query::check);
}

#[test]
fn route_query_seeds() {
    use route_query::check;
    use tandem::__private::{Route, Sub};
    let sse = check(b"/ch/a%3Ab/sse");
    assert_eq!(sse.path, Ok(Some(Route::Subscribe("a:b".into(), Sub::Sse))));
    let q = check(b"since=5&backlog=0&timeout=0.5&callback=a.b_c$&client=me&type=chat&_=1")
        .query
        .expect("a valid query");
    assert_eq!(
        (q.since, q.backlog, q.callback.as_deref()),
        (Some(tandem::Cursor::bare(5)), Some(0), Some("a.b_c$"))
    );
    let q = check(b"since=k3j9x2a:17").query.expect("a cursor");
    assert_eq!(
        q.since.map(|c| c.to_string()).as_deref(),
        Some("k3j9x2a:17")
    );
    for bad in [
        &b"callback=alert(1)"[..],
        b"callback=a..b",
        b"since=18446744073709551616",
        b"since=K3:1",
        b"since=:1",
        b"since=0123456789abcdefg:1",
        b"since=%zz",
        b"timeout=-1",
        b"client=a%20b",
    ] {
        assert!(
            check(bad).query.is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(check(b"/ch/a%2Fb").path.is_err());
    assert!(check(b"/ch/\xff").path.is_err());
}

#[test]
fn wire_roundtrip_regressions() {
    replay("wire_roundtrip", wire_roundtrip::check);
}

#[test]
fn wire_roundtrip_seeds() {
    use wire_roundtrip::check;
    // flags, id (8 bytes), type length + chars, [content type], [from], splits (4), data
    // Text with every kind of line end, no content type, fed in three pieces.
    check(b"\x00\x07\0\0\0\0\0\0\0\x03\x02\x03\x04\x05\x05\x00\x0a\x00two\r\nlines\rand\nmore");
    // A PNG (base64 in SSE and JSON) that contains the multipart delimiter,
    // sent by client "AB" with the largest id, fed a byte at a time.
    let mut png = b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x01\x00\x01\0\0\0\0".to_vec();
    png.extend_from_slice(b"\x89PNG\r\n--tandem-b7d1e0\r\n\xfe");
    check(&png);
    // A content type made from the input ("}~ !"), and non-UTF-8 data with it.
    check(b"\x07\x01\0\0\0\0\0\0\0\x00\x10\x03\x5d\x5e\x00\x01\x00\x00\x00\x00\xc3\x28");
    // Script-closing text in a JSON-typed event.
    check(b"\x04\x2a\0\0\0\0\0\0\0\x00\x00\xff\xff\x00\x00</script><!--\xe2\x80\xa8\"\\");
}

#[test]
fn router_model_regressions() {
    replay("router_model", router_model::check);
}

#[test]
fn router_model_seeds() {
    use router_model::check;
    // Byte 0 = 2: a ring of 3. Ops: 0 publish (ch, client), 1 subscribe (ch,
    // client, start, n, transport), 2 read, 3 drain, 4 poll, 5 drop, 6 sweep.
    let s = check(&[
        2, // buffer 3
        1, 0, 3, 2, 0, 6, // sub 0 on "a", no client, from now, library
        1, 0, 0, 2, 0, 2, // sub 1 on "a", client x, from now, sse
        4, 0, // sub 0 polls: pending
        0, 0, 3, // publish on "a" (wakes sub 0)
        0, 0, 0, // publish on "a" from x (sub 1 skips it)
        3, 1, // sub 1 drains: event 1 only
        0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3, // four more: 2 and 3 leave the ring
        3, 0, // sub 0 drains: gap 1..=3, then 4, 5, 6
        1, 0, 3, 0, 9, 0, // since 9 on "a" (last 6): a reset
        3, 2, // which it drains
        5, 0, 6, // drop sub 0 (sub 2 takes its index), sweep
        1, 1, 3, 1, 2, 3, // backlog 2 on the empty "b": sub at index 2
        0, 1, 1, 3, 2, // publish on "b" from y, which it reads
    ]);
    assert!(s.events >= 8, "{s:?}");
    assert!(s.gaps >= 2 && s.resets == 1 && s.wakes == 1, "{s:?}");
    // Start 3 is since in the channel's own epoch, 4 in a foreign one.
    let s = check(&[
        7, // buffer 8
        0, 0, 3, 0, 0, 3, 0, 0, 3, // three publishes on "a"
        1, 0, 3, 3, 1, 0, // sub 0 on "a": since EPOCH:1 (its epoch)
        1, 0, 3, 4, 2, 0, // sub 1 on "a": since f0reign:2
        3, 0, // sub 0 drains: 2, 3
        3, 1, // sub 1 drains: a reset gap, then 1, 2, 3
    ]);
    assert_eq!((s.events, s.gaps, s.resets), (5, 1, 1), "{s:?}");
}

#[test]
fn sniff_regressions() {
    replay("sniff", sniff::check);
}

#[test]
fn sniff_seeds() {
    use tandem::__private::{sniff_bytes, SniffOutcome};
    let path_of = |data: &[u8]| {
        sniff::check(data);
        match sniff_bytes(data) {
            SniffOutcome::Head { path, .. } => path,
            SniffOutcome::Partial => "partial",
            SniffOutcome::Refused { .. } => "refused",
            SniffOutcome::Other { .. } => "other",
        }
    };
    assert_eq!(
        path_of(b"POST /ch/c HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        "exchange"
    );
    assert_eq!(path_of(b"GET /ch/c/sse HTTP/1.1\r\n\r\n"), "stream");
    assert_eq!(
        path_of(b"POST /ch/c HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"),
        "hyper"
    );
    assert_eq!(path_of(b"POST /ch/c HTTP/1.1\r\nHost"), "partial");
    assert_eq!(
        path_of(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
        "refused"
    );
    assert_eq!(path_of(b"GET /ch/c/poll HTTP/1.1\r\n\r\n"), "exchange");
    // A path `http` refuses although httparse takes it: refused (hyper
    // refuses it too).
    match sniff_bytes(b"GET /a<b HTTP/1.1\r\n\r\nrest") {
        SniffOutcome::Refused { why } => assert_eq!(why, "invalid request target"),
        other => panic!("{other:?}"),
    }
    // More headers than the lean path takes: hyper's, whole; beyond 100,
    // refused.
    let many: String = (0..60).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(
        path_of(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
        "other"
    );
    let more: String = (0..120).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(
        path_of(format!("GET / HTTP/1.1\r\n{more}\r\n").as_bytes()),
        "refused"
    );
}

#[test]
fn inject_regressions() {
    replay("inject", inject::check);
}

#[test]
fn inject_seeds() {
    // Byte 0: the coding (bits 0-1) and Content-Type (bits 2-3); byte 1
    // seeds the chunking; the rest is the page.
    inject::check(b"\x00\x00<html><head><title>t");
    inject::check(b"\x01\x05<!--<head>--><HEAD>");
    inject::check(b"\x07\x02<\x00h\x00e\x00a\x00d\x00>\x00");
    inject::check(b"\x03\x01<header>");
}
