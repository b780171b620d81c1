//! Per-client-address limits: open connections, publishes per second, new
//! help sessions per minute; and who the client is behind a trusted proxy.
//!
//! `serve`'s accept loop holds one [`Limits`] for all its connections. A
//! connection from an address that already has `max_connections_per_addr`
//! open is answered 429 (the global `max_connections` stays 503: a full
//! server, not a greedy client). A publish or a new session over its rate
//! is answered 429 with `Retry-After` on whichever path the request came
//! (the lean exchange or hyper), after its body was read, so the
//! connection stays usable.
//!
//! The rates are GCRA token buckets: one `u64` per address (the time at
//! which its bucket would be full again), so a check is one hash lookup
//! under one of 16 `parking_lot` locks, never held across an `.await`. An
//! address whose bucket is full again is the same as one never seen, so
//! such entries are swept when a shard has doubled since its last sweep:
//! the maps hold only the addresses active in the last period.
//!
//! Addresses are counted as themselves (IPv4) or by their /64 (IPv6: a
//! host or a subscriber line gets a whole /64).
//!
//! The client address is the connection's peer, unless the peer is one of
//! `trusted_proxies`: then it is taken from `Forwarded` (`for=`) or else
//! `X-Forwarded-For`, read from the right and skipping the addresses that
//! are themselves trusted proxies (each proxy appends the address it got
//! the request from, so the first untrusted one from the right is the
//! last address no trusted party vouches for). From any other peer those
//! headers are ignored: anyone can write them. Connections from a trusted
//! proxy are not counted per address (it carries many clients).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED, RETRY_AFTER};
use hyper::{Method, Request, Response};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Body, HttpConfig, Service};
use crate::Error;

/// An address or a block of them: `10.0.0.0/8`, `192.0.2.7`, `::1`, `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        // `::ffff:a.b.c.d/N` is the IPv4 block `a.b.c.d/N-96`: the
        // addresses it is matched against are made IPv4 too (`canonical`),
        // so left IPv6 it would hold nothing.
        if let IpAddr::V4(v4) = canonical(addr) {
            if max == 128 {
                if bits < 96 {
                    return None;
                }
                return Some(Cidr {
                    addr: IpAddr::V4(v4),
                    bits: bits - 96,
                });
            }
        }
        Some(Cidr { addr, bits })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What an address is counted as: an IPv4 address itself, an IPv6 address
/// by its /64 (one subscriber line or host gets a whole /64, so counting
/// single IPv6 addresses would give each client 2^64 allowances).
fn counted_as(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, a dual-stack
/// listener's view of an IPv4 client) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

const SHARDS: usize = 16;

/// A keyed multiply-xor hasher for the address maps: SipHash cost a tenth
/// of a limited publish. The key is random per map, so which addresses
/// collide cannot be worked out from outside.
#[derive(Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }
    fn finish(&self) -> u64 {
        // Fold the high bits in: the map takes its buckets from the low.
        self.0 ^ (self.0 >> 29)
    }
}

#[derive(Clone, Copy)]
struct AddrKey(u64);

impl Default for AddrKey {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // Without randomness the maps still work, only predictably.
        let _ = getrandom::getrandom(&mut seed);
        AddrKey(u64::from_le_bytes(seed) | 1)
    }
}

impl std::hash::BuildHasher for AddrKey {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(self.0)
    }
}

type AddrMap<T> = HashMap<IpAddr, T, AddrKey>;

fn shard_of(ip: &IpAddr) -> usize {
    // Cheap and spread enough: the low bits of the address vary most.
    let x = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(*v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(*v6);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

struct Shard<T> {
    map: AddrMap<T>,
    /// Sweep when the map grows past this.
    sweep_at: usize,
}

impl<T> Default for Shard<T> {
    fn default() -> Self {
        Shard {
            map: AddrMap::default(),
            sweep_at: 1024,
        }
    }
}

/// A rate per address: `limit` in each `period`, in bursts of up to `limit`.
struct Rate {
    limit: u32,
    /// `a second`, `a minute`: for the error message.
    per: &'static str,
    what: &'static str,
    /// The period divided by the limit, and the period, in nanoseconds.
    interval: u64,
    burst: u64,
    base: Instant,
    shards: [Mutex<Shard<u64>>; SHARDS],
}

impl Rate {
    fn new(limit: u32, period: Duration, per: &'static str, what: &'static str) -> Option<Rate> {
        (limit > 0).then(|| Rate {
            limit,
            per,
            what,
            interval: period.as_nanos() as u64 / u64::from(limit),
            burst: period.as_nanos() as u64,
            base: Instant::now(),
            shards: Default::default(),
        })
    }

    /// Takes one from `ip`'s bucket, or says how long until one is there.
    fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now().duration_since(self.base).as_nanos() as u64;
        let mut shard = self.shards[shard_of(&ip)].lock();
        let full_at = shard.map.get(&ip).copied().unwrap_or(0).max(now);
        let next = full_at + self.interval;
        if next > now + self.burst {
            return Err(Duration::from_nanos(next - self.burst - now));
        }
        shard.map.insert(ip, next);
        if shard.map.len() > shard.sweep_at {
            // Full again means never seen: forget it.
            shard.map.retain(|_, full_at| *full_at > now);
            shard.sweep_at = (shard.map.len() * 2).max(1024);
        }
        Ok(())
    }

    fn refusal(&self, wait: Duration) -> Response<Body> {
        let e = Error::rate_limited(format!(
            "too many {} from one address (max {} {})",
            self.what, self.limit, self.per
        ));
        let mut resp = super::error_response(&e);
        // Whole seconds, rounded up, at least 1.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        resp
    }
}

/// The per-address limits of one server (see the module's notes).
pub(crate) struct Limits {
    max_connections: usize,
    connections: [Mutex<Shard<u32>>; SHARDS],
    publishes: Option<Rate>,
    sessions: Option<Rate>,
    trusted: Vec<Cidr>,
}

/// One open connection counted against its address; uncounted on drop.
pub(crate) struct Counted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut shard = self.limits.connections[shard_of(&self.ip)].lock();
        if let Some(n) = shard.map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                shard.map.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// From a validated config.
    pub(crate) fn new(cfg: &HttpConfig) -> Limits {
        Limits {
            max_connections: cfg.max_connections_per_addr,
            connections: Default::default(),
            publishes: Rate::new(
                cfg.publishes_per_second,
                Duration::from_secs(1),
                "a second",
                "publishes",
            ),
            sessions: Rate::new(
                cfg.sessions_per_minute,
                Duration::from_secs(60),
                "a minute",
                "new sessions",
            ),
            trusted: cfg
                .trusted_proxies
                .iter()
                .filter_map(|s| Cidr::parse(s))
                .collect(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// Counts a new connection from `peer`, or refuses it (429) when the
    /// address has its share open already. A trusted proxy's connections
    /// are not counted.
    pub(crate) fn open(self: &Arc<Self>, peer: IpAddr) -> Result<Option<Counted>, Error> {
        if self.is_trusted(peer) {
            return Ok(None);
        }
        let ip = counted_as(peer);
        let mut shard = self.connections[shard_of(&ip)].lock();
        let n = shard.map.entry(ip).or_insert(0);
        if *n as usize >= self.max_connections {
            return Err(Error::rate_limited(format!(
                "too many connections from one address (max {})",
                self.max_connections
            )));
        }
        *n += 1;
        drop(shard);
        Ok(Some(Counted {
            limits: self.clone(),
            ip,
        }))
    }

    /// The refusal of a request over its address's rate (publishes, new
    /// sessions), if it is one; `None` lets it through. Free when no rate
    /// is set, and otherwise one hash lookup for a POST that counts.
    pub(crate) fn check<B>(
        &self,
        svc: &Service,
        peer: IpAddr,
        req: &Request<B>,
    ) -> Option<Response<Body>> {
        if (self.publishes.is_none() && self.sessions.is_none()) || req.method() != Method::POST {
            return None;
        }
        let rate = match (&self.publishes, &self.sessions) {
            (Some(p), _) if svc.is_publish_request(req.uri()) => p,
            (_, Some(s)) if svc.opens_session(req.method(), req.uri()) => s,
            _ => return None,
        };
        let client = counted_as(self.client(peer, req.headers()));
        rate.take(client).err().map(|wait| {
            log::debug!("{client}: too many {}", rate.what);
            rate.refusal(wait)
        })
    }

    /// The client's address: the peer, or behind a trusted proxy the
    /// address it forwarded for. Walks the header values from the right
    /// without collecting them.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers.get_all(FORWARDED);
        if forwarded.iter().next().is_some() {
            let entries = forwarded
                .iter()
                .rev()
                .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
                .map(|e| {
                    e.split(';')
                        .map(str::trim)
                        .find_map(|p| {
                            p.get(..4)
                                .filter(|k| k.eq_ignore_ascii_case("for="))
                                .map(|_| &p[4..])
                        })
                        .unwrap_or("")
                });
            return self.walk(peer, entries);
        }
        let entries = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        self.walk(peer, entries)
    }

    /// From the right: the first address that is not a trusted proxy.
    fn walk<'a>(&self, peer: IpAddr, entries: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = peer;
        for entry in entries {
            match parse_node(entry) {
                Some(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                // `unknown`, an obfuscated name, garbage: nothing to the
                // left of it can be trusted.
                None => break,
            }
        }
        client
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`, quoted or not.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let host = if let Some(rest) = s.strip_prefix('[') {
        // An unclosed bracket is garbage, not an address (found by the
        // `forwarded` fuzz target: `[2001:db8::1:4711` was taken as one).
        rest.split_once(']')?.0
    } else {
        s.rsplit_once(':')?.0
    };
    host.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")), "mapped v4 is v4");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.0.0.9")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert_eq!(Cidr::parse("::ffff:10.0.0.0/80"), None, "not an IPv4 block");
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    fn limits(trusted: &[&str]) -> Limits {
        Limits::new(
            &HttpConfig::default().trusted_proxies(trusted.iter().map(|s| s.to_string()).collect()),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let l = limits(&["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        // From a trusted proxy: the first untrusted address from the right.
        assert_eq!(l.client(ip("10.0.0.1"), &xff), ip("203.0.113.9"));
        // From anyone else: the headers mean nothing.
        assert_eq!(l.client(ip("198.51.100.1"), &xff), ip("198.51.100.1"));
        // Forwarded wins over X-Forwarded-For; ports and brackets.
        let fwd = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, For=\"[2001:db8::7]:4711\"",
            ),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(l.client(ip("10.0.0.1"), &fwd), ip("2001:db8::7"));
        // An unknown hop stops the walk at the last known one.
        let unknown = headers(&[("forwarded", "for=192.0.2.60, for=unknown")]);
        assert_eq!(l.client(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
        let port = headers(&[("x-forwarded-for", "192.0.2.61:5555")]);
        assert_eq!(l.client(ip("10.0.0.1"), &port), ip("192.0.2.61"));
        // No proxies trusted: always the peer.
        assert_eq!(limits(&[]).client(ip("10.0.0.1"), &xff), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(counted_as(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(counted_as(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let l = Arc::new(Limits::new(
            &HttpConfig::default()
                .max_connections_per_addr(1)
                .trusted_proxies(vec![]),
        ));
        let _one = l.open(ip("2001:db8::1")).unwrap();
        assert!(l.open(ip("2001:db8::2")).is_err(), "the same /64");
        assert!(l.open(ip("2001:db8:0:1::1")).is_ok(), "another /64");
    }

    #[tokio::test(start_paused = true)]
    async fn rates_refill() {
        let r = Rate::new(3, Duration::from_secs(1), "a second", "publishes").unwrap();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            r.take(a).unwrap();
        }
        let wait = r.take(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        r.take(b).expect("another address has its own bucket");
        tokio::time::advance(Duration::from_millis(334)).await;
        r.take(a).expect("one more after a third of a second");
        assert!(r.take(a).is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..3 {
            r.take(a).unwrap();
        }
    }

    #[test]
    fn connections_per_address() {
        let l = Arc::new(Limits::new(
            &HttpConfig::default()
                .max_connections_per_addr(2)
                .trusted_proxies(vec!["10.0.0.1".into()]),
        ));
        let a = ip("192.0.2.1");
        let one = l.open(a).unwrap();
        let _two = l.open(a).unwrap();
        let e = l.open(a).err().expect("a third is refused");
        assert_eq!(e.message(), "too many connections from one address (max 2)");
        assert!(l.open(ip("192.0.2.2")).unwrap().is_some());
        drop(one);
        assert!(l.open(a).is_ok(), "room again");
        // A trusted proxy is not counted.
        for _ in 0..5 {
            assert!(l.open(ip("10.0.0.1")).unwrap().is_none());
        }
    }
}
