//! tlsspeed: the server CPU of fan-out and of publishing, plaintext against
//! TLS with HTTP/1.1 and TLS with HTTP/2 (docs/benchmarks.md, "Idle streams
//! over TLS").
//!
//! For each case it starts `tandem serve` (the flags of benches/tlsidle.rs,
//! `--threads 1`), then:
//!
//! * **fan-out**: opens `--streams` SSE streams on one channel, publishes
//!   `--events` events of `--size` bytes one after another on one
//!   keep-alive connection of the same kind, and waits until every stream
//!   has the last one; the server's CPU time (user + system, from
//!   `/proc/PID/stat`) over that span gives deliveries per CPU-second;
//! * **publish**: `--publishes` publishes on one connection to a channel
//!   nobody follows; CPU time per publish.
//!
//! The client runs in this process on one thread and shares the machine;
//! only the server's CPU time is counted, so a slow client costs wall time,
//! not the figures.
//!
//! ```text
//! cargo build --release --bin tandem && cargo build -p tandem-bench --bin tlsspeed
//! target/debug/tlsspeed --tandem target/release/tandem
//! ```

mod tandem_process;

use std::time::{Duration, Instant};

use argh::FromArgs;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::Pki;
use tandem_process::start;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Server CPU of fan-out and publishing: plaintext, TLS HTTP/1.1, TLS h2.
#[derive(FromArgs)]
struct Args {
    /// the tandem binary
    #[argh(option)]
    tandem: String,
    /// streams in the fan-out
    #[argh(option, default = "1000")]
    streams: usize,
    /// events published to them
    #[argh(option, default = "200")]
    events: usize,
    /// bytes of data per event
    #[argh(option, default = "100")]
    size: usize,
    /// publishes in the publish measurement
    #[argh(option, default = "5000")]
    publishes: usize,
    /// streams per connection in the h2 fan-out
    #[argh(option, default = "100")]
    per_connection: usize,
    /// the cases to run, comma-separated: plain, h1, h2 (all)
    #[argh(option, default = "String::from(\"plain,h1,h2\")")]
    cases: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Plain,
    TlsH1,
    TlsH2,
}

/// The last event's data: a stream has everything once it has seen this.
const END: &[u8] = b"the-end-of-the-fan-out";

/// The process's user + system CPU time, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_CLK_TCK: i32 = 2;
    // SAFETY: sysconf reads a constant of the system.
    unsafe { sysconf(SC_CLK_TCK) as f64 }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection of the case's kind: TCP or TLS (HTTP/1.1), or h2.
enum Conn {
    H1(Box<dyn Io>),
    H2(SendRequest<Full<Bytes>>),
}

async fn connect(case: Case, pki: &Pki, port: u16) -> Conn {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).ok();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    match case {
        Case::Plain => Conn::H1(Box::new(tcp)),
        Case::TlsH1 => {
            let tls = pki.client(&[b"http/1.1"]).connect(name, tcp).await;
            Conn::H1(Box::new(tls.expect("handshake")))
        }
        Case::TlsH2 => {
            let tls = pki.client(&[b"h2"]).connect(name, tcp).await;
            let tls = tls.expect("handshake");
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(send)
        }
    }
}

/// Reads until `needle` has arrived; keeps only a tail of what was read.
async fn h1_until(io: &mut dyn Io, got: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = vec![0u8; 16 * 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let keep = got.len().saturating_sub(needle.len());
        got.drain(..keep);
        let n = io.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(needle));
        got.extend_from_slice(&buf[..n]);
    }
}

/// One publish on `conn`, answered.
async fn publish(conn: &mut Conn, channel: &str, data: &[u8]) {
    match conn {
        Conn::H1(io) => {
            let head = format!(
                "POST /ch/{channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            io.write_all(&[head.as_bytes(), data].concat())
                .await
                .expect("write");
            // The answer is `{"id":N}`, and nothing follows it.
            let mut got = Vec::new();
            h1_until(io.as_mut(), &mut got, b"}").await;
        }
        Conn::H2(send) => {
            let req = hyper::Request::post(format!("https://127.0.0.1/ch/{channel}"))
                .body(Full::new(Bytes::copy_from_slice(data)))
                .expect("request");
            send.ready().await.expect("ready");
            let resp = send.send_request(req).await.expect("answer");
            assert_eq!(resp.status(), 202);
            resp.into_body().collect().await.expect("body");
        }
    }
}

/// Opens `n` streams; each is a task that ends once it has the last event.
async fn streams(
    case: Case,
    pki: &Pki,
    port: u16,
    n: usize,
    per: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(n);
    let mut h2: Option<(SendRequest<Full<Bytes>>, usize)> = None;
    for _ in 0..n {
        if case == Case::TlsH2 {
            let (send, used) = match h2.take() {
                Some((send, used)) if used < per => (send, used),
                _ => match connect(case, pki, port).await {
                    Conn::H2(send) => (send, 0),
                    Conn::H1(_) => unreachable!(),
                },
            };
            let mut send2 = send.clone();
            h2 = Some((send, used + 1));
            let req = hyper::Request::get("https://127.0.0.1/ch/fan/sse")
                .body(Full::new(Bytes::new()))
                .expect("request");
            send2.ready().await.expect("ready");
            let resp = send2.send_request(req).await.expect("answer");
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while !got.windows(END.len()).any(|w| w == END) {
                    let keep = got.len().saturating_sub(END.len());
                    got.drain(..keep);
                    let frame = body.frame().await.expect("open").expect("frame");
                    if let Ok(data) = frame.into_data() {
                        got.extend_from_slice(&data);
                    }
                }
            }));
        } else {
            let Conn::H1(mut io) = connect(case, pki, port).await else {
                unreachable!()
            };
            io.write_all(b"GET /ch/fan/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .expect("write");
            let mut got = Vec::new();
            h1_until(io.as_mut(), &mut got, b"\r\n\r\n").await;
            tasks.push(tokio::spawn(async move {
                h1_until(io.as_mut(), &mut got, END).await;
            }));
        }
    }
    tasks
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
        ("h2", "TLS h2", Case::TlsH2),
    ];
    let wanted: Vec<&str> = args.cases.split(',').map(str::trim).collect();
    let data = vec![b'x'; args.size];
    for (name, label, case) in cases {
        if !wanted.contains(&name) {
            continue;
        }
        let server = start(&args.tandem, None, (case != Case::Plain).then_some(&pki));
        let pid = server.child.id();
        rt.block_on(async {
            // Fan-out.
            let tasks = streams(case, &pki, server.port, args.streams, args.per_connection).await;
            let mut publisher = connect(case, &pki, server.port).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (cpu, wall) = (cpu_secs(pid), Instant::now());
            for _ in 1..args.events {
                publish(&mut publisher, "fan", &data).await;
            }
            publish(&mut publisher, "fan", END).await;
            for t in tasks {
                t.await.expect("stream");
            }
            let (cpu, wall) = (cpu_secs(pid) - cpu, wall.elapsed().as_secs_f64());
            let deliveries = (args.streams * args.events) as f64;
            println!(
                "RESULT case=\"{label}\" test=fanout streams={} events={} cpu_s={cpu:.2} wall_s={wall:.2} deliveries_per_cpu_s={:.0}",
                args.streams,
                args.events,
                deliveries / cpu
            );
            // Publishes to a channel nobody follows.
            let (cpu, wall) = (cpu_secs(pid), Instant::now());
            for _ in 0..args.publishes {
                publish(&mut publisher, "alone", &data).await;
            }
            let (cpu, wall) = (cpu_secs(pid) - cpu, wall.elapsed().as_secs_f64());
            println!(
                "RESULT case=\"{label}\" test=publish publishes={} cpu_s={cpu:.2} wall_s={wall:.2} cpu_us_per_publish={:.1}",
                args.publishes,
                cpu * 1e6 / args.publishes as f64
            );
        });
        drop(server);
    }
}
