//! tandem behind proxies, checked on the wire.
//!
//! tandem runs in the test's runtime; clients are raw TCP sockets that write
//! HTTP by hand, parse heads with `httparse`, undo the framing themselves and
//! read events with `tandem::__private::wire`. Between them sits one of the proxies of
//! `proxies.rs`:
//!
//! * squid (a forward proxy) and nginx (a reverse proxy, with its defaults
//!   and with the recommended settings): every stream delivers each event
//!   within 1 second of its publish, and long-poll and JSONP work.
//! * an HTTP/1.0 proxy: the same, with close-delimited bodies.
//! * a proxy that buffers 16 KiB: streams deliver nothing promptly (the
//!   reason the browser client falls back), long-poll works.
//! * a proxy that cuts idle connections, and squid with a short
//!   `read_timeout`: heartbeats keep a quiet stream open on its first
//!   connection; without them the stream is cut (the control).
//!
//! The only timing assertions are the "within 1 second of publishing" bounds,
//! which are behaviour: a buffering path fails them. Every other wait is
//! bounded by [`IO`] so that a failure is a message, never a hang.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kit::{config, AnyParser, Conn, Events, Framing, Head, Req, Response, Server};
use tandem::__private::wire;
use tandem::Transport;
use tokio::time::Instant;

use crate::proxies::{
    BufferingProxy, Http10Proxy, IdleCutProxy, Nginx, NginxConfig, Squid, BUFFER_BYTES,
};

/// The bound on every wait that is not a delivery check.
const IO: Duration = kit::IO_TIMEOUT;

/// The bound: an event reaches every subscriber this soon after its
/// publish starts, through any proxy that streams.
const PROMPT: Duration = Duration::from_secs(1);

/// tandem with the kit's test settings (real 2 KiB padding, a heartbeat
/// long enough to stay out of the way) and this heartbeat.
async fn with_heartbeat(heartbeat: Duration) -> Server {
    Server::start(config().heartbeat(heartbeat)).await
}

/// A channel name no other test uses.
fn channel(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{label}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Requests along a route (the kit's raw HTTP/1 client)

/// How requests reach tandem.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// Straight to this address (tandem itself, or a reverse proxy in front
    /// of it): origin-form targets, `Host` is the address.
    To(SocketAddr),
    /// Through a forward proxy: absolute-form targets naming tandem.
    Via {
        proxy: SocketAddr,
        origin: SocketAddr,
    },
}

impl Route {
    fn connect_to(self) -> SocketAddr {
        match self {
            Route::To(a) => a,
            Route::Via { proxy, .. } => proxy,
        }
    }

    fn host(self) -> SocketAddr {
        match self {
            Route::To(a) => a,
            Route::Via { origin, .. } => origin,
        }
    }

    /// A request, `Connection: close` so each request has its own
    /// connection and the body's end is never in doubt.
    fn request(self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Req {
        let target = match self {
            Route::To(_) => path.to_string(),
            Route::Via { origin, .. } => format!("http://{origin}{path}"),
        };
        let mut req = Req::new(method, &target)
            .header("Host", &self.host().to_string())
            .header("Connection", "close");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if method == "POST" {
            req = req.body(body);
        }
        req
    }

    /// Connects along the route and sends `req`.
    async fn send(self, req: &Req) -> Conn {
        let mut conn = Conn::connect(self.connect_to()).await;
        conn.send(&req.to_bytes()).await;
        conn
    }
}

/// One request, its head and its whole body.
async fn fetch(route: Route, req: &Req) -> (Head, Vec<u8>) {
    let mut conn = route.send(req).await;
    let r = conn.response_by(&req.method, Instant::now() + IO).await;
    (r.head, r.body)
}

/// Publishes text to `channel` along `route`; returns the event's id.
async fn publish(route: Route, channel: &str, data: &str) -> u64 {
    let req = route.request(
        "POST",
        &format!("/ch/{channel}"),
        &[("Content-Type", "text/plain; charset=utf-8")],
        data.as_bytes(),
    );
    let (head, body) = fetch(route, &req).await;
    assert_eq!(
        head.status,
        202,
        "publish through {route:?}: {}{}",
        head.raw,
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("publish answers JSON");
    v["id"].as_u64().expect("publish answers an id")
}

// ---------------------------------------------------------------------------
// Streams

/// The streamed transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sse,
    Multipart,
    Mixed,
    Iframe,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Sse, Kind::Multipart, Kind::Mixed, Kind::Iframe];

    fn path(self, channel: &str) -> String {
        match self {
            Kind::Sse => format!("/ch/{channel}/sse"),
            Kind::Multipart => format!("/ch/{channel}/multipart"),
            Kind::Mixed => format!("/ch/{channel}/mixed"),
            Kind::Iframe => format!("/ch/{channel}/iframe?callback=got"),
        }
    }

    fn transport(self) -> Transport {
        match self {
            Kind::Sse => Transport::Sse,
            Kind::Multipart => Transport::Multipart,
            Kind::Mixed => Transport::Mixed,
            Kind::Iframe => Transport::Iframe,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Sse => "text/event-stream",
            Kind::Multipart => "multipart/x-mixed-replace",
            Kind::Mixed => "multipart/mixed",
            Kind::Iframe => "text/html",
        }
    }

    /// The bytes of one heartbeat on this transport.
    fn heartbeat(self) -> &'static [u8] {
        match self {
            Kind::Sse => b":hb\n",
            Kind::Multipart | Kind::Mixed => b"X-Heartbeat: 1\r\n",
            Kind::Iframe => b"<!-- hb -->",
        }
    }
}

/// An open stream of one kind: the kit's [`Events`] (head, body, parser,
/// events read but not taken, reads by a deadline) and what it is.
struct Stream {
    kind: Kind,
    events: Events<AnyParser>,
}

impl Deref for Stream {
    type Target = Events<AnyParser>;
    fn deref(&self) -> &Events<AnyParser> {
        &self.events
    }
}

impl DerefMut for Stream {
    fn deref_mut(&mut self) -> &mut Events<AnyParser> {
        &mut self.events
    }
}

impl Stream {
    /// Opens a `kind` stream on `channel` along `route` and reads its head.
    async fn open(route: Route, kind: Kind, channel: &str) -> Stream {
        let req = route.request("GET", &kind.path(channel), &[], b"");
        let mut conn = route.send(&req).await;
        let head = conn.read_head().await;
        assert_eq!(
            head.status, 200,
            "{kind:?} through {route:?}:\n{}",
            head.raw
        );
        let ct = head.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with(kind.content_type()),
            "{kind:?} through {route:?}: content type {ct:?}"
        );
        assert!(
            head.header("cache-control")
                .is_some_and(|v| v.contains("no-store")),
            "{kind:?} through {route:?}: Cache-Control lost:\n{}",
            head.raw
        );
        let body = conn.into_body(&head, "GET");
        let parser = AnyParser::for_head(&head, "got");
        Stream {
            kind,
            events: Events::new(head, body, parser),
        }
    }

    /// Reads until the stream ends; Err if it is still open at `deadline`.
    async fn end_by(&mut self, deadline: Instant) -> Result<(), String> {
        match self.hold_until(deadline).await {
            Ok(()) => Err("the stream is still open".into()),
            Err(_) => Ok(()),
        }
    }

    fn heartbeats(&self) -> usize {
        kit::count(self.body.raw(), self.kind.heartbeat())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body.raw()).into_owned()
    }
}

/// Opens one stream of every kind on `channel` along `route`, and waits
/// until tandem counts each as a subscriber.
async fn open_all(tandem: &Server, route: Route, channel: &str) -> Vec<Stream> {
    let mut streams = Vec::new();
    for kind in Kind::ALL {
        streams.push(Stream::open(route, kind, channel).await);
        tandem.wait_subscribers(channel, kind.transport(), 1).await;
    }
    streams
}

/// Publishes `n` events along `publish` and checks that each reaches every
/// stream within [`PROMPT`] of the start of its publish.
async fn expect_prompt_delivery(streams: &mut [Stream], publish: Route, channel: &str, n: usize) {
    for i in 1..=n {
        let data = format!("event {i} on {channel}");
        let start = Instant::now();
        let id = self::publish(publish, channel, &data).await;
        let deadline = start + PROMPT;
        for s in streams.iter_mut() {
            let e = s.event_by(deadline).await.unwrap_or_else(|why| {
                panic!(
                    "{:?}: event {id} not delivered within {PROMPT:?} of its publish ({why}); \
                     head:\n{}body so far: {:?}",
                    s.kind,
                    s.head.raw,
                    s.body_text()
                )
            });
            assert_eq!(e.id, Some(id), "{:?}: {e:?}", s.kind);
            assert_eq!(e.data, data.as_bytes(), "{:?}", s.kind);
        }
    }
}

// ---------------------------------------------------------------------------
// Long-poll and JSONP

/// Long-poll and JSONP along `route`: a held poll answers within
/// [`PROMPT`] of a publish, buffered events come at once, `next` resumes
/// without loss, an empty hold times out cleanly. Returns the heads seen.
async fn expect_long_poll_and_jsonp(tandem: &Server, route: Route, label: &str) -> Vec<Head> {
    let ch = channel(label);
    let mut heads = Vec::new();
    let get = |path: String| route.request("GET", &path, &[], b"");

    // A held poll, answered by a publish.
    let mut held = route
        .send(&get(format!("/ch/{ch}/poll?since=0&timeout=10")))
        .await;
    tandem.wait_subscribers(&ch, Transport::Poll, 1).await;
    let start = Instant::now();
    let id1 = publish(route, &ch, "first").await;
    let Response { head, body } = held.response_by("GET", start + PROMPT).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    let (events, next) = wire::parse_poll(&body).expect("a poll answer");
    assert_eq!(events.len(), 1, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        (events[0].id, events[0].data.as_slice()),
        (Some(id1), &b"first"[..])
    );
    assert_eq!(next, tandem.cursor(&ch, id1));
    heads.push(head);

    // Buffered events come at once, in order, from `next`.
    let id2 = publish(route, &ch, "second").await;
    let id3 = publish(route, &ch, "third").await;
    let (head, body) = fetch(route, &get(format!("/ch/{ch}/poll?since={next}"))).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    let (events, next) = wire::parse_poll(&body).expect("a poll answer");
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![Some(id2), Some(id3)]);
    assert_eq!(next, tandem.cursor(&ch, id3));
    heads.push(head);

    // JSONP: everything since 0, wrapped in the callback.
    let (head, body) = fetch(route, &get(format!("/ch/{ch}/jsonp?callback=got&since=0"))).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    assert!(head
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/javascript")));
    let (callback, events, jnext) = wire::parse_jsonp(&body).expect("a JSONP answer");
    assert_eq!(callback, "got");
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![Some(id1), Some(id2), Some(id3)]);
    assert_eq!(jnext, tandem.cursor(&ch, id3));
    heads.push(head);

    // A held JSONP, answered by a publish.
    let mut held = route
        .send(&get(format!(
            "/ch/{ch}/jsonp?callback=got&since={next}&timeout=10"
        )))
        .await;
    tandem.wait_subscribers(&ch, Transport::Jsonp, 1).await;
    let start = Instant::now();
    let id4 = publish(route, &ch, "fourth").await;
    let Response { head, body } = held.response_by("GET", start + PROMPT).await;
    let (_, events, next) = wire::parse_jsonp(&body).expect("a JSONP answer");
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![Some(id4)]
    );
    assert_eq!(next, tandem.cursor(&ch, id4));
    heads.push(head);

    // Nothing new: the hold times out with an empty answer and the same next.
    let (head, body) = fetch(
        route,
        &get(format!("/ch/{ch}/poll?since={next}&timeout=0.2")),
    )
    .await;
    let (events, again) = wire::parse_poll(&body).expect("a poll answer");
    assert!(events.is_empty(), "{}", String::from_utf8_lossy(&body));
    assert_eq!(again, next);
    heads.push(head);
    heads
}

// ---------------------------------------------------------------------------
// squid

#[tokio::test]
async fn squid_forward_proxy_streams_deliver_within_a_second() {
    let tandem = Server::start(config()).await;
    let squid = Squid::start();
    let route = Route::Via {
        proxy: squid.addr(),
        origin: tandem.addr,
    };
    let ch = channel("squid-streams");
    let mut streams = open_all(&tandem, route, &ch).await;
    for s in &streams {
        assert!(
            s.head.header("via").is_some_and(|v| v.contains("squid")),
            "the answer did not come through squid:\n{}",
            s.head.raw
        );
    }
    expect_prompt_delivery(&mut streams, route, &ch, 3).await;
}

#[tokio::test]
async fn squid_forward_proxy_long_poll_and_jsonp() {
    let tandem = Server::start(config()).await;
    let squid = Squid::start();
    let route = Route::Via {
        proxy: squid.addr(),
        origin: tandem.addr,
    };
    let heads = expect_long_poll_and_jsonp(&tandem, route, "squid-poll").await;
    for h in heads {
        assert!(
            h.header("via").is_some_and(|v| v.contains("squid")),
            "{}",
            h.raw
        );
        // Nothing was cached on the way.
        assert!(
            !h.header("x-cache").is_some_and(|v| v.contains("HIT")),
            "{}",
            h.raw
        );
    }
}

/// Squid gives up on a server that sends nothing for `read_timeout`. With a
/// heartbeat well below it, a quiet stream stays open and delivers on its
/// first connection; with a heartbeat above it, squid cuts the stream.
#[tokio::test]
async fn squid_read_timeout_heartbeats_keep_a_quiet_proxy_stream_open() {
    let squid = Squid::start_with_read_timeout(Duration::from_secs(3));
    let tandem = with_heartbeat(Duration::from_secs(1)).await;
    let route = Route::Via {
        proxy: squid.addr(),
        origin: tandem.addr,
    };
    let ch = channel("squid-idle");
    let mut streams = open_all(&tandem, route, &ch).await;
    let quiet_until = Instant::now() + Duration::from_secs(10);
    for s in &mut streams {
        s.hold_until(quiet_until).await.unwrap_or_else(|why| {
            panic!(
                "{:?}: squid cut the heartbeating stream ({why}); cache.log:\n{}",
                s.kind,
                squid.cache_log()
            )
        });
        assert!(s.heartbeats() >= 5, "{:?}: {:?}", s.kind, s.body_text());
    }
    expect_prompt_delivery(&mut streams, Route::To(tandem.addr), &ch, 1).await;

    // The control: a heartbeat longer than squid's read_timeout.
    let quiet = with_heartbeat(Duration::from_secs(30)).await;
    let route = Route::Via {
        proxy: squid.addr(),
        origin: quiet.addr,
    };
    let ch = channel("squid-idle-control");
    let mut s = Stream::open(route, Kind::Sse, &ch).await;
    s.end_by(Instant::now() + Duration::from_secs(10))
        .await
        .expect("squid should cut a stream quiet for longer than its read_timeout");
    assert_eq!(s.heartbeats(), 0);
}

// ---------------------------------------------------------------------------
// nginx

async fn nginx_streams(config: NginxConfig) {
    let tandem = Server::start(self::config()).await;
    let nginx = Nginx::start_with(tandem.port(), config);
    let route = Route::To(nginx.addr());
    let ch = channel("nginx-streams");
    let mut streams = open_all(&tandem, route, &ch).await;
    for s in &streams {
        assert!(
            s.head.header("server").is_some_and(|v| v.contains("nginx")),
            "the answer did not come through nginx:\n{}",
            s.head.raw
        );
        // nginx acted on the header and kept it to itself.
        assert!(
            s.head.header("x-accel-buffering").is_none(),
            "{}",
            s.head.raw
        );
    }
    expect_prompt_delivery(&mut streams, route, &ch, 3).await;
}

/// nginx buffers upstream responses by default; tandem's
/// `X-Accel-Buffering: no` turns that off per response, so streams deliver
/// at once through an nginx configured with nothing but `proxy_pass` (which
/// also means HTTP/1.0 to tandem, so close-delimited bodies).
#[tokio::test]
async fn nginx_default_buffering_proxy_streams_deliver_within_a_second() {
    nginx_streams(NginxConfig::Defaults).await;
}

#[tokio::test]
async fn nginx_recommended_proxy_streams_deliver_within_a_second() {
    nginx_streams(NginxConfig::Http11).await;
}

/// The control for the two above: the same nginx told to ignore
/// `X-Accel-Buffering` holds a stream's events back. It shows the header is
/// what gets streams through nginx's default buffering.
#[tokio::test]
async fn nginx_ignoring_x_accel_buffering_proxy_holds_streams_back() {
    let tandem = Server::start(config()).await;
    let nginx = Nginx::start_with(tandem.port(), NginxConfig::DefaultsIgnoringAccelBuffering);
    let route = Route::To(nginx.addr());
    let ch = channel("nginx-buffered");
    // Buffering nginx holds even the head back, so read raw bytes.
    let mut http = route
        .send(&route.request("GET", &Kind::Sse.path(&ch), &[], b""))
        .await;
    tandem.wait_subscribers(&ch, Transport::Sse, 1).await;
    let start = Instant::now();
    publish(Route::To(tandem.addr), &ch, "held back").await;
    while let Some(n) = http.fill_by(start + PROMPT).await {
        if n == 0 {
            break;
        }
    }
    assert!(
        !String::from_utf8_lossy(http.buffered()).contains("held back"),
        "nginx ignoring X-Accel-Buffering still streamed: {:?}",
        String::from_utf8_lossy(http.buffered())
    );
}

async fn nginx_long_poll(config: NginxConfig) {
    let tandem = Server::start(self::config()).await;
    let nginx = Nginx::start_with(tandem.port(), config);
    let heads = expect_long_poll_and_jsonp(&tandem, Route::To(nginx.addr()), "nginx-poll").await;
    for h in heads {
        assert!(
            h.header("server").is_some_and(|v| v.contains("nginx")),
            "{}",
            h.raw
        );
    }
}

#[tokio::test]
async fn nginx_default_proxy_long_poll_and_jsonp() {
    nginx_long_poll(NginxConfig::Defaults).await;
}

#[tokio::test]
async fn nginx_recommended_proxy_long_poll_and_jsonp() {
    nginx_long_poll(NginxConfig::Http11).await;
}

/// A browser publishing from a page served through nginx sends
/// `Origin: http://<nginx>`. tandem recognises its own origin by comparing
/// with `Host`, so nginx must pass the browser's Host on
/// (`proxy_set_header Host $http_host`, as nginx-http11.conf does); nginx's
/// default sends the upstream's address and the publish is refused.
#[tokio::test]
async fn nginx_proxy_same_origin_publish_needs_the_host_header() {
    let tandem = Server::start(config()).await;
    for (config, status) in [(NginxConfig::Http11, 202), (NginxConfig::Defaults, 403)] {
        let nginx = Nginx::start_with(tandem.port(), config);
        let route = Route::To(nginx.addr());
        let origin = nginx.url();
        let req = route.request(
            "POST",
            &format!("/ch/{}", channel("nginx-origin")),
            &[("Origin", origin.as_str()), ("Content-Type", "text/plain")],
            b"from the page",
        );
        let (head, body) = fetch(route, &req).await;
        assert_eq!(
            head.status,
            status,
            "{config:?}: {}{}",
            head.raw,
            String::from_utf8_lossy(&body)
        );
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.0

#[tokio::test]
async fn http10_proxy_streams_are_close_delimited_and_deliver_within_a_second() {
    let tandem = Server::start(config()).await;
    let proxy = Http10Proxy::start(tandem.addr);
    let route = Route::To(proxy.addr());
    let ch = channel("http10-streams");
    let mut streams = open_all(&tandem, route, &ch).await;
    for s in &streams {
        assert_eq!(s.head.version, 0, "{}", s.head.raw);
        assert!(
            !s.head.is_chunked() && s.head.header("content-length").is_none(),
            "an HTTP/1.0 stream must be close-delimited:\n{}",
            s.head.raw
        );
        assert_eq!(s.body.framing(), Framing::Close);
    }
    expect_prompt_delivery(&mut streams, route, &ch, 3).await;
}

#[tokio::test]
async fn http10_proxy_long_poll_and_jsonp() {
    let tandem = Server::start(config()).await;
    let proxy = Http10Proxy::start(tandem.addr);
    let heads = expect_long_poll_and_jsonp(&tandem, Route::To(proxy.addr()), "http10-poll").await;
    for h in heads {
        assert_eq!(h.version, 0, "{}", h.raw);
        assert!(!h.is_chunked(), "{}", h.raw);
    }
}

// ---------------------------------------------------------------------------
// A buffering proxy

/// Through a proxy that buffers 16 KiB, a stream delivers nothing promptly:
/// this is what the browser client has to detect and fall back from. The
/// events are not lost, only held: once enough bytes pile up they all come.
#[tokio::test]
async fn buffering_proxy_holds_streams_back() {
    let tandem = Server::start(config()).await;
    let proxy = BufferingProxy::start(tandem.addr);
    let route = Route::To(proxy.addr());
    let ch = channel("buffered-streams");
    let mut streams = open_all(&tandem, route, &ch).await;
    let start = Instant::now();
    let first = publish(route, &ch, "held back").await;
    for s in &mut streams {
        if let Ok(e) = s.event_by(start + PROMPT).await {
            panic!("{:?}: the buffering proxy passed {e:?} at once", s.kind);
        }
    }
    // Enough to fill the buffer of every stream: then everything arrives.
    let chunk = "x".repeat(1024);
    let more = BUFFER_BYTES / chunk.len() + 2;
    let mut last = first;
    for _ in 0..more {
        last = publish(Route::To(tandem.addr), &ch, &chunk).await;
    }
    for s in &mut streams {
        let deadline = Instant::now() + IO;
        let e = s.event_by(deadline).await.unwrap_or_else(|why| {
            panic!("{:?}: nothing came once the buffer filled ({why})", s.kind)
        });
        assert_eq!(e.id, Some(first), "{:?}", s.kind);
        // Later ones came with it, in order, none lost.
        let mut next = first + 1;
        while let Some(e) = s.pending.pop_front() {
            assert_eq!(e.id, Some(next), "{:?}", s.kind);
            next += 1;
        }
        assert!(next - 1 <= last, "{:?}", s.kind);
    }
}

#[tokio::test]
async fn buffering_proxy_long_poll_and_jsonp_still_work() {
    let tandem = Server::start(config()).await;
    let proxy = BufferingProxy::start(tandem.addr);
    expect_long_poll_and_jsonp(&tandem, Route::To(proxy.addr()), "buffered-poll").await;
}

// ---------------------------------------------------------------------------
// A proxy that cuts idle connections

/// The real-world numbers are a 30 s idle cut and tandem's 15 s heartbeat;
/// scaled down: a 3 s cut, a 1 s heartbeat, 10 s without an event. Every
/// stream stays open on its first connection (the proxy accepted exactly one
/// per stream and cut none), and the next event arrives on it.
#[tokio::test]
async fn idle_cut_proxy_heartbeats_keep_quiet_streams_open() {
    let tandem = with_heartbeat(Duration::from_secs(1)).await;
    let proxy = IdleCutProxy::start(tandem.addr, Duration::from_secs(3));
    let route = Route::To(proxy.addr());
    let ch = channel("idle-heartbeat");
    let mut streams = open_all(&tandem, route, &ch).await;
    let quiet_until = Instant::now() + Duration::from_secs(10);
    for s in &mut streams {
        s.hold_until(quiet_until)
            .await
            .unwrap_or_else(|why| panic!("{:?}: {why} while quiet", s.kind));
        assert!(s.heartbeats() >= 5, "{:?}: {:?}", s.kind, s.body_text());
    }
    // Publish straight to tandem: only the streams go through the proxy.
    expect_prompt_delivery(&mut streams, Route::To(tandem.addr), &ch, 1).await;
    assert_eq!(proxy.accepted(), Kind::ALL.len(), "a stream reconnected");
    assert_eq!(proxy.cut(), 0);
}

/// The control: with the heartbeat longer than the proxy's idle limit, the
/// proxy cuts the stream.
#[tokio::test]
async fn idle_cut_proxy_cuts_streams_without_heartbeats() {
    let tandem = with_heartbeat(Duration::from_secs(30)).await;
    let proxy = IdleCutProxy::start(tandem.addr, Duration::from_secs(3));
    let route = Route::To(proxy.addr());
    let ch = channel("idle-control");
    let mut streams = open_all(&tandem, route, &ch).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &mut streams {
        s.end_by(deadline)
            .await
            .unwrap_or_else(|why| panic!("{:?}: {why}", s.kind));
        assert_eq!(s.heartbeats(), 0, "{:?}", s.kind);
    }
    assert_eq!(proxy.accepted(), Kind::ALL.len());
    assert_eq!(proxy.cut(), Kind::ALL.len());
}
