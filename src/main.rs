//! `tandem serve`: flags become a validated `Config`, then `tandem::serve`.
//! Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use tandem::{Config, Hub};

/// tandem: a firewall-friendly HTTP push server.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Serve(Serve),
    Agents(AgentsCmd),
    Audit(AuditCmd),
    Sub(SubCmd),
    Pub(PubCmd),
}

/// Manage co-browsing agent accounts (the --agents file).
#[derive(FromArgs)]
#[argh(subcommand, name = "agents")]
struct AgentsCmd {
    #[argh(subcommand)]
    command: AgentsSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AgentsSub {
    Add(AgentsAdd),
}

/// Add an agent: reads the password from standard input (one line), appends
/// `name:argon2-hash` to FILE.
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct AgentsAdd {
    /// the agents file (made if missing)
    #[argh(positional)]
    file: PathBuf,
    /// the agent's name (1 to 32 of A-Z a-z 0-9 . _ -)
    #[argh(positional)]
    name: String,
}

/// Check the co-browsing audit log.
#[derive(FromArgs)]
#[argh(subcommand, name = "audit")]
struct AuditCmd {
    #[argh(subcommand)]
    command: AuditSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AuditSub {
    Verify(AuditVerify),
}

/// Verify the hash chain of an audit log; prints the line count and head hash.
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
struct AuditVerify {
    /// the audit log (--audit FILE of serve)
    #[argh(positional)]
    file: PathBuf,
}

/// Run the push server (with its demo pages) until SIGINT or SIGTERM.
///
/// Durations take a unit: 500ms, 15s, 10m, 1h (a bare number is seconds).
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// address to listen on (default 127.0.0.1:8080)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8080))")]
    listen: SocketAddr,
    /// worker threads (default: one per core)
    #[argh(option, default = "0")]
    threads: usize,
    /// events kept per channel for resume (default 256)
    #[argh(option, default = "256")]
    buffer_events: usize,
    /// how long events stay buffered (default 10m)
    #[argh(option, default = "Duration::from_secs(600)", from_str_fn(duration))]
    buffer_age: Duration,
    /// largest event in bytes (default 65536)
    #[argh(option, default = "65536")]
    max_event_bytes: usize,
    /// most parts in one multipart/form-data publish (default 64)
    #[argh(option, default = "64")]
    max_parts: usize,
    /// most events in one long-poll answer (default 100)
    #[argh(option, default = "100")]
    poll_batch: usize,
    /// long-poll hold time when the client names none (default 25s)
    #[argh(option, default = "Duration::from_secs(25)", from_str_fn(duration))]
    poll_timeout: Duration,
    /// longest long-poll hold a client may ask for (default 120s)
    #[argh(option, default = "Duration::from_secs(120)", from_str_fn(duration))]
    poll_timeout_max: Duration,
    /// heartbeat interval on idle streams (default 15s)
    #[argh(option, default = "Duration::from_secs(15)", from_str_fn(duration))]
    heartbeat: Duration,
    /// bytes of padding at the start of streams (default 2048)
    #[argh(option, default = "2048")]
    stream_padding: usize,
    /// reconnect delay told to SSE clients (default 2s)
    #[argh(option, default = "Duration::from_secs(2)", from_str_fn(duration))]
    sse_retry: Duration,
    /// open connections beyond which new ones get 503 (default 10000)
    #[argh(option, default = "10_000")]
    max_connections: usize,
    /// close a connection that sends no complete request head for this long, from its opening or its last answer (default 75s)
    #[argh(option, default = "Duration::from_secs(75)", from_str_fn(duration))]
    idle_timeout: Duration,
    /// an origin allowed by CORS, or *; repeat for more (default: same origin only)
    #[argh(option)]
    allow_origin: Vec<String>,
    /// how often idle channels are swept away (default 30s)
    #[argh(option, default = "Duration::from_secs(30)", from_str_fn(duration))]
    sweep_interval: Duration,
    /// how long shutdown waits for connections to drain (default 10s)
    #[argh(option, default = "Duration::from_secs(10)", from_str_fn(duration))]
    shutdown_timeout: Duration,
    /// turn co-browsing off (/cobrowse.js, /agent, /cobrowse/..., /portal/)
    #[argh(switch)]
    no_cobrowse: bool,
    /// co-browsing agent accounts, name:argon2-hash lines (see `tandem agents add`); default: a per-run key, printed
    #[argh(option)]
    agents: Option<PathBuf>,
    /// append the co-browsing audit log (hash-chained JSON lines) to this file
    #[argh(option)]
    audit: Option<PathBuf>,
    /// write chat text into the audit log (default: its length only)
    #[argh(switch)]
    audit_chat_text: bool,
    /// canned chat replies for agents, one a line (default: built-in ones)
    #[argh(option)]
    canned: Option<PathBuf>,
    /// how long an agent stays signed in (default 8h)
    #[argh(
        option,
        default = "Duration::from_secs(8 * 3600)",
        from_str_fn(duration)
    )]
    agent_session_ttl: Duration,
    /// how long a help session lives at most (default 4h)
    #[argh(
        option,
        default = "Duration::from_secs(4 * 3600)",
        from_str_fn(duration)
    )]
    help_session_ttl: Duration,
    /// most help sessions open at once (default 1000)
    #[argh(option, default = "1000")]
    max_help_sessions: usize,
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 500ms, 15s, 10m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}"))
}

impl Serve {
    fn config(self) -> Config {
        Config {
            listen: self.listen,
            threads: self.threads,
            buffer_events: self.buffer_events,
            buffer_age: self.buffer_age,
            max_event_bytes: self.max_event_bytes,
            max_parts: self.max_parts,
            poll_batch: self.poll_batch,
            poll_timeout: self.poll_timeout,
            poll_timeout_max: self.poll_timeout_max,
            heartbeat: self.heartbeat,
            stream_padding: self.stream_padding,
            sse_retry: self.sse_retry,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            allow_origins: self.allow_origin,
            shutdown_timeout: self.shutdown_timeout,
            sweep_interval: self.sweep_interval,
            cobrowse: !self.no_cobrowse,
            agents_file: self.agents,
            agent_key: None,
            audit_file: self.audit,
            audit_chat_text: self.audit_chat_text,
            canned_file: self.canned,
            agent_session_ttl: self.agent_session_ttl,
            help_session_ttl: self.help_session_ttl,
            max_help_sessions: self.max_help_sessions,
        }
    }
}

/// `tandem agents add FILE NAME`: the password comes from standard input,
/// never from the command line (which `ps` and shell histories show).
fn agents_add(a: &AgentsAdd) -> ExitCode {
    use std::io::{BufRead, Write};
    let mut password = String::new();
    if std::io::stdin().lock().read_line(&mut password).is_err() {
        eprintln!("tandem: could not read the password from standard input");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\r', '\n']);
    let line = match tandem::cobrowse::agent_line(&a.name, password) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.file);
    match file.and_then(|mut f| writeln!(f, "{line}")) {
        Ok(()) => {
            eprintln!("tandem: added agent {} to {}", a.name, a.file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {}: {e}", a.file.display());
            ExitCode::from(1)
        }
    }
}

async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
        _ = term.recv() => log::info!("SIGTERM received"),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let serve = match parse_args().command {
        Command::Serve(s) => s,
        Command::Sub(s) => return sub(s),
        Command::Pub(p) => return publish(p),
        Command::Agents(AgentsCmd {
            command: AgentsSub::Add(a),
        }) => return agents_add(&a),
        Command::Audit(AuditCmd {
            command: AuditSub::Verify(v),
        }) => {
            return match tandem::cobrowse::verify_audit(&v.file) {
                Ok(ok) => {
                    println!("ok: {} lines, head {}", ok.lines, ok.head);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tandem: audit log {}: {e}", v.file.display());
                    ExitCode::from(1)
                }
            };
        }
    };
    let config = serve.config();
    let hub = match Hub::new(config.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = tandem::cobrowse::check_files(&config) {
        eprintln!("tandem: {e}");
        return ExitCode::from(2);
    }
    // Always the multi-thread scheduler, even for one worker: the
    // current-thread one was measured (benches/compare.sh) at a third of the
    // deliveries per CPU-second when 10,000 subscribers wake at once.
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        rt.worker_threads(config.threads);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tandem: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(1);
            }
        };
        let addr = listener.local_addr().map_or(config.listen, |a| a);
        log::info!("tandem listening on http://{addr}/");
        match tandem::serve(listener, hub, signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e}");
                ExitCode::from(1)
            }
        }
    })
}

// --- `tandem sub` and `tandem pub`: the Rust client on the command line ---

/// Like `argh::from_env`, but a usage error exits with 2 (0 is success, 1
/// a failure at run time).
fn parse_args() -> Cli {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cmd = args.first().map_or("tandem", |a| {
        std::path::Path::new(a)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(a)
    });
    let mut rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    // argh takes a lone `-` for an option; for `tandem pub` it means
    // standard input, which is also what no DATA means.
    if rest.first() == Some(&"pub") {
        rest.retain(|a| *a != "-");
    }
    Cli::from_args(&[cmd], &rest).unwrap_or_else(|early| match early.status {
        Ok(()) => {
            println!("{}", early.output);
            std::process::exit(0)
        }
        Err(()) => {
            eprintln!("{}\nRun {cmd} --help for more information.", early.output);
            std::process::exit(2)
        }
    })
}

/// Subscribe to a channel and print its events as they arrive, resuming
/// with the cursor across disconnects (like `nats sub`).
#[derive(FromArgs)]
#[argh(subcommand, name = "sub")]
struct SubCmd {
    /// the channel URL: http://HOST:PORT/ch/NAME[/TRANSPORT][?since=CURSOR]
    #[argh(positional)]
    url: String,
    /// sse, multipart, mixed, poll, jsonp or iframe (default: the URL's, else sse)
    #[argh(option)]
    transport: Option<tandem::client::Transport>,
    /// start after this cursor, EPOCH:ID or ID (0: all that is buffered; default: the newest event)
    #[argh(option)]
    since: Option<tandem::client::Cursor>,
    /// exit after this many events (gaps do not count)
    #[argh(option)]
    count: Option<u64>,
    /// text (each event's data on a line; gaps on stderr) or json (an object a line: id, epoch, cursor, type, data; gaps as {"gap":{...}})
    #[argh(option, default = "Format::Text")]
    format: Format,
}

/// How `tandem sub` prints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown format {s:?} (text or json)")),
        }
    }
}

/// Publish one event to a channel and print its id (like `redis-cli publish`).
#[derive(FromArgs)]
#[argh(subcommand, name = "pub")]
struct PubCmd {
    /// the channel URL: http://HOST:PORT/ch/NAME
    #[argh(positional)]
    url: String,
    /// the data; - or nothing reads standard input
    #[argh(positional)]
    data: Option<String>,
    /// the event type (default message)
    #[argh(option, long = "type")]
    kind: Option<String>,
    /// the data's media type (default none: UTF-8 data is text)
    #[argh(option)]
    content_type: Option<String>,
}

/// A runtime for one client command: one thread is plenty.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client error as an exit: 2 for bad input, 1 for the rest.
fn client_failure(e: &tandem::client::Error) -> ExitCode {
    eprintln!("tandem: {e}");
    ExitCode::from(if e.is_input() { 2 } else { 1 })
}

fn sub(cmd: SubCmd) -> ExitCode {
    use std::io::Write;
    use tandem::client::{Client, Delivery};

    if cmd.count == Some(0) {
        return ExitCode::SUCCESS;
    }
    let mut left = cmd.count;
    let client = Client::new().with_retries(None);
    client_runtime().block_on(async {
        let mut subscribe = client.subscribe(&cmd.url);
        if let Some(t) = cmd.transport {
            subscribe = subscribe.transport(t);
        }
        if let Some(c) = cmd.since {
            subscribe = subscribe.since(c);
        }
        let mut subscription = match subscribe.await {
            Ok(s) => s,
            Err(e) => return client_failure(&e),
        };
        let mut out = std::io::stdout().lock();
        while let Some(delivery) = subscription.next().await {
            let written = match delivery {
                Err(e) => return client_failure(&e),
                Ok(Delivery::Event(e)) => {
                    let w = match cmd.format {
                        // One line per event: data that ends its own
                        // line gets no second newline.
                        Format::Text if e.data.ends_with(b"\n") => out.write_all(&e.data),
                        Format::Text => out.write_all(&e.data).and_then(|()| out.write_all(b"\n")),
                        Format::Json => writeln!(out, "{}", event_json(&e)),
                    };
                    left = left.map(|n| n - 1);
                    w
                }
                Ok(Delivery::Gap(g)) => match cmd.format {
                    Format::Text => {
                        if g.reset {
                            eprintln!(
                                "tandem: the channel started over (lost {} of its new events)",
                                g.lost()
                            );
                        } else {
                            eprintln!("tandem: lost events {} to {}", g.from, g.to);
                        }
                        Ok(())
                    }
                    Format::Json => writeln!(out, "{}", gap_json(&g)),
                },
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => {}
                // A reader that has had enough (`| head`) is no failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem: writing to standard output: {e}");
                    return ExitCode::from(1);
                }
            }
            if left == Some(0) {
                return ExitCode::SUCCESS;
            }
        }
        ExitCode::SUCCESS
    })
}

/// `{"id":N,"epoch":E,"cursor":"E:N","type":T,"data":D}` (`data_b64` for
/// data that is not UTF-8; `content_type` and `from` where known).
fn event_json(e: &tandem::client::Event) -> String {
    use serde_json::{json, to_string};
    let mut s = format!(
        "{{\"id\":{},\"epoch\":{},\"cursor\":{},\"type\":{}",
        e.id,
        json!(e.epoch.map(|x| x.to_string())),
        json!(e.cursor().to_string()),
        json!(e.kind)
    );
    match e.text() {
        Some(t) => s.push_str(&format!(",\"data\":{}", json!(t))),
        None => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(&e.data);
            s.push_str(&format!(",\"data_b64\":{}", json!(b)));
        }
    }
    for (k, v) in [("content_type", &e.content_type), ("from", &e.from)] {
        if let Some(v) = v {
            s.push_str(&format!(",\"{k}\":{}", to_string(v).unwrap_or_default()));
        }
    }
    s.push('}');
    s
}

/// `{"gap":{"from":A,"to":B,"reset":R,"epoch":E}}`
fn gap_json(g: &tandem::client::Gap) -> String {
    serde_json::json!({"gap": {"from": g.from, "to": g.to, "reset": g.reset, "epoch": g.epoch.map(|x| x.to_string())}})
        .to_string()
}

fn publish(cmd: PubCmd) -> ExitCode {
    use std::io::Read;
    let data = match cmd.data.as_deref() {
        Some(d) if d != "-" => d.as_bytes().to_vec(),
        _ => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().lock().read_to_end(&mut buf) {
                eprintln!("tandem: reading standard input: {e}");
                return ExitCode::from(1);
            }
            buf
        }
    };
    let mut event = tandem::NewEvent::message(data);
    if let Some(k) = cmd.kind {
        event = event.with_kind(k);
    }
    event.content_type = cmd.content_type;
    let client = tandem::client::Client::new();
    match client_runtime().block_on(client.publish(&cmd.url, event)) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => client_failure(&e),
    }
}
