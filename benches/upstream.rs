//! bench-upstream: the web application `benches/proxy.sh` puts tandem in
//! front of, to measure what the proxy adds.
//!
//! It has to be cheap, so that what the proxy costs shows: a plain hyper
//! HTTP/1 server on one current-thread runtime, every answer made from
//! bytes prepared at start (a `Bytes` clone, no copy, no formatting).
//!
//! * `GET /small`: a 2,048-byte HTML page (`text/html`). Through tandem it
//!   gets the co-browsing scripts, the cost a user of the proxy pays.
//! * `GET /small.txt`: 2,048 bytes of `text/plain`, passed through as it is.
//! * `GET /big`: 10,000,000 bytes of `application/octet-stream` in 64 KiB
//!   frames, `Content-Length` set.
//! * `GET /stats`: `connections=N requests=N`, what it has seen so far (the
//!   script reads it directly, to count the upstream connections the proxy
//!   opened).
//! * anything else: 404.
//!
//! Run `bench-upstream --listen 127.0.0.1:9000`; it runs until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use argh::FromArgs;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The size of the small pages.
const SMALL: usize = 2048;
/// The size of the download.
const BIG: usize = 10_000_000;
/// The frame size of the download, a typical application server's.
const FRAME: usize = 64 * 1024;

/// A small, fast web application for proxy benchmarks.
#[derive(FromArgs)]
struct Args {
    /// address to listen on, e.g. 127.0.0.1:9000
    #[argh(option)]
    listen: SocketAddr,
}

/// The bodies, made once.
struct Pages {
    small_html: Bytes,
    small_text: Bytes,
    big: Bytes,
}

impl Pages {
    fn new() -> Pages {
        // An ordinary page: a head with a title and a stylesheet link, a
        // body of paragraphs, padded to exactly SMALL bytes.
        let mut html = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>Account overview</title>\n<link rel=\"stylesheet\" href=\"/app.css\">\n\
             </head>\n<body>\n<h1>Account overview</h1>\n",
        );
        let tail = "</body>\n</html>\n";
        let para = "<p>Your last statement is ready. Payments made after the closing date show on the next one.</p>\n";
        while html.len() + para.len() + tail.len() <= SMALL {
            html.push_str(para);
        }
        html.push_str(&"\n".repeat(SMALL - html.len() - tail.len()));
        html.push_str(tail);
        assert_eq!(html.len(), SMALL);
        let text: Vec<u8> = (0..SMALL)
            .map(|i| {
                if i % 64 == 63 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        Pages {
            small_html: Bytes::from(html),
            small_text: Bytes::from(text),
            big: Bytes::from(big),
        }
    }
}

/// A body sent from one buffer in frames of at most `frame` bytes, each a
/// slice of it (no copy). Its exact size is known, so hyper sets
/// `Content-Length`.
struct Frames {
    data: Bytes,
    frame: usize,
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.frame.min(self.data.len());
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

/// What the upstream has seen, for `/stats`.
#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    pages: &Pages,
    counts: &Counts,
) -> Response<Frames> {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let (status, ctype, data, frame) = match req.uri().path() {
        "/small" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            pages.small_html.clone(),
            SMALL,
        ),
        "/small.txt" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            pages.small_text.clone(),
            SMALL,
        ),
        "/big" => (
            StatusCode::OK,
            "application/octet-stream",
            pages.big.clone(),
            FRAME,
        ),
        "/stats" => {
            let s = format!(
                "connections={} requests={}\n",
                counts.connections.load(Ordering::Relaxed),
                counts.requests.load(Ordering::Relaxed)
            );
            (StatusCode::OK, "text/plain", Bytes::from(s), SMALL)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
            SMALL,
        ),
    };
    let mut resp = Response::new(Frames { data, frame });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let pages = Rc::new(Pages::new());
    let counts = Rc::new(Counts::default());
    eprintln!("bench-upstream: listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: try again shortly
            // rather than exit in the middle of a run.
            Err(e) => {
                eprintln!("bench-upstream: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let pages = Rc::clone(&pages);
        let counts = Rc::clone(&counts);
        tokio::task::spawn_local(async move {
            let svc = service_fn(move |req| {
                let resp = answer(&req, &pages, &counts);
                async move { Ok::<_, Infallible>(resp) }
            });
            // A client that goes away mid-answer is normal in a benchmark
            // (the load generator stops at its deadline): not worth a line.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let args: Args = argh::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    if let Err(e) = local.block_on(&rt, serve(args.listen)) {
        eprintln!("bench-upstream: {e}");
        std::process::exit(1);
    }
}
