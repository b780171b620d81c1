//! tlsidle: the server memory of an idle SSE stream in plaintext, over TLS
//! with HTTP/1.1 and over TLS with HTTP/2 (docs/benchmarks.md, "Idle
//! streams over TLS").
//!
//! For each case it starts `tandem serve` (the binary given, the flags of
//! benches/compare.sh's idle scenario) with a certificate made here (the
//! kit's test CA), reads the server's RSS, opens the streams on one
//! channel, waits until each has its response head, lets them sit idle,
//! reads the RSS again and prints the growth per stream. Run it with a
//! release build:
//!
//! ```text
//! cargo build --release --bin tandem -p tandem-bench --bin tlsidle
//! target/release/tlsidle --tandem target/release/tandem --streams 5000
//! ```

mod tandem_process;

use std::time::Duration;

use argh::FromArgs;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::Pki;
use tandem_process::start;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server memory of idle SSE streams: plaintext, TLS HTTP/1.1, TLS h2.
#[derive(FromArgs)]
struct Args {
    /// the tandem binary
    #[argh(option)]
    tandem: String,
    /// streams per case
    #[argh(option, default = "5000")]
    streams: usize,
    /// streams per connection in the shared-connection h2 case
    #[argh(option, default = "50")]
    per_connection: usize,
    /// seconds the streams sit idle before the second reading
    #[argh(option, default = "5")]
    idle: u64,
    /// the cases to run, comma-separated: plain, h1, h2, h2many (all)
    #[argh(option, default = "String::from(\"plain,h1,h2,h2many\")")]
    cases: String,
    /// a command to run the server under (`heaptrack`, say); the RSS
    /// figures are then the wrapper's, not the server's
    #[argh(option)]
    wrap: Option<String>,
}

enum Case {
    Plain,
    TlsH1,
    /// HTTP/2, this many streams per connection.
    TlsH2(usize),
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An HTTP/1.1 SSE request; returns once the response head has arrived.
async fn h1_stream<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> S {
    io.write_all(b"GET /ch/idle/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    io
}

/// Holds whatever keeps a stream open (held, never read).
#[allow(dead_code)]
enum Held {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    H2(hyper::body::Incoming),
}

async fn open(case: &Case, pki: &Pki, port: u16, n: usize) -> Vec<Held> {
    let mut held = Vec::with_capacity(n);
    let tcp = || async move {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.set_nodelay(true).ok();
        s
    };
    let name = || rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    match case {
        Case::Plain => {
            for _ in 0..n {
                held.push(Held::Tcp(h1_stream(tcp().await).await));
            }
        }
        Case::TlsH1 => {
            let connector = pki.client(&[b"http/1.1"]);
            for _ in 0..n {
                let tls = connector
                    .connect(name(), tcp().await)
                    .await
                    .expect("handshake");
                held.push(Held::Tls(Box::new(h1_stream(tls).await)));
            }
        }
        Case::TlsH2(per) => {
            let connector = pki.client(&[b"h2"]);
            let mut left = n;
            while left > 0 {
                let tls = connector
                    .connect(name(), tcp().await)
                    .await
                    .expect("handshake");
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .expect("h2 handshake");
                tokio::spawn(conn);
                for _ in 0..(*per).min(left) {
                    let req = hyper::Request::get(format!("https://127.0.0.1:{port}/ch/idle/sse"))
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    send.ready().await.expect("ready");
                    let resp = send.send_request(req).await.expect("response");
                    assert_eq!(resp.status(), 200);
                    held.push(Held::H2(resp.into_body()));
                    left -= 1;
                }
            }
        }
    }
    held
}

fn main() {
    let args: Args = argh::from_env();
    let pki = Pki::new();
    pki.issue();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let cases = [
        ("plain", "plaintext HTTP/1.1", Case::Plain),
        ("h1", "TLS HTTP/1.1", Case::TlsH1),
        ("h2", "TLS h2, 1 stream per connection", Case::TlsH2(1)),
        (
            "h2many",
            "TLS h2, many streams per connection",
            Case::TlsH2(args.per_connection),
        ),
    ];
    let wanted: Vec<&str> = args.cases.split(',').map(str::trim).collect();
    for (name, label, case) in cases {
        if !wanted.contains(&name) {
            continue;
        }
        let server = start(
            &args.tandem,
            args.wrap.as_deref(),
            (!matches!(case, Case::Plain)).then_some(&pki),
        );
        let pid = server.child.id();
        // One stream first, so the reading before counts the runtime's
        // and the handshake machinery's first allocations, not the
        // streams'.
        let warm = rt.block_on(open(&case, &pki, server.port, 1));
        std::thread::sleep(Duration::from_millis(200));
        let before = rss_kib(pid);
        let held = rt.block_on(open(&case, &pki, server.port, args.streams));
        rt.block_on(async { tokio::time::sleep(Duration::from_secs(args.idle)).await });
        let after = rss_kib(pid);
        let per = (after as f64 - before as f64) / held.len() as f64;
        println!(
            "RESULT case=\"{label}\" streams={} rss_before_kib={before} rss_after_kib={after} kib_per_stream={per:.2}",
            held.len()
        );
        drop(held);
        drop(warm);
        drop(server);
    }
}
