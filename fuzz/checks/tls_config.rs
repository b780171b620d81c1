//! Checks for the `tls_config` target: what tandem parses on its TLS and
//! HTTP/2 paths. The certificate and key files (`--tls-cert`, `--tls-key`,
//! read at start and again on SIGHUP: `src/server/tls.rs`, `from_pem`),
//! and each HTTP/2 request's `:authority` and URI made into what the
//! service reads from HTTP/1.1 (`as_http1`: `Host`, a path-only URI).
//!
//! Input: byte 0 picks the part (even: PEM, odd: HTTP/2). PEM: the rest is
//! split at its first `0xFF` into a certificate file and a key file, tried
//! as they are; then a known certificate and its key, with the input's
//! bytes (all `-` removed, so no PEM marker) on lines around the blocks;
//! then that pair with one byte replaced (position and value from bytes 1
//! to 3); then mismatched and swapped files. HTTP/2: the rest up to its
//! first `\n` is the URI, what follows (if anything) the `Host` value.
//! Checked:
//!
//! * no panic, whatever the files;
//! * a loaded chain has at least one certificate; an error names its file
//!   (`cert: `, `key: `, `mismatch: `) and says what is wrong;
//! * text around the PEM blocks, on its own lines, changes nothing: the
//!   known pair loads;
//! * a key that is not the certificate's is refused as a mismatch, and the
//!   key given as the certificate (or the reverse) is refused;
//! * HTTP/2: the URI the service sees has no scheme and no authority and
//!   keeps the path and query; a valid `Host` sent is kept; without one,
//!   `Host` is the `:authority` when that is a valid header value.

use tandem::__private::{h2_as_http1_for_test, tls_from_pem_for_test};

const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASWgAwIBAgIUWuUwswUAddSuqXlEPzbMAT3Azi4wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJZnV6ei50ZXN0MCAXDTI2MTIwMjAzMjc1MloYDzIxMjYxMTA4
MDMyNzUyWjAUMRIwEAYDVQQDDAlmdXp6LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATj8AboqbiEMn54P4cB40N8rJ3QEUyWRkLNQvch+iCOIkZ2j8TQH38w
P7F+LO0XNxgFYz/h/st3e5XjOnRvMj51o1MwUTAdBgNVHQ4EFgQUTL3e7Yj469qd
InTtFVF6ActVOaswHwYDVR0jBBgwFoAUTL3e7Yj469qdInTtFVF6ActVOaswDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiB5Ovk9RQeHIXcgpRFzL6Mn
INCBiVPVwljbCYd3KcgR4AIgMCE2v6/Ysb4tH6b72Riznal9NK689Uiy+FQfQ9mr
he4=
-----END CERTIFICATE-----
";

/// The key of `CERT` (PKCS#8, P-256).
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIf39OG3oXZPi24GS
P/uM/GNKNI9q6Kj7rL1ZBS8dqcOhRANCAATj8AboqbiEMn54P4cB40N8rJ3QEUyW
RkLNQvch+iCOIkZ2j8TQH38wP7F+LO0XNxgFYz/h/st3e5XjOnRvMj51
-----END PRIVATE KEY-----
";

/// Another P-256 key: not `CERT`'s.
const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaDBXSK8bhamIFRyz
5ySDT3+fm9wE1CMVM71iwsQOxpahRANCAAQKCKe7UhwSmlUWww9vmUGGBjowF9u2
HWyNMKCd4LFHfVqEQ1wuzRrpdhVfRLua87ia+uIKaxKR6C08BAtQs40V
-----END PRIVATE KEY-----
";

pub fn check(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        pem(data, rest);
    } else {
        h2(rest);
    }
}

/// The result of loading, checked for its shape.
fn load(cert: &[u8], key: &[u8]) -> Result<usize, String> {
    let r = tls_from_pem_for_test(cert, key);
    match &r {
        Ok(n) => assert!(*n >= 1, "a chain of {n}"),
        Err(e) => {
            let (file, why) = e.split_once(": ").expect("an error names its file");
            assert!(["cert", "key", "mismatch"].contains(&file), "{e}");
            assert!(!why.trim().is_empty(), "{e}");
        }
    }
    r
}

fn pem(data: &[u8], rest: &[u8]) {
    // Anything, as two files.
    let (cert, key) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let _ = load(cert, key);

    // The known pair with text around its blocks, on lines of its own.
    let junk: Vec<u8> = rest.iter().copied().filter(|&b| b != b'-').collect();
    let (a, b) = junk.split_at(junk.len() / 2);
    let wrap = |block: &str, before: &[u8], after: &[u8]| {
        [before, b"\n", block.as_bytes(), b"\n", after].concat()
    };
    assert_eq!(
        load(&wrap(CERT, a, b), &wrap(KEY, b, a)),
        Ok(1),
        "text around the blocks"
    );

    // One byte of either file replaced: loads or is refused, never panics.
    if let [_, which, at, value, ..] = *data {
        let mut cert = CERT.as_bytes().to_vec();
        let mut key = KEY.as_bytes().to_vec();
        let file = if which % 2 == 0 { &mut cert } else { &mut key };
        let i = at as usize * 3 % file.len();
        file[i] = value;
        let _ = load(&cert, &key);
    }

    // Keys that are not the certificate's.
    match load(CERT.as_bytes(), OTHER_KEY.as_bytes()) {
        Err(e) => assert!(e.starts_with("mismatch: "), "{e}"),
        Ok(_) => panic!("another key was taken for the certificate's"),
    }
    assert!(load(KEY.as_bytes(), CERT.as_bytes()).is_err(), "swapped");
    assert!(load(CERT.as_bytes(), CERT.as_bytes()).is_err(), "no key");
}

fn h2(rest: &[u8]) {
    let (uri, host) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Some((seen, seen_host)) = h2_as_http1_for_test(uri, host) else {
        return; // not a URI: hyper's HTTP/2 server refuses the request
    };
    let text = String::from_utf8_lossy(uri);
    let absolute = text.contains("://");
    if absolute {
        assert!(
            seen.starts_with('/') || seen == "*",
            "{text:?} seen as {seen:?}"
        );
    } else {
        // Kept as it is, but for a fragment, which a request target never
        // carries (`http` drops it when parsing).
        let target = text.split('#').next().unwrap_or_default();
        assert_eq!(seen, target, "a URI without scheme is kept");
    }
    let valid_host = host.filter(|h| valid_header_value(h));
    match valid_host {
        Some(h) => assert_eq!(seen_host.as_deref(), Some(h), "the Host sent is kept"),
        None => {
            if let Some(sh) = &seen_host {
                // From the authority: what is between `//` and the path.
                let after = text.split_once("://").map(|(_, a)| a).unwrap_or(&text);
                assert!(
                    after.as_bytes().starts_with(sh),
                    "Host {:?} not from {text:?}",
                    String::from_utf8_lossy(sh)
                );
            }
        }
    }
}

/// What `http::HeaderValue::from_bytes` accepts: visible ASCII, space,
/// tab and bytes 0x80 and above.
fn valid_header_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
