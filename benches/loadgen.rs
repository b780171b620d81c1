//! loadgen: a load generator for HTTP push servers (tandem, Nchan, anything
//! with URL templates).
//!
//! N subscribers over M channels hold a stream (or long-poll), a publisher
//! POSTs `events` events to every channel at a set rate or flat out, and every
//! payload carries a marker `@@<seq>:<micros>##` with its sequence number and
//! the moment it was sent. Subscribers find markers in the raw bytes, whatever
//! the framing (SSE, multipart, JSON), so the same run measures any server.
//! It reports deliveries expected and received, lost, duplicated, deliveries
//! per second, latency percentiles, and the server's RSS and CPU seconds from
//! `/proc/PID`.
//!
//! Why raw sockets and one thread: the generator must not be the bottleneck
//! nor steal the server's core. It runs on a current-thread runtime, reads
//! into one small buffer per connection and scans bytes; no HTTP library.
//! Requests are written and answers read with the test kit's sans-IO HTTP/1
//! (`kit::http1`, tests/kit), which the integration tests use too.
//!
//! Run `cargo run --release -p tandem-bench -- --help`; `benches/compare.sh`
//! drives it against tandem and Nchan.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use kit::http1::{find, Decoder, Framing, Head, Req};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Load generator for HTTP push servers.
#[derive(FromArgs, Clone)]
struct Args {
    /// subscribe URL template, `{ch}` is the channel, e.g. http://127.0.0.1:8080/ch/{ch}/sse;
    /// repeat it for several servers (each channel's subscribers go round robin
    /// over them)
    #[argh(option)]
    sub: Vec<String>,
    /// publish URL template, e.g. http://127.0.0.1:8080/ch/{ch}
    #[argh(option)]
    publish: String,
    /// stream (one long response) or poll (tandem ?since= / Nchan Etag long-poll)
    #[argh(option, default = "String::from(\"stream\")")]
    mode: String,
    /// number of subscribers, spread evenly over the channels
    #[argh(option, default = "1000")]
    subscribers: usize,
    /// number of channels
    #[argh(option, default = "1")]
    channels: usize,
    /// events published to each channel
    #[argh(option, default = "100")]
    events: usize,
    /// total publish rate in events per second (0 = flat out)
    #[argh(option, default = "0")]
    rate: u64,
    /// concurrent publisher connections when flat out
    #[argh(option, default = "4")]
    publishers: usize,
    /// payload size in bytes (at least the marker)
    #[argh(option, default = "64")]
    payload: usize,
    /// server process to read RSS and CPU time from; repeat it to sum
    /// several (every node of a cluster and its Redis)
    #[argh(option)]
    pid: Vec<u32>,
    /// give up waiting for deliveries after this many seconds
    #[argh(option, default = "60")]
    timeout: u64,
    /// only hold the subscribers open this many seconds and report memory (no publishing)
    #[argh(option)]
    idle: Option<u64>,
    /// the Accept header subscribers send (Nchan picks its transport by it)
    #[argh(option, default = "String::from(\"*/*\")")]
    accept: String,
    /// a label for the report line
    #[argh(option, default = "String::from(\"run\")")]
    label: String,
}

struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(t: &str, ch: &str) -> Url {
    let s = t.replace("{ch}", ch);
    let rest = s.strip_prefix("http://").expect("only http:// URLs");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host.parse().expect("host must be IP:PORT");
    Url {
        addr,
        host: host.to_string(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        },
    }
}

fn channel(i: usize) -> String {
    format!("bench{i}")
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    seqs: Vec<u32>,
    lat_us: Vec<u32>,
    connected: bool,
    error: Option<String>,
}

/// Finds markers `@@seq:micros##` in `buf`, keeping an unfinished tail.
fn scan(buf: &mut Vec<u8>, start: Instant, seen: &mut Seen) {
    let mut i = 0;
    let mut keep_from = buf.len().saturating_sub(40);
    while let Some(p) = find(&buf[i..], b"@@") {
        let at = i + p;
        let Some(end) = find(&buf[at..], b"##") else {
            keep_from = keep_from.min(at);
            break;
        };
        let marker = &buf[at + 2..at + end];
        if let Some((seq, t)) = std::str::from_utf8(marker)
            .ok()
            .and_then(|m| m.split_once(':'))
        {
            if let (Ok(seq), Ok(t)) = (seq.parse::<u32>(), t.parse::<u64>()) {
                let now = start.elapsed().as_micros() as u64;
                seen.seqs.push(seq);
                seen.lat_us.push(now.saturating_sub(t) as u32);
            }
        }
        i = at + end + 2;
        keep_from = keep_from.max(i);
    }
    let keep_from = keep_from.max(i).min(buf.len());
    buf.drain(..keep_from);
}

/// Counts the events in a subscriber's new bytes; whether it has all it wants.
fn record(buf: &mut Vec<u8>, start: Instant, want: usize, seen: &std::cell::RefCell<Seen>) -> bool {
    let mut sn = seen.borrow_mut();
    scan(buf, start, &mut sn);
    sn.seqs.len() >= want
}

/// Keeps a subscriber's error for the report.
fn keep_error(seen: &std::cell::RefCell<Seen>, res: Result<(), String>) {
    if let Err(e) = res {
        seen.borrow_mut().error = Some(e);
    }
}

async fn stream_sub(
    url: Url,
    accept: Rc<str>,
    start: Instant,
    want: usize,
    deadline: Instant,
    seen: Rc<std::cell::RefCell<Seen>>,
) {
    let res: Result<(), String> = async {
        let mut s = TcpStream::connect(url.addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = Req::get(&url.path)
            .header("Host", &url.host)
            .header("Accept", &accept);
        s.write_all(&req.to_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let mut head_done = false;
        loop {
            let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
                .await
                .map_err(|_| "timeout".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("server closed the stream".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if !head_done {
                // The body's framing stays in: markers are found in the raw bytes.
                let Some((head, len)) = Head::parse(&buf)? else {
                    continue;
                };
                if head.status != 200 {
                    return Err(format!("bad response: {}", head.raw.trim_end()));
                }
                buf.drain(..len);
                head_done = true;
                seen.borrow_mut().connected = true;
            }
            if record(&mut buf, start, want, &seen) {
                return Ok(());
            }
        }
    }
    .await;
    keep_error(&seen, res);
}

/// Reads one whole response to a `method` request: its head and its body,
/// however framed. Bytes after it stay in `buf`.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &str,
    deadline: Instant,
) -> Result<(Head, Vec<u8>), String> {
    let mut chunk = [0u8; 8192];
    let mut reading: Option<(Head, Decoder)> = None;
    loop {
        if reading.is_none() {
            if let Some((head, len)) = Head::parse(buf)? {
                buf.drain(..len);
                let dec = Decoder::new(Framing::of(&head, method));
                reading = Some((head, dec));
            }
        }
        if let Some((_, dec)) = &mut reading {
            dec.decode(buf)?;
            if dec.is_done() {
                let (head, mut dec) = reading.take().expect("reading");
                return Ok((head, dec.take_raw()));
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            // A close-delimited body ends here; anything else was cut.
            if let Some((head, mut dec)) = reading.take() {
                dec.closed();
                if dec.ended_cleanly() {
                    return Ok((head, dec.take_raw()));
                }
            }
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn poll_sub(
    url: Url,
    start: Instant,
    want: usize,
    deadline: Instant,
    seen: Rc<std::cell::RefCell<Seen>>,
) {
    let res: Result<(), String> = async {
        let mut s = TcpStream::connect(url.addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        // tandem's cursor, `EPOCH:ID`, as the last answer's `next` gave it.
        let mut since: Option<String> = None;
        let mut etag: Option<String> = None;
        let mut modified: Option<String> = None;
        let mut first = true;
        loop {
            let mut path = url.path.clone();
            if let Some(n) = &since {
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&format!("since={n}"));
            }
            let mut req = Req::get(&path).header("Host", &url.host);
            if let Some(e) = &etag {
                req = req.header("If-None-Match", e);
            }
            if let Some(m) = &modified {
                req = req.header("If-Modified-Since", m);
            }
            s.write_all(&req.to_bytes())
                .await
                .map_err(|e| e.to_string())?;
            if first {
                // A long-poll is "connected" once its first request is out; the
                // harness waits a moment before publishing.
                seen.borrow_mut().connected = true;
                first = false;
            }
            let (head, mut body) = read_response(&mut s, &mut buf, "GET", deadline).await?;
            etag = head.header("etag").map(str::to_string).or(etag);
            modified = head
                .header("last-modified")
                .map(str::to_string)
                .or(modified);
            // `"next":"EPOCH:ID"`, or a bare `"next":ID` from a server
            // older than cursors with epochs (for A/B runs against one).
            let at = find(&body, b"\"next\":\"")
                .map(|p| p + 8)
                .or_else(|| find(&body, b"\"next\":").map(|p| p + 7));
            if let Some(p) = at {
                let cursor: String = body[p..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b':')
                    .map(|&c| c as char)
                    .collect();
                if !cursor.is_empty() {
                    since = Some(cursor);
                }
            }
            if record(&mut body, start, want, &seen) {
                return Ok(());
            }
        }
    }
    .await;
    keep_error(&seen, res);
}

async fn publisher(
    urls: Vec<Url>,
    jobs: Rc<std::cell::RefCell<std::collections::VecDeque<(usize, u32)>>>,
    args: Args,
    start: Instant,
    pace: Option<(Instant, Duration)>,
    sent: Rc<std::cell::Cell<u64>>,
) -> Result<(), String> {
    let mut conns: HashMap<SocketAddr, (TcpStream, Vec<u8>)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    // One request per channel, its body replaced for each event, written
    // into one reused buffer: no allocation per publish but the payload's.
    let mut reqs: Vec<Req> = urls
        .iter()
        .map(|u| {
            Req::post(&u.path, b"")
                .header("Host", &u.host)
                .header("Content-Type", "text/plain")
        })
        .collect();
    let mut out = Vec::with_capacity(256);
    loop {
        let Some((ch, seq)) = jobs.borrow_mut().pop_front() else {
            return Ok(());
        };
        // At a set rate, an event's time is when it was *due*, not when the
        // publisher got to send it: a server that answers publishes slowly
        // makes later events late, and that lateness is latency its
        // subscribers see (stamping the actual send time would hide it, the
        // "coordinated omission" error). Flat out, nothing is due: stamp now.
        let stamp = match pace {
            Some((t0, every)) => {
                let due = t0 + every * sent.get() as u32;
                tokio::time::sleep_until(due.into()).await;
                due.duration_since(start)
            }
            None => start.elapsed(),
        };
        sent.set(sent.get() + 1);
        let url = &urls[ch];
        let req = &mut reqs[ch];
        req.body.clear();
        write!(req.body, "@@{seq}:{}##", stamp.as_micros()).expect("write to a Vec");
        if req.body.len() < args.payload {
            req.body.resize(args.payload, b'.');
        }
        out.clear();
        req.write(&mut out);
        // A server may close a keep-alive connection between requests
        // (nginx after keepalive_requests): reconnect once and resend.
        let mut attempt = 0;
        let head = loop {
            attempt += 1;
            let (s, buf) = match conns.entry(url.addr) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let s = TcpStream::connect(url.addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    s.set_nodelay(true).ok();
                    e.insert((s, Vec::new()))
                }
            };
            let sent = s.write_all(&out).await.map_err(|e| e.to_string());
            match sent.and(Ok(())) {
                Ok(()) => match read_response(s, buf, "POST", deadline).await {
                    Ok((head, _)) => break head,
                    Err(e) if attempt < 2 && e == "connection closed" => {}
                    Err(e) => return Err(e),
                },
                Err(_) if attempt < 2 => {}
                Err(e) => return Err(e),
            }
            conns.remove(&url.addr);
        };
        if head.status / 100 != 2 {
            return Err(format!(
                "publish refused: {}",
                head.raw.lines().next().unwrap_or("")
            ));
        }
    }
}

/// RSS in KiB and CPU seconds (user + system) of a process.
fn proc_stats(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((rss, ticks / clock_ticks()))
}

/// RSS and CPU seconds summed over `pids`, and each process's CPU seconds;
/// None when there is no pid or one of them cannot be read.
fn procs_stats(pids: &[u32]) -> Option<(u64, f64, Vec<f64>)> {
    if pids.is_empty() {
        return None;
    }
    let mut each = Vec::with_capacity(pids.len());
    let (mut rss, mut cpu) = (0, 0.0);
    for &pid in pids {
        let (r, c) = proc_stats(pid)?;
        rss += r;
        cpu += c;
        each.push(c);
    }
    Some((rss, cpu, each))
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(args: Args) -> Result<(), String> {
    let start = Instant::now();
    let want = if args.idle.is_some() {
        usize::MAX
    } else {
        args.events
    };
    let idle_secs = args.idle.unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(args.timeout + idle_secs + 30);
    let before = procs_stats(&args.pid);
    let mut seens = Vec::new();
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    let accept: Rc<str> = Rc::from(args.accept.as_str());
    // Connect in waves so the listen backlog is not overrun.
    for i in 0..args.subscribers {
        // Each channel's subscribers go round robin over the --sub templates.
        let server = (i / args.channels.max(1)) % args.sub.len();
        let url = parse_url(&args.sub[server], &channel(i % args.channels));
        let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
        seens.push((i % args.channels, seen.clone()));
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = if args.mode == "poll" {
            Box::pin(poll_sub(url, start, want, deadline, seen))
        } else {
            Box::pin(stream_sub(url, accept.clone(), start, want, deadline, seen))
        };
        tasks.push(local.spawn_local(fut));
        if i % 200 == 199 {
            local
                .run_until(tokio::time::sleep(Duration::from_millis(20)))
                .await;
        }
    }
    // Wait until every subscriber is connected (or failed).
    let wait_until = Instant::now() + Duration::from_secs(60);
    local
        .run_until(async {
            while Instant::now() < wait_until
                && !seens
                    .iter()
                    .all(|(_, s)| s.borrow().connected || s.borrow().error.is_some())
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
    let connected = seens.iter().filter(|(_, s)| s.borrow().connected).count();
    if let Some(secs) = args.idle {
        let mid = procs_stats(&args.pid);
        local
            .run_until(tokio::time::sleep(Duration::from_secs(secs)))
            .await;
        let after = procs_stats(&args.pid);
        let alive = seens
            .iter()
            .filter(|(_, s)| s.borrow().error.is_none())
            .count();
        let (rss0, rss1) = (before.map(|b| b.0), after.or(mid).map(|a| a.0));
        let per = match (rss0, rss1) {
            (Some(a), Some(b)) if alive > 0 => format!(
                "{:.2}",
                (b as f64 - a as f64) * 1024.0 / alive as f64 / 1024.0
            ),
            _ => "n/a".into(),
        };
        println!(
            "RESULT label={} idle_connections={} connected={} rss_before_kib={} rss_after_kib={} kib_per_connection={}",
            args.label,
            alive,
            connected,
            rss0.map_or("n/a".into(), |v| v.to_string()),
            rss1.map_or("n/a".into(), |v| v.to_string()),
            per
        );
        return Ok(());
    }
    let cpu0 = procs_stats(&args.pid);
    let pub_urls: Vec<Url> = (0..args.channels)
        .map(|c| parse_url(&args.publish, &channel(c)))
        .collect();
    let pub_urls = Rc::new(pub_urls);
    let mut jobs = std::collections::VecDeque::new();
    for seq in 0..args.events as u32 {
        for ch in 0..args.channels {
            jobs.push_back((ch, seq));
        }
    }
    let total_events = jobs.len() as u64;
    let jobs = Rc::new(std::cell::RefCell::new(jobs));
    let sent = Rc::new(std::cell::Cell::new(0u64));
    let t_pub = Instant::now();
    let pace = (args.rate > 0).then(|| (t_pub, Duration::from_nanos(1_000_000_000 / args.rate)));
    let npub = if pace.is_some() {
        1
    } else {
        args.publishers.max(1)
    };
    let mut pubs = Vec::new();
    for _ in 0..npub {
        let urls: Vec<Url> = pub_urls
            .iter()
            .map(|u| Url {
                addr: u.addr,
                host: u.host.clone(),
                path: u.path.clone(),
            })
            .collect();
        pubs.push(local.spawn_local(publisher(
            urls,
            jobs.clone(),
            args.clone(),
            start,
            pace,
            sent.clone(),
        )));
    }
    let mut pub_err = None;
    local
        .run_until(async {
            for p in pubs {
                if let Ok(Err(e)) = p.await {
                    pub_err = Some(e);
                }
            }
        })
        .await;
    let pub_secs = t_pub.elapsed().as_secs_f64();
    local
        .run_until(async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    let wall = t_pub.elapsed().as_secs_f64();
    let cpu1 = procs_stats(&args.pid);
    let mut expected = 0u64;
    let mut received = 0u64;
    let mut lost = 0u64;
    let mut dup = 0u64;
    let mut errors: HashMap<String, usize> = HashMap::new();
    let mut lat = Vec::new();
    for (_, s) in &seens {
        let s = s.borrow();
        expected += args.events as u64;
        received += s.seqs.len() as u64;
        let mut seen = vec![false; args.events];
        for &q in &s.seqs {
            match seen.get_mut(q as usize) {
                Some(b) if *b => dup += 1,
                Some(b) => *b = true,
                None => dup += 1,
            }
        }
        lost += seen.iter().filter(|b| !**b).count() as u64;
        lat.extend_from_slice(&s.lat_us);
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    lat.sort_unstable();
    let cpu = match (&cpu0, &cpu1) {
        (Some(a), Some(b)) => b.1 - a.1,
        _ => f64::NAN,
    };
    // Each process's share, in the order of the --pid options.
    let cpu_each = match (&cpu0, &cpu1) {
        (Some(a), Some(b)) => {
            a.2.iter()
                .zip(&b.2)
                .map(|(x, y)| format!("{:.2}", y - x))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => "n/a".into(),
    };
    let rss = cpu1.as_ref().map_or("n/a".into(), |c| c.0.to_string());
    println!(
        "RESULT label={} subscribers={} connected={} channels={} events={} expected={} received={} lost={} duplicated={} \
         publish_secs={:.3} publish_rate={:.0} wall_secs={:.3} deliveries_per_sec={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} \
         server_cpu_secs={:.3} server_cpu_each={} deliveries_per_cpu_sec={:.0} server_rss_kib={}",
        args.label,
        args.subscribers,
        connected,
        args.channels,
        total_events,
        expected,
        received,
        lost,
        dup,
        pub_secs,
        total_events as f64 / pub_secs,
        wall,
        received as f64 / wall,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        cpu,
        cpu_each,
        received as f64 / cpu,
        rss
    );
    if let Some(e) = pub_err {
        println!("publisher error: {e}");
    }
    for (e, n) in errors {
        println!("subscriber errors: {n} x {e}");
    }
    Ok(())
}

fn main() {
    let args: Args = argh::from_env();
    if args.sub.is_empty() {
        eprintln!("loadgen: at least one --sub URL template");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
