//! Checks for the client-address walk behind trusted proxies
//! (`src/http/limits.rs`, through the hidden
//! `tandem::__private::client_addr_for_test` and `cidr_contains_for_test`).
//!
//! Input layout: byte 0 picks the trusted proxies (bits 0-1, from `TRUSTED`)
//! and, with bit 7 set, runs the CIDR check instead; byte 1 picks the peer
//! (from `PEERS`). The rest is lines: a line starting with `F` is a
//! `Forwarded` value, any other an `X-Forwarded-For` value (its first byte
//! dropped). In CIDR mode the rest is `CIDR IP` as text.
//!
//! Invariants: the walk agrees with a model written out again (collect every
//! element, reverse, take the first address that is not a trusted proxy);
//! from an untrusted peer the headers are ignored; what a client writes to
//! the left of the chain never changes the address counted once an
//! untrusted one was found; another trusted hop appended on the right
//! changes nothing, an untrusted one appended is the answer. `Cidr`
//! agrees with a bit-by-bit model (an IPv4-mapped IPv6 address is IPv4, on
//! either side).
#![allow(dead_code)]

use std::net::IpAddr;

pub const TRUSTED: [&[&str]; 4] = [
    &["127.0.0.0/8", "::1"],
    &["10.0.0.0/8", "fd00::/8"],
    &["10.0.0.1", "192.0.2.0/24", "::ffff:198.51.100.0/120"],
    &["0.0.0.0/0"],
];

pub const PEERS: [&str; 6] = [
    "127.0.0.1",
    "10.0.0.1",
    "::ffff:10.2.3.4",
    "fd00::7",
    "203.0.113.9",
    "198.51.100.3",
];

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.octets() {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => IpAddr::from([a, b, c, d]),
            _ => ip,
        },
        v4 => v4,
    }
}

/// (address bits, length, prefix length), IPv4-mapped blocks turned to IPv4.
fn model_cidr(s: &str) -> Option<(u128, u32, u32)> {
    let (a, bits) = match s.find('/') {
        Some(i) => (&s[..i], Some(s[i + 1..].parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let (v, len) = match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let bits = u32::from(bits.unwrap_or(len as u8));
    if bits > len {
        return None;
    }
    if let IpAddr::V4(v4) = canonical(addr) {
        if len == 128 {
            // `::ffff:a.b.c.d/N` holds IPv4 addresses only when N >= 96.
            return (bits >= 96).then(|| (u128::from(u32::from(v4)), 32, bits - 96));
        }
    }
    Some((v, len, bits))
}

fn model_contains(c: (u128, u32, u32), ip: IpAddr) -> bool {
    let (v, len) = match canonical(ip) {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if len != c.1 {
        return false;
    }
    (0..c.2).all(|i| (v >> (len - 1 - i)) & 1 == (c.0 >> (len - 1 - i)) & 1)
}

fn model_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let host = if let Some(rest) = s.strip_prefix('[') {
        &rest[..rest.find(']')?]
    } else {
        &s[..s.rfind(':')?]
    };
    host.parse::<IpAddr>().ok().map(canonical)
}

/// A header value as `HeaderValue::to_str` sees it: visible ASCII, space
/// and tab, else nothing.
fn text(v: &[u8]) -> &str {
    if v.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(v).unwrap()
    } else {
        ""
    }
}

fn storable(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 32 && b != 127))
}

fn model(trusted: &[&str], peer: IpAddr, headers: &[(&str, &[u8])]) -> IpAddr {
    let cidrs: Vec<_> = trusted.iter().filter_map(|s| model_cidr(s)).collect();
    let is_trusted = |ip: IpAddr| cidrs.iter().any(|&c| model_contains(c, ip));
    let peer = canonical(peer);
    if !is_trusted(peer) {
        return peer;
    }
    let stored: Vec<(&str, &[u8])> = headers
        .iter()
        .copied()
        .filter(|(_, v)| storable(v))
        .collect();
    let fwd = stored.iter().any(|(n, _)| *n == "forwarded");
    let mut elements: Vec<String> = Vec::new();
    for (n, v) in &stored {
        if (*n == "forwarded") != fwd {
            continue;
        }
        for e in text(v).split(',') {
            if fwd {
                let f = e
                    .split(';')
                    .map(str::trim)
                    .find(|p| {
                        p.len() >= 4 && p.is_char_boundary(4) && p[..4].eq_ignore_ascii_case("for=")
                    })
                    .map(|p| &p[4..])
                    .unwrap_or("");
                elements.push(f.to_string());
            } else {
                elements.push(e.to_string());
            }
        }
    }
    let mut client = peer;
    for e in elements.iter().rev() {
        match model_node(e) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

fn check_cidr(rest: &[u8]) {
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let Some((cidr, ip)) = s.rsplit_once(' ') else {
        return;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else { return };
    let got = tandem::__private::cidr_contains_for_test(cidr, ip);
    let want = model_cidr(cidr).map(|c| model_contains(c, ip));
    assert_eq!(got, want, "{cidr:?} holding {ip}");
}

pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    if data[0] & 0x80 != 0 {
        return check_cidr(&data[2..]);
    }
    let trusted = TRUSTED[usize::from(data[0] & 3)];
    let peer: IpAddr = PEERS[usize::from(data[1]) % PEERS.len()].parse().unwrap();
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    for line in data[2..].split(|&b| b == b'\n') {
        match line.split_first() {
            Some((b'F', v)) => headers.push(("forwarded", v)),
            Some((_, v)) => headers.push(("x-forwarded-for", v)),
            None => {}
        }
    }
    let got = tandem::__private::client_addr_for_test(trusted, peer, &headers);
    assert_eq!(
        got,
        model(trusted, peer, &headers),
        "{headers:?} from {peer}"
    );
    let cidrs: Vec<_> = trusted.iter().filter_map(|s| model_cidr(s)).collect();
    let is_trusted = |ip: IpAddr| cidrs.iter().any(|&c| model_contains(c, ip));

    if !is_trusted(peer) {
        assert_eq!(
            got,
            canonical(peer),
            "headers from an untrusted peer are ignored"
        );
        return;
    }
    let name = if headers
        .iter()
        .any(|(n, v)| *n == "forwarded" && storable(v))
    {
        "forwarded"
    } else {
        "x-forwarded-for"
    };
    // A client writes whatever it likes to the left of the chain.
    if !is_trusted(got) {
        let mut more = vec![(name, &b"for=6.6.6.6, 6.6.6.6, [::1]:1, unknown"[..])];
        more.extend(headers.iter().copied());
        assert_eq!(
            tandem::__private::client_addr_for_test(trusted, peer, &more),
            got,
            "a prefix changed the client of {headers:?}"
        );
    }
    // Another hop on the right: a trusted one changes nothing (when the
    // chain is not empty), an untrusted one is the client.
    if name == "x-forwarded-for" {
        let mut hop = headers.clone();
        hop.push((name, b"203.0.113.200"));
        assert_eq!(
            tandem::__private::client_addr_for_test(trusted, peer, &hop),
            if is_trusted("203.0.113.200".parse().unwrap()) {
                model(trusted, peer, &hop)
            } else {
                "203.0.113.200".parse().unwrap()
            },
        );
    }
}
