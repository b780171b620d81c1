//! `tandem::client` against a real server: every transport, resume across a
//! cut connection, a silent one and a server restart, gaps and resets,
//! publish, refusals, https with a CA file; and `tandem sub` / `tandem pub`
//! on the command line.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tandem::client::{Client, Cursor, Delivery, Event, Gap, Subscription, Transport};
use tandem::{Hub, NewEvent, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use kit::*;

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A client that retries at once (tests cut connections on purpose).
fn client() -> Client {
    Client::new()
        .with_retry_delay(Duration::from_millis(10), Duration::from_millis(100))
        .with_poll_timeout(Duration::from_secs(5))
}

async fn next(sub: &mut Subscription) -> Delivery {
    within("a delivery", sub.next())
        .await
        .expect("the subscription ended")
        .unwrap_or_else(|e| panic!("the subscription failed: {e}"))
}

async fn next_event(sub: &mut Subscription) -> Event {
    match next(sub).await {
        Delivery::Event(e) => e,
        Delivery::Gap(g) => panic!("a gap instead of an event: {g:?}"),
    }
}

async fn next_gap(sub: &mut Subscription) -> Gap {
    match next(sub).await {
        Delivery::Gap(g) => g,
        Delivery::Event(e) => panic!("an event instead of a gap: {e:?}"),
    }
}

/// Takes `n` events and checks they are `e{from}`, `e{from+1}`... in order.
async fn expect_texts(sub: &mut Subscription, from: u64, n: u64) {
    for id in from..from + n {
        let e = next_event(sub).await;
        assert_eq!(
            (e.id, e.text()),
            (id, Some(format!("e{id}").as_str())),
            "on {}",
            sub.transport()
        );
    }
}

async fn publish_texts(c: &Client, url: &str, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        let got = within(
            "publish",
            c.publish(url, NewEvent::message(format!("e{id}"))),
        )
        .await;
        assert_eq!(got.expect("publish"), id);
    }
}

#[tokio::test]
async fn every_transport_delivers_every_event_in_order() {
    let srv = Server::with_defaults().await;
    let c = client();
    for t in Transport::ALL {
        let ch = url(srv.addr, &format!("/ch/all-{t}"));
        publish_texts(&c, &ch, 1..=2).await;
        let mut sub = c.subscribe(&format!("{ch}/{t}?since=0")).await.unwrap();
        assert_eq!(sub.transport(), t);
        expect_texts(&mut sub, 1, 2).await;
        publish_texts(&c, &ch, 3..=4).await;
        expect_texts(&mut sub, 3, 2).await;
        // Not text: base64 on the text transports, raw on multipart.
        let mut binary = NewEvent::message(vec![0u8, 159, 146, 150, 10, 13]).with_kind("blob");
        binary.content_type = Some("application/octet-stream".into());
        assert_eq!(c.publish(&ch, binary).await.unwrap(), 5);
        let e = next_event(&mut sub).await;
        assert_eq!((e.id, e.kind.as_str()), (5, "blob"), "on {t}");
        assert_eq!(&e.data[..], &[0u8, 159, 146, 150, 10, 13], "on {t}");
        // Every event of one incarnation carries its epoch (where the server
        // sends one), and the cursor is the last event's.
        assert_eq!(sub.cursor(), Some(e.cursor()), "on {t}");
        assert_eq!(e.cursor().id, 5);
    }
}

#[tokio::test]
async fn without_a_cursor_it_starts_at_the_newest_event() {
    let srv = Server::with_defaults().await;
    let c = client();
    for t in [Transport::Sse, Transport::Poll] {
        let ch = url(srv.addr, &format!("/ch/new-{t}"));
        publish_texts(&c, &ch, 1..=3).await;
        let mut sub = c.subscribe(&ch).transport(t).await.unwrap();
        assert_eq!(sub.cursor().map(|c| c.id), Some(3));
        // Published before the subscription ever polled: delivered, since
        // the await fixed where it starts.
        publish_texts(&c, &ch, 4..=4).await;
        expect_texts(&mut sub, 4, 1).await;
    }
}

#[tokio::test]
async fn backlog_in_the_url_replays_the_last_events() {
    let srv = Server::with_defaults().await;
    let c = client();
    let ch = url(srv.addr, "/ch/backlog");
    publish_texts(&c, &ch, 1..=5).await;
    for t in ["sse", "poll"] {
        let mut sub = c.subscribe(&format!("{ch}/{t}?backlog=2")).await.unwrap();
        expect_texts(&mut sub, 4, 2).await;
    }
}

/// A TCP relay in front of a server whose connections the test can cut,
/// or make go silent, while new ones get through.
struct Relay {
    addr: SocketAddr,
    pipes: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<AtomicUsize>,
    /// Connections numbered below this forward nothing more.
    silent_below: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let silent_below = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (pipes, accepted, silent_below) =
                (pipes.clone(), accepted.clone(), silent_below.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let silent_below = silent_below.clone();
                    pipes.lock().push(tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(to).await else {
                            return;
                        };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = async {
                            let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        };
                        let down = async {
                            let mut buf = vec![0u8; 16 * 1024];
                            while let Ok(k) = sr.read(&mut buf).await {
                                if k == 0 {
                                    break;
                                }
                                if n < silent_below.load(Ordering::SeqCst) {
                                    // Keep both sockets open and say nothing.
                                    std::future::pending::<()>().await;
                                }
                                if cw.write_all(&buf[..k]).await.is_err() {
                                    break;
                                }
                            }
                            let _ = cw.shutdown().await;
                        };
                        tokio::join!(up, down);
                    }));
                }
            }
        });
        Relay {
            addr,
            pipes,
            accepted,
            silent_below,
            task,
        }
    }

    /// Drops every open connection at once.
    fn cut(&self) {
        for p in self.pipes.lock().drain(..) {
            p.abort();
        }
    }

    /// Open connections stop forwarding (but stay open); new ones work.
    fn silence(&self) {
        self.silent_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

#[tokio::test]
async fn a_cut_connection_resumes_with_no_loss_and_no_duplicate() {
    let srv = Server::with_defaults().await;
    let relay = Relay::start(srv.addr).await;
    let c = client();
    for t in Transport::ALL {
        let direct = url(srv.addr, &format!("/ch/cut-{t}"));
        let mut sub = c
            .subscribe(&url(relay.addr, &format!("/ch/cut-{t}/{t}")))
            .await
            .unwrap();
        publish_texts(&c, &direct, 1..=3).await;
        expect_texts(&mut sub, 1, 3).await;
        relay.cut();
        publish_texts(&c, &direct, 4..=6).await;
        expect_texts(&mut sub, 4, 3).await;
        relay.cut();
        publish_texts(&c, &direct, 7..=7).await;
        expect_texts(&mut sub, 7, 1).await;
    }
}

#[tokio::test]
async fn a_silent_stream_is_taken_for_dead_and_resumed() {
    let srv = Server::with_defaults().await;
    let relay = Relay::start(srv.addr).await;
    let direct = url(srv.addr, "/ch/silent");
    for t in [Transport::Sse, Transport::Multipart] {
        // A client of its own: the last one's idle keep-alive connection
        // through the relay went silent too.
        let c = client().with_idle_timeout(Duration::from_millis(300));
        let mut sub = c
            .subscribe(&url(relay.addr, "/ch/silent"))
            .transport(t)
            .await
            .unwrap();
        let base = srv.hub.info("silent").last_id;
        publish_texts(&c, &direct, base + 1..=base + 1).await;
        expect_texts(&mut sub, base + 1, 1).await;
        relay.silence();
        publish_texts(&c, &direct, base + 2..=base + 3).await;
        expect_texts(&mut sub, base + 2, 2).await;
    }
}

/// `tandem::serve` on `listener` for `hub`, stopped by the sender.
fn serve(
    listener: TcpListener,
    hub: Hub,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let serve = tandem::serve(listener, Service::new(hub)).with_graceful_shutdown(async {
        let _ = rx.await;
    });
    let task = tokio::spawn(serve.into_future());
    (tx, task)
}

#[tokio::test]
async fn a_server_restart_on_the_same_port_resumes_with_no_loss() {
    let hub = Hub::new(config().core).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, task) = serve(listener, hub.clone());
    let c = client();
    let ch = url(addr, "/ch/restart");
    let mut sub = c.subscribe(&format!("{ch}/sse?since=0")).await.unwrap();
    publish_texts(&c, &ch, 1..=2).await;
    expect_texts(&mut sub, 1, 2).await;

    stop.send(()).unwrap();
    within("shutdown", task).await.unwrap().unwrap();
    for i in 3..=4 {
        hub.publish("restart", NewEvent::message(format!("e{i}")))
            .await
            .unwrap();
    }
    let listener = TcpListener::bind(addr).await.expect("the same port again");
    let (_stop, _task) = serve(listener, hub.clone());
    expect_texts(&mut sub, 3, 2).await;
    publish_texts(&c, &ch, 5..=5).await;
    expect_texts(&mut sub, 5, 1).await;
}

/// A new server (a new hub: every channel a new incarnation) on the same
/// port, which published before the client came back: a reset gap, then
/// every event of the new incarnation. Without epochs in cursors the
/// client's `since=3` skips the new server's 1 to 3 without a word.
#[tokio::test]
async fn a_new_server_on_the_same_port_is_a_reset_not_a_silent_skip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, task) = serve(listener, Hub::new(config().core).unwrap());
    let c = client();
    let ch = url(addr, "/ch/renewed");
    let mut sub = c.subscribe(&format!("{ch}/sse")).await.unwrap();
    publish_texts(&c, &ch, 1..=3).await;
    expect_texts(&mut sub, 1, 3).await;

    stop.send(()).unwrap();
    within("shutdown", task).await.unwrap().unwrap();
    let hub = Hub::new(config().core).unwrap();
    for i in 1..=5 {
        hub.publish("renewed", NewEvent::message(format!("e{i}")))
            .await
            .unwrap();
    }
    let listener = TcpListener::bind(addr).await.expect("the same port again");
    let (_stop, _task) = serve(listener, hub);
    let g = next_gap(&mut sub).await;
    assert!(g.reset, "{g:?}");
    assert_eq!((g.from, g.to), (1, 0));
    expect_texts(&mut sub, 1, 5).await;
}

#[tokio::test]
async fn a_closed_channel_comes_back_as_a_reset_and_new_ids_flow() {
    let srv = Server::with_defaults().await;
    let c = client();
    for t in [Transport::Sse, Transport::Mixed, Transport::Poll] {
        let name = format!("reset-{t}");
        let ch = url(srv.addr, &format!("/ch/{name}"));
        let mut sub = c
            .subscribe(&ch)
            .transport(t)
            .since(Cursor::bare(0))
            .await
            .unwrap();
        publish_texts(&c, &ch, 1..=3).await;
        expect_texts(&mut sub, 1, 3).await;
        let before = sub.cursor().unwrap().epoch;
        assert!(srv.hub.close(&name));
        // The new incarnation starts at 1 again: the client is told, forgets
        // that it saw 1 already, and delivers the new 1.
        publish_texts(&c, &ch, 1..=1).await;
        let g = next_gap(&mut sub).await;
        assert!(g.reset, "on {t}: {g:?}");
        assert_eq!((g.from, g.to, g.lost()), (1, 0, 0), "on {t}");
        if let (Some(old), Some(new)) = (before, g.epoch) {
            assert_ne!(old, new, "a new incarnation has a new epoch");
        }
        expect_texts(&mut sub, 1, 1).await;
        assert_eq!(sub.cursor().map(|c| (c.epoch, c.id)), Some((g.epoch, 1)));
    }
}

#[tokio::test]
async fn a_cursor_behind_the_ring_gets_a_gap_then_the_rest() {
    let srv = Server::start(config().buffer_events(4)).await;
    let c = client();
    let ch = url(srv.addr, "/ch/behind");
    publish_texts(&c, &ch, 1..=10).await;
    for t in Transport::ALL {
        let mut sub = c.subscribe(&format!("{ch}/{t}?since=2")).await.unwrap();
        let g = next_gap(&mut sub).await;
        assert_eq!(
            (g.from, g.to, g.reset, g.lost()),
            (3, 6, false, 4),
            "on {t}"
        );
        assert_eq!(sub.cursor().map(|c| c.id), Some(6), "on {t}");
        expect_texts(&mut sub, 7, 4).await;
    }
}

#[tokio::test]
async fn publish_returns_the_id_and_keeps_type_content_type_and_sender() {
    let srv = Server::with_defaults().await;
    let c = client();
    let ch = url(srv.addr, "/ch/pub");
    // The same keep-alive connection carries one publish after another.
    for i in 1..=3 {
        assert_eq!(c.publish(&ch, NewEvent::message("x")).await.unwrap(), i);
    }
    let mut e = NewEvent::message("{\"a\":1}").with_kind("doc.saved");
    e.content_type = Some("application/json".into());
    e.from = Some("ann".into());
    // A subscribe URL names the channel as well.
    assert_eq!(c.publish(&format!("{ch}/sse"), e).await.unwrap(), 4);
    let mut sub = c.subscribe(&format!("{ch}/mixed?since=3")).await.unwrap();
    let got = next_event(&mut sub).await;
    assert_eq!(got.kind, "doc.saved");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.from.as_deref(), Some("ann"));
    assert_eq!(got.text(), Some("{\"a\":1}"));
    // Echo suppression: a subscriber with the same client id skips its own.
    let mut own = c
        .subscribe(&format!("{ch}/sse?since=4&client=ann"))
        .await
        .unwrap();
    let mut mine = NewEvent::message("mine");
    mine.from = Some("ann".into());
    c.publish(&ch, mine).await.unwrap();
    c.publish(&ch, NewEvent::message("theirs")).await.unwrap();
    assert_eq!(next_event(&mut own).await.text(), Some("theirs"));
}

#[tokio::test]
async fn refusals_surface_with_their_status_and_message() {
    let srv = Server::with_defaults().await;
    let c = client();
    let ch = url(srv.addr, "/ch/refused");
    let e = c
        .publish(&ch, NewEvent::message(vec![b'x'; 70_000]))
        .await
        .unwrap_err();
    assert!(e.is_status(), "{e:?}");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(413));
    assert_eq!(
        e.server_message(),
        Some("event too large (max 65536 bytes)")
    );
    assert_eq!(
        e.to_string(),
        "413 payload too large: event too large (max 65536 bytes)"
    );

    let e = c
        .publish(&ch, NewEvent::message("x").with_kind("no spaces"))
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");

    // Refused when it asks where to start...
    let e = c
        .subscribe(&format!("{ch}/sse?client=a%20b"))
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
    // ... or, when it had a cursor, from the stream: once, then the end.
    let mut sub = c
        .subscribe(&format!("{ch}/sse?client=a%20b&since=0"))
        .await
        .unwrap();
    let e = within("refusal", sub.next()).await.unwrap().unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
    assert!(e.to_string().starts_with("400 bad request: "), "{e}");
    assert!(within("end", sub.next()).await.is_none());

    // Nothing listening, never reached: an error at once, not a wait.
    let nobody = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = nobody.local_addr().unwrap();
    drop(nobody);
    let e = c.subscribe(&url(gone, "/ch/x/sse")).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let mut sub = c
        .subscribe(&url(gone, "/ch/x/sse"))
        .since(Cursor::bare(0))
        .await
        .unwrap();
    let e = within("connect error", sub.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to {gone}")),
        "{e}"
    );
    let e = c
        .publish(&url(gone, "/ch/x"), NewEvent::message("x"))
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // Not a channel URL: refused before anything is sent.
    let e = c.subscribe(&url(srv.addr, "/healthz")).await.unwrap_err();
    assert!(
        e.is_input() && e.to_string().contains("not a channel url"),
        "{e}"
    );
}

#[tokio::test]
async fn a_subscription_gives_up_after_its_retries() {
    let srv = Server::with_defaults().await;
    let relay = Relay::start(srv.addr).await;
    let c = client().with_retries(Some(2));
    let mut sub = c
        .subscribe(&url(relay.addr, "/ch/retries/sse?since=0"))
        .await
        .unwrap();
    publish_texts(&c, &url(srv.addr, "/ch/retries"), 1..=1).await;
    expect_texts(&mut sub, 1, 1).await;
    // The relay goes away: each attempt is refused, then the error comes.
    let addr = relay.addr;
    drop(relay);
    let e = within("giving up", sub.next()).await.unwrap().unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    assert!(within("end", sub.next()).await.is_none());
}

// --- https ----------------------------------------------------------------

/// A TLS server with a certificate of `pki`'s CA.
async fn tls_server(pki: &Pki) -> Server {
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    Server::start(config().tls(tls)).await
}

#[tokio::test]
async fn https_every_transport_delivers_and_publishes() {
    let pki = Pki::new();
    let srv = tls_server(&pki).await;
    let c = client().with_ca_file(pki.ca_file()).unwrap();
    for t in Transport::ALL {
        let ch = format!("https://{}/ch/tls-{t}", srv.addr);
        publish_texts(&c, &ch, 1..=2).await;
        let mut sub = c.subscribe(&format!("{ch}/{t}?since=0")).await.unwrap();
        expect_texts(&mut sub, 1, 2).await;
        publish_texts(&c, &ch, 3..=4).await;
        expect_texts(&mut sub, 3, 2).await;
    }
    // The name in the certificate, rather than the address, works too.
    let by_name = format!("https://localhost:{}/ch/by-name", srv.port());
    assert_eq!(
        c.publish(&by_name, NewEvent::message("x")).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn https_refusals_say_what_is_wrong() {
    let pki = Pki::new();
    let srv = tls_server(&pki).await;
    let ch = format!("https://{}/ch/refused", srv.addr);
    let handshake_failed = |e: &tandem::client::Error, why: &str| {
        assert!(e.is_connect(), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot connect to {}: TLS handshake failed: ",
                srv.addr
            )) && msg.contains(why),
            "{msg}"
        );
    };
    // Not the system's CA, nor another CA: refused, at once, never retried
    // into a wait.
    let e = client().subscribe(&ch).await.unwrap_err();
    handshake_failed(&e, "UnknownIssuer");
    let other = Pki::new();
    let c = client().with_ca_file(other.ca_file()).unwrap();
    // (The other CA has the same name: rustls finds its signature wrong.)
    let e = c.publish(&ch, NewEvent::message("x")).await.unwrap_err();
    handshake_failed(&e, "invalid peer certificate");
    let mut sub = c.subscribe(&ch).since(Cursor::bare(0)).await.unwrap();
    let e = within("refusal", sub.next()).await.unwrap().unwrap_err();
    handshake_failed(&e, "invalid peer certificate");
    assert_eq!(srv.hub.info("refused").last_id, 0, "nothing published");

    // https to a plaintext server: the handshake fails, clearly.
    let plain = Server::with_defaults().await;
    let c = client().with_ca_file(pki.ca_file()).unwrap();
    let e = c
        .publish(
            &format!("https://{}/ch/x", plain.addr),
            NewEvent::message("x"),
        )
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    // http to the TLS port: the server's own answer says to use https.
    let e = c
        .publish(&format!("http://{}/ch/x", srv.addr), NewEvent::message("x"))
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
    assert!(e.server_message().unwrap().contains("https://"), "{e}");

    // A server that takes the connection and never answers the hello: the
    // connect timeout covers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let e = client()
        .with_connect_timeout(Duration::from_millis(300))
        .publish(
            &format!("https://{silent_addr}/ch/x"),
            NewEvent::message("x"),
        )
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("connecting to {silent_addr} (TLS) timed out after 300ms")
    );
    held.abort();

    // A CA file that cannot serve: an input error when the client is made.
    for (file, why) in [
        (pki.dir.join("missing.pem"), "cannot read it"),
        (pki.key(), "no certificate in it"),
    ] {
        let e = Client::new().with_ca_file(&file).unwrap_err();
        assert!(e.is_input(), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("CA file {}: {why}", file.display())),
            "{e}"
        );
    }
}

// --- the command line -------------------------------------------------

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// Runs `tandem ARGS` with `stdin`; returns exit code, stdout, stderr.
async fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(TANDEM)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tandem");
    let mut input = child.stdin.take().unwrap();
    // A command that exits at once (a usage error) reads none of it.
    let _ = input.write_all(stdin).await;
    drop(input);
    let out = within("tandem to exit", child.wait_with_output())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_pub_prints_ids_and_sub_prints_each_event() {
    let srv = Server::with_defaults().await;
    let ch = url(srv.addr, "/ch/cli");
    let sub = tokio::spawn({
        let sse = format!("{ch}/sse");
        async move { run(&["sub", &sse, "--count", "3"], b"").await }
    });
    srv.wait_subscribers("cli", tandem::Transport::Sse, 1).await;
    assert_eq!(
        run(&["pub", &ch, "hello"], b"").await,
        (0, "1\n".into(), String::new())
    );
    assert_eq!(
        run(&["pub", &ch, "--type", "chat", "-"], b"from stdin\n").await,
        (0, "2\n".into(), String::new())
    );
    let bare = format!("{}/ch/cli", srv.addr);
    assert_eq!(run(&["pub", &bare], b"no dash").await.1, "3\n");
    let (code, out, err) = within("sub to finish", sub).await.unwrap();
    assert_eq!(
        (code, out.as_str()),
        (0, "hello\nfrom stdin\nno dash\n"),
        "{err}"
    );
}

#[tokio::test]
async fn cli_over_https_with_a_ca_file() {
    let pki = Pki::new();
    let srv = tls_server(&pki).await;
    let ch = format!("https://{}/ch/cli-tls", srv.addr);
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    assert_eq!(
        run(&["pub", &ch, "--ca", ca, "one"], b"").await,
        (0, "1\n".into(), String::new())
    );
    let sse = format!("{ch}/sse?since=0");
    let (code, out, err) = run(&["sub", &sse, "--ca", ca, "--count", "1"], b"").await;
    assert_eq!((code, out.as_str()), (0, "one\n"), "{err}");
    // Without the CA: a failure (1) that says why; a CA file that is not
    // one: a usage error (2) naming it.
    let (code, _, err) = run(&["pub", &ch, "two"], b"").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TLS handshake failed") && err.contains("UnknownIssuer"),
        "{err}"
    );
    let key = pki.key();
    let (code, _, err) = run(&["sub", &sse, "--ca", key.to_str().unwrap()], b"").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no certificate in it"), "{err}");
    assert_eq!(srv.hub.info("cli-tls").last_id, 1);
}

#[tokio::test]
async fn cli_sends_a_token_from_the_flag_or_a_file() {
    use tandem::token::{now_unix, Needs, Rights, Signer, Token, TokenPolicy};
    let signer = Signer::new(&[42u8; 32]).unwrap();
    let srv = Server::start(config().tokens(TokenPolicy {
        signer: signer.clone(),
        needs: Needs::All,
    }))
    .await;
    let token = signer.mint(&Token {
        channel: "cli-tok".into(),
        prefix: false,
        rights: Rights::parse("sub,pub").unwrap(),
        expires: now_unix() + 60,
        client: None,
    });
    let ch = url(srv.addr, "/ch/cli-tok");
    assert_eq!(
        run(&["pub", &ch, "--token", &token, "one"], b"").await,
        (0, "1\n".into(), String::new())
    );
    let dir = std::env::temp_dir().join(format!("tandem-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let file = file.to_str().unwrap();
    let sse = format!("{ch}/sse?since=0");
    let (code, out, err) = run(&["sub", &sse, "--token-file", file, "--count", "1"], b"").await;
    assert_eq!((code, out.as_str()), (0, "one\n"), "{err}");
    // No token: the server's refusal, exit 1; a missing file: usage, exit 2.
    let (code, _, err) = run(&["pub", &ch, "two"], b"").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("401") && err.contains("token required"),
        "{err}"
    );
    let missing = dir.join("missing");
    let (code, _, err) = run(
        &["pub", &ch, "--token-file", missing.to_str().unwrap(), "x"],
        b"",
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the token file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(srv.hub.info("cli-tok").last_id, 1);
}

#[tokio::test]
async fn cli_sub_json_shows_ids_types_and_gaps() {
    let srv = Server::start(config().buffer_events(2)).await;
    let ch = url(srv.addr, "/ch/json");
    for i in 1..=4 {
        let kind = if i == 4 { "chat" } else { "message" };
        srv.hub
            .publish("json", NewEvent::message(format!("e{i}")).with_kind(kind))
            .await
            .unwrap();
    }
    for t in ["sse", "poll", "multipart"] {
        let (code, out, err) = run(
            &[
                "sub",
                &ch,
                "--transport",
                t,
                "--since",
                "0",
                "--format",
                "json",
                "--count",
                "2",
            ],
            b"",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "on {t}: {out}");
        let gap = &lines[0]["gap"];
        assert_eq!(
            (&gap["from"], &gap["to"], &gap["reset"]),
            (&1.into(), &2.into(), &false.into()),
            "on {t}: {out}"
        );
        // The epoch, where the server sends one, is the events' epoch.
        assert_eq!(gap["epoch"], lines[1]["epoch"], "on {t}");
        assert_eq!(lines[1]["id"], 3, "on {t}");
        assert_eq!(lines[1]["type"], "message");
        assert_eq!(lines[1]["data"], "e3");
        assert_eq!(lines[2]["id"], 4);
        assert_eq!(lines[2]["type"], "chat");
        let cursor = match lines[2]["epoch"].as_str() {
            Some(e) => format!("{e}:4"),
            None => "4".into(),
        };
        assert_eq!(lines[2]["cursor"], cursor.as_str());
    }
}

#[tokio::test]
async fn cli_exit_codes_say_usage_or_failure() {
    let srv = Server::with_defaults().await;
    let ch = url(srv.addr, "/ch/codes");
    // Usage: 2.
    for args in [
        &["sub", "not a url"][..],
        &["sub", &ch, "--transport", "websocket"],
        &["sub", &ch, "--since", "x:y"],
        &["sub", &ch, "--format", "xml"],
        &["pub"],
        &["pub", &ch, "a", "b"],
        &["no-such-command"],
    ] {
        let (code, _, err) = run(args, b"").await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?} says why");
    }
    // Failure: 1, with the reason on standard error.
    let big = vec![b'x'; 70_000];
    let (code, out, err) = run(&["pub", &ch, "-"], &big).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("413 payload too large: event too large"),
        "{err}"
    );
    let (code, _, err) = run(&["sub", "http://127.0.0.1:1/ch/x"], b"").await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");
}
