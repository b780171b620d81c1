//! httpload: a load generator for plain HTTP/1.1 GETs, to measure what a
//! proxy in front of a web application adds (`benches/proxy.sh` runs it
//! against `bench-upstream` directly and through tandem).
//!
//! Two modes:
//!
//! * `--mode get`: `--connections` keep-alive connections, each sending its
//!   next GET as soon as the last one is answered (a closed loop), for
//!   `--warmup` seconds not counted and then `--duration` seconds (or
//!   `--requests` answers, whichever comes first). It reports answers per
//!   second and latency percentiles (from writing the request to the last
//!   byte of the answer) over that window.
//! * `--mode download`: `--times` whole downloads, `--connections` at once
//!   (each connection kept alive from one download to the next). It reports
//!   MB/s (10^6 bytes a second), in all and per download, and the time to
//!   the first and to the last byte of each answer.
//!
//! Every answer is checked: its status (`--expect-status`), its body length
//! (`--expect-len`, after undoing chunked framing) and in get mode, with
//! `--expect-contains`, a text its body must hold. A wrong answer, a broken
//! connection, and a request still unanswered when the window closes are
//! each counted and reported (`wrong=` sums them), never dropped.
//!
//! Like `loadgen`, it is one thread and no HTTP library: the client must not
//! be what limits the figures, so it reads into one buffer per connection,
//! parses heads with httparse and counts body bytes without keeping them
//! (but for `--expect-contains`). Its own CPU time is reported
//! (`cpu_self=`) to show when it came close to its core's limit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Load generator for plain HTTP/1.1 GETs and downloads.
#[derive(FromArgs)]
struct Args {
    /// get (connections sending GETs in a loop) or download (whole downloads)
    #[argh(option, default = "String::from(\"get\")")]
    mode: String,
    /// the URL to GET: http://IP:PORT/PATH
    #[argh(option)]
    url: String,
    /// keep-alive connections (get: 50; download: downloads at once, 1)
    #[argh(option)]
    connections: Option<usize>,
    /// get: seconds measured, after the warm-up
    #[argh(option, default = "5.0")]
    duration: f64,
    /// get: seconds of load before measuring (answers checked, not counted)
    #[argh(option, default = "1.0")]
    warmup: f64,
    /// get: stop measuring after this many answers even if time is left
    #[argh(option, default = "1_000_000")]
    requests: u64,
    /// download: how many downloads in all
    #[argh(option, default = "20")]
    times: usize,
    /// the status every answer must have
    #[argh(option, default = "200")]
    expect_status: u16,
    /// the body length every answer must have, in bytes
    #[argh(option)]
    expect_len: u64,
    /// get: text every answer's body must contain
    #[argh(option)]
    expect_contains: Option<String>,
    /// a process to report the CPU seconds of over the measured window, as
    /// NAME=PID (cpu_NAME= and cpu_us_per_answer_NAME=); repeat for more
    #[argh(option)]
    pid: Vec<String>,
    /// download: give up on what is not done after this many seconds
    #[argh(option, default = "120")]
    timeout: u64,
    /// a label for the RESULT line
    #[argh(option, default = "String::from(\"run\")")]
    label: String,
}

/// Where to connect and the request to send, written once.
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs, not {url:?}"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = host
            .parse()
            .map_err(|_| format!("the URL's host must be IP:PORT, not {host:?}"))?;
        let path = if path.is_empty() { "/" } else { path };
        // No Accept-Encoding: the page comes uncompressed, as the
        // upstream made it.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: httpload\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes();
        Ok(Target { addr, request })
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    Close,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// Undoes a body's framing and counts its bytes, keeping them only when
/// asked (`sink`).
struct BodyCounter {
    framing: Framing,
    len: u64,
    done: bool,
}

impl BodyCounter {
    fn new(framing: Framing) -> BodyCounter {
        let done = matches!(framing, Framing::Length(0));
        BodyCounter {
            framing,
            len: 0,
            done,
        }
    }

    /// Takes what it can of `data`; returns how many bytes it used (a
    /// chunk-size line or CRLF cut short waits for more).
    fn feed(&mut self, data: &[u8], mut sink: Option<&mut Vec<u8>>) -> Result<usize, String> {
        let mut keep = |bytes: &[u8]| {
            if let Some(s) = sink.as_deref_mut() {
                s.extend_from_slice(bytes);
            }
        };
        match &mut self.framing {
            Framing::Length(left) => {
                let take = (*left).min(data.len() as u64) as usize;
                keep(&data[..take]);
                *left -= take as u64;
                self.len += take as u64;
                self.done = *left == 0;
                Ok(take)
            }
            Framing::Close => {
                keep(data);
                self.len += data.len() as u64;
                Ok(data.len())
            }
            Framing::Chunked(state) => {
                let mut i = 0;
                while !self.done {
                    let rest = &data[i..];
                    match *state {
                        Chunk::Size | Chunk::Trailer => {
                            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                                if rest.len() > 4096 {
                                    return Err("chunk size or trailer line too long".into());
                                }
                                break;
                            };
                            let line = &rest[..end];
                            i += end + 2;
                            if matches!(*state, Chunk::Trailer) {
                                self.done = end == 0;
                                continue;
                            }
                            let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
                            let n = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                                .ok_or_else(|| {
                                    format!(
                                        "bad chunk size line {:?}",
                                        String::from_utf8_lossy(line)
                                    )
                                })?;
                            *state = if n == 0 {
                                Chunk::Trailer
                            } else {
                                Chunk::Data(n)
                            };
                        }
                        Chunk::Data(n) => {
                            if rest.is_empty() {
                                break;
                            }
                            let take = n.min(rest.len() as u64) as usize;
                            keep(&rest[..take]);
                            self.len += take as u64;
                            i += take;
                            *state = if take as u64 == n {
                                Chunk::DataEnd
                            } else {
                                Chunk::Data(n - take as u64)
                            };
                        }
                        Chunk::DataEnd => {
                            if rest.len() < 2 {
                                break;
                            }
                            if &rest[..2] != b"\r\n" {
                                return Err("chunk data not followed by CRLF".into());
                            }
                            i += 2;
                            *state = Chunk::Size;
                        }
                    }
                }
                Ok(i)
            }
        }
    }
}

/// One answer, read whole.
struct Answer {
    status: u16,
    len: u64,
    first_byte: Instant,
    keep_alive: bool,
}

/// A keep-alive client connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    read_size: usize,
}

impl Conn {
    async fn open(addr: SocketAddr, read_size: usize) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(read_size),
            pos: 0,
            read_size,
        })
    }

    /// Reads more into the buffer (what was used is dropped first); false
    /// at the end of the stream.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(self.read_size);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(n > 0)
    }

    /// Sends one request and reads its answer whole, the body's bytes
    /// appended to `body` if given.
    async fn exchange(
        &mut self,
        req: &[u8],
        mut body: Option<&mut Vec<u8>>,
    ) -> Result<Answer, String> {
        self.stream
            .write_all(req)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut first_byte = None;
        let (status, framing, keep_alive) = loop {
            if self.pos < self.buf.len() {
                let mut headers = [httparse::EMPTY_HEADER; 48];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.pos..]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
                        let mut framing = Framing::Close;
                        let mut keep_alive = resp.version == Some(1);
                        for h in resp.headers.iter() {
                            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let n = v
                                    .trim()
                                    .parse()
                                    .map_err(|_| format!("bad content-length {v:?}"))?;
                                if !matches!(framing, Framing::Chunked(_)) {
                                    framing = Framing::Length(n);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                                && v.contains("chunked")
                            {
                                framing = Framing::Chunked(Chunk::Size);
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                keep_alive = !v.contains("close")
                                    && (keep_alive || v.contains("keep-alive"));
                            }
                        }
                        if matches!(framing, Framing::Close) {
                            keep_alive = false;
                        }
                        self.pos += n;
                        if (100..200).contains(&status) {
                            continue;
                        }
                        break (status, framing, keep_alive);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(format!("bad response head: {e}")),
                }
            }
            if !self.fill().await? {
                return Err("connection closed before an answer".into());
            }
            first_byte.get_or_insert_with(Instant::now);
        };
        let mut counter = BodyCounter::new(framing);
        loop {
            let used = counter.feed(&self.buf[self.pos..], body.as_deref_mut())?;
            self.pos += used;
            if counter.done {
                break;
            }
            if !self.fill().await? {
                if matches!(framing, Framing::Close) {
                    break;
                }
                return Err("connection closed in the middle of a body".into());
            }
        }
        Ok(Answer {
            status,
            len: counter.len,
            first_byte: first_byte.unwrap_or_else(Instant::now),
            keep_alive,
        })
    }
}

/// What the workers saw.
#[derive(Default)]
struct Stats {
    /// Latencies in the window, microseconds (get), or times to the last
    /// byte (download).
    lat_us: Vec<u64>,
    /// Download: times to the first byte, microseconds.
    ttfb_us: Vec<u64>,
    /// Download: each one's bytes and seconds.
    downloads: Vec<(u64, f64)>,
    /// Answers checked (warm-up included).
    answers: u64,
    wrong_status: u64,
    wrong_len: u64,
    wrong_text: u64,
    /// Connections that broke, by what happened.
    errors: BTreeMap<String, u64>,
    /// Requests still unanswered when the window closed, and the oldest's age.
    unfinished: u64,
    unfinished_oldest: Duration,
    connects: u64,
    server_closes: u64,
    /// The first wrong answer's description, to show what was wrong.
    first_wrong: Option<String>,
}

impl Stats {
    fn check(&mut self, a: &Answer, body: Option<&[u8]>, args: &Args) {
        self.answers += 1;
        let mut wrong = None;
        if a.status != args.expect_status {
            self.wrong_status += 1;
            wrong = Some(format!(
                "status {} (expected {})",
                a.status, args.expect_status
            ));
        } else if a.len != args.expect_len {
            self.wrong_len += 1;
            wrong = Some(format!(
                "body of {} bytes (expected {})",
                a.len, args.expect_len
            ));
        } else if let (Some(text), Some(body)) = (&args.expect_contains, body) {
            if !body.windows(text.len()).any(|w| w == text.as_bytes()) {
                self.wrong_text += 1;
                wrong = Some(format!("body without {text:?}"));
            }
        }
        if self.first_wrong.is_none() {
            self.first_wrong = wrong;
        }
    }

    fn error(&mut self, e: String) {
        *self.errors.entry(e).or_default() += 1;
    }

    fn wrong(&self) -> u64 {
        self.wrong_status
            + self.wrong_len
            + self.wrong_text
            + self.errors.values().sum::<u64>()
            + self.unfinished
    }

    fn merge(&mut self, o: Stats) {
        self.lat_us.extend(o.lat_us);
        self.ttfb_us.extend(o.ttfb_us);
        self.downloads.extend(o.downloads);
        self.answers += o.answers;
        self.wrong_status += o.wrong_status;
        self.wrong_len += o.wrong_len;
        self.wrong_text += o.wrong_text;
        for (e, n) in o.errors {
            *self.errors.entry(e).or_default() += n;
        }
        self.unfinished += o.unfinished;
        self.unfinished_oldest = self.unfinished_oldest.max(o.unfinished_oldest);
        self.connects += o.connects;
        self.server_closes += o.server_closes;
        if self.first_wrong.is_none() {
            self.first_wrong = o.first_wrong;
        }
    }
}

/// The get mode's clock, shared by its workers.
struct Window {
    from: Instant,
    end: Instant,
    /// Set when `--requests` answers were counted: the window ends there.
    stopped: Cell<Option<Instant>>,
    counted: Cell<u64>,
    limit: u64,
}

impl Window {
    fn over(&self) -> bool {
        self.stopped.get().is_some() || Instant::now() >= self.end
    }

    /// Whether an answer finished at `at` falls in the window (and counts
    /// it towards `--requests`).
    fn count(&self, at: Instant) -> bool {
        if at < self.from || at >= self.end || self.stopped.get().is_some_and(|s| at > s) {
            return false;
        }
        let n = self.counted.get() + 1;
        self.counted.set(n);
        if n >= self.limit {
            self.stopped.set(Some(at));
        }
        true
    }

    /// How long requests in flight when the window closes are awaited.
    fn grace(&self) -> Instant {
        self.end + Duration::from_secs(10)
    }

    fn closed_at(&self) -> Instant {
        self.stopped.get().unwrap_or(self.end)
    }
}

async fn get_worker(target: Rc<Target>, window: Rc<Window>, args: Rc<Args>) -> Stats {
    let mut st = Stats::default();
    let mut conn: Option<Conn> = None;
    let mut body = args
        .expect_contains
        .as_ref()
        .map(|_| Vec::with_capacity(8192));
    while !window.over() {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                match tokio::time::timeout_at(window.end.into(), Conn::open(target.addr, 16 * 1024))
                    .await
                {
                    Err(_) => break,
                    Ok(Ok(c)) => {
                        st.connects += 1;
                        conn.insert(c)
                    }
                    Ok(Err(e)) => {
                        st.error(e);
                        // A refused connection would otherwise spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
        };
        if let Some(b) = body.as_mut() {
            b.clear();
        }
        let sent = Instant::now();
        // A request in flight when the window closes is still awaited
        // (and checked, not counted); one unanswered long after is wrong.
        match tokio::time::timeout_at(
            window.grace().into(),
            c.exchange(&target.request, body.as_mut()),
        )
        .await
        {
            Err(_) => {
                st.unfinished += 1;
                st.unfinished_oldest = st.unfinished_oldest.max(sent.elapsed());
                break;
            }
            Ok(Err(e)) => {
                st.error(e);
                conn = None;
            }
            Ok(Ok(a)) => {
                let done = Instant::now();
                st.check(&a, body.as_deref(), &args);
                if window.count(done) {
                    st.lat_us.push((done - sent).as_micros() as u64);
                }
                if !a.keep_alive {
                    st.server_closes += 1;
                    conn = None;
                }
            }
        }
    }
    st
}

async fn download_worker(
    target: Rc<Target>,
    left: Rc<Cell<usize>>,
    deadline: Instant,
    args: Rc<Args>,
) -> Stats {
    let mut st = Stats::default();
    let mut conn: Option<Conn> = None;
    while left.get() > 0 {
        left.set(left.get() - 1);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(target.addr, 256 * 1024).await {
                Ok(c) => {
                    st.connects += 1;
                    conn.insert(c)
                }
                Err(e) => {
                    st.error(e);
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline.into(), c.exchange(&target.request, None)).await {
            Err(_) => {
                st.unfinished += 1 + left.replace(0) as u64;
                st.unfinished_oldest = st.unfinished_oldest.max(sent.elapsed());
            }
            Ok(Err(e)) => {
                st.error(e);
                conn = None;
            }
            Ok(Ok(a)) => {
                let done = Instant::now();
                st.check(&a, None, &args);
                st.ttfb_us.push((a.first_byte - sent).as_micros() as u64);
                st.lat_us.push((done - sent).as_micros() as u64);
                st.downloads.push((a.len, (done - sent).as_secs_f64()));
                if !a.keep_alive {
                    st.server_closes += 1;
                    conn = None;
                }
            }
        }
    }
    st
}

/// CPU seconds of a process so far: the time its threads have run, in
/// nanoseconds from `/proc/PID/task/*/schedstat` (a download takes tens of
/// milliseconds, too short for the 10 ms ticks of `/proc/PID/stat`, which
/// is the fallback where schedstat is missing).
fn cpu_secs(pid: &str) -> Option<f64> {
    let from_schedstat = || -> Option<f64> {
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            ns += s.split(' ').next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    };
    from_schedstat().or_else(|| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / clock_ticks())
    })
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The processes to measure: `self` and every `--pid NAME=PID`.
fn cpu_all(pids: &[(String, String)]) -> Vec<Option<f64>> {
    pids.iter().map(|(_, p)| cpu_secs(p)).collect()
}

fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs the workers to their end and collects what they saw.
async fn join(
    local: &tokio::task::LocalSet,
    tasks: Vec<tokio::task::JoinHandle<Stats>>,
) -> Result<Vec<Stats>, String> {
    local
        .run_until(async {
            let mut done = Vec::new();
            for t in tasks {
                done.push(t.await.map_err(|e| e.to_string())?);
            }
            Ok(done)
        })
        .await
}

async fn run(args: Args) -> Result<(), String> {
    let target = Rc::new(Target::parse(&args.url)?);
    let mut pids = vec![("self".to_string(), std::process::id().to_string())];
    for p in &args.pid {
        let (name, pid) = p
            .split_once('=')
            .ok_or_else(|| format!("--pid takes NAME=PID, not {p:?}"))?;
        pids.push((name.to_string(), pid.to_string()));
    }
    let local = tokio::task::LocalSet::new();
    let download = match args.mode.as_str() {
        "get" => false,
        "download" => true,
        m => return Err(format!("unknown mode {m:?} (get or download)")),
    };
    let conns = args
        .connections
        .unwrap_or(if download { 1 } else { 50 })
        .max(1);
    let args = Rc::new(args);
    let mut total = Stats::default();
    let (cpu0, cpu1, secs);
    if download {
        let left = Rc::new(Cell::new(args.times));
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        cpu0 = cpu_all(&pids);
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                local.spawn_local(download_worker(
                    target.clone(),
                    left.clone(),
                    deadline,
                    args.clone(),
                ))
            })
            .collect();
        let done = join(&local, tasks).await?;
        secs = t0.elapsed().as_secs_f64();
        cpu1 = cpu_all(&pids);
        for s in done {
            total.merge(s);
        }
    } else {
        let now = Instant::now();
        let from = now + Duration::from_secs_f64(args.warmup);
        let window = Rc::new(Window {
            from,
            end: from + Duration::from_secs_f64(args.duration),
            stopped: Cell::new(None),
            counted: Cell::new(0),
            limit: args.requests.max(1),
        });
        let tasks: Vec<_> = (0..conns)
            .map(|_| local.spawn_local(get_worker(target.clone(), window.clone(), args.clone())))
            .collect();
        local.run_until(tokio::time::sleep_until(from.into())).await;
        cpu0 = cpu_all(&pids);
        let done = join(&local, tasks).await?;
        cpu1 = cpu_all(&pids);
        secs = (window.closed_at() - window.from).as_secs_f64();
        for s in done {
            total.merge(s);
        }
    }
    total.lat_us.sort_unstable();
    total.ttfb_us.sort_unstable();
    let counted = total.lat_us.len() as u64;
    let mut line = format!(
        "RESULT label={} mode={} url={} connections={conns} secs={secs:.3}",
        args.label, args.mode, args.url
    );
    let mut add = |k: &str, v: String| {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&v);
    };
    if download {
        let bytes: u64 = total.downloads.iter().map(|d| d.0).sum();
        let mut each: Vec<f64> = total
            .downloads
            .iter()
            .map(|&(b, s)| b as f64 / 1e6 / s)
            .collect();
        each.sort_by(f64::total_cmp);
        let median = each.get(each.len() / 2).copied().unwrap_or(f64::NAN);
        add("downloads", counted.to_string());
        add("bytes", bytes.to_string());
        add("mb_per_sec", format!("{:.1}", bytes as f64 / 1e6 / secs));
        add("mb_per_sec_each_p50", format!("{median:.1}"));
        add("ttfb_p50_ms", format!("{:.2}", pct_ms(&total.ttfb_us, 0.5)));
        add("ttfb_max_ms", format!("{:.2}", pct_ms(&total.ttfb_us, 1.0)));
        add("ttlb_p50_ms", format!("{:.2}", pct_ms(&total.lat_us, 0.5)));
        add("ttlb_max_ms", format!("{:.2}", pct_ms(&total.lat_us, 1.0)));
    } else {
        add("answers", counted.to_string());
        add("rps", format!("{:.0}", counted as f64 / secs));
        add("p50_ms", format!("{:.3}", pct_ms(&total.lat_us, 0.5)));
        add("p90_ms", format!("{:.3}", pct_ms(&total.lat_us, 0.9)));
        add("p99_ms", format!("{:.3}", pct_ms(&total.lat_us, 0.99)));
        add("max_ms", format!("{:.3}", pct_ms(&total.lat_us, 1.0)));
    }
    add("checked", total.answers.to_string());
    add("wrong", total.wrong().to_string());
    add("wrong_status", total.wrong_status.to_string());
    add("wrong_len", total.wrong_len.to_string());
    add("wrong_text", total.wrong_text.to_string());
    add("broken", total.errors.values().sum::<u64>().to_string());
    add("unfinished", total.unfinished.to_string());
    add("connects", total.connects.to_string());
    add("server_closes", total.server_closes.to_string());
    for (i, (name, _)) in pids.iter().enumerate() {
        let cpu = match (cpu0[i], cpu1[i]) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        add(&format!("cpu_{name}"), format!("{cpu:.4}"));
        // Per answer in get mode, per MB downloaded in download mode.
        let per = if download {
            let mb = total.downloads.iter().map(|d| d.0).sum::<u64>() as f64 / 1e6;
            ("cpu_ms_per_mb", cpu * 1e3 / mb)
        } else {
            ("cpu_us_per_answer", cpu * 1e6 / counted as f64)
        };
        add(&format!("{}_{name}", per.0), format!("{:.2}", per.1));
    }
    println!("{line}");
    if let Some(w) = &total.first_wrong {
        println!("first wrong answer: {w}");
    }
    for (e, n) in &total.errors {
        println!("broken: {n} x {e}");
    }
    if total.unfinished > 0 {
        println!(
            "unfinished: {} requests unanswered 10 s after the window closed (or by --timeout), the oldest sent {:.1} ms before",
            total.unfinished,
            total.unfinished_oldest.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn main() {
    let args: Args = argh::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("httpload: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a counter in pieces cut at `cut`, keeping what it
    /// does not use for the next piece, as `Conn::exchange` does.
    fn count(framing: Framing, wire: &[u8], cut: usize) -> Result<(u64, Vec<u8>, usize), String> {
        let mut c = BodyCounter::new(framing);
        let mut body = Vec::new();
        let mut buf = Vec::new();
        for piece in wire.chunks(cut.max(1)) {
            buf.extend_from_slice(piece);
            let used = c.feed(&buf, Some(&mut body))?;
            buf.drain(..used);
            if c.done {
                break;
            }
        }
        assert!(c.done, "body not finished");
        Ok((c.len, body, buf.len()))
    }

    #[test]
    fn chunked_bodies_are_undone_however_they_are_cut() {
        let wire = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for cut in 1..wire.len() {
            let (len, body, left) = count(Framing::Chunked(Chunk::Size), wire, cut).unwrap();
            assert_eq!(len, 31, "cut {cut}");
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            // What follows the body (the next answer) is not taken.
            assert!(left <= 4, "cut {cut}");
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        for cut in 1..8 {
            let (len, body, left) = count(Framing::Length(5), b"helloNEXT", cut).unwrap();
            assert_eq!((len, body.as_slice()), (5, &b"hello"[..]));
            assert!(left <= 3);
        }
        assert!(BodyCounter::new(Framing::Length(0)).done);
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        assert!(count(
            Framing::Chunked(Chunk::Size),
            b"zz\r\nhello\r\n0\r\n\r\n",
            64
        )
        .is_err());
        assert!(count(Framing::Chunked(Chunk::Size), b"5\r\nhelloXX0\r\n\r\n", 64).is_err());
    }
}
