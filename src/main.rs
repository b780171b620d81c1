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

impl Serve {
    /// The co-browsing settings of the flags, unless `--no-cobrowse`.
    fn cobrowse_settings(&self) -> Option<tandem::cobrowse::Settings> {
        if self.no_cobrowse {
            return None;
        }
        let mut s = tandem::cobrowse::Settings::default()
            .audit_chat_text(self.audit_chat_text)
            .agent_session_ttl(self.agent_session_ttl)
            .help_session_ttl(self.help_session_ttl)
            .max_help_sessions(self.max_help_sessions);
        if let Some(p) = &self.agents {
            s = s.agents_file(p);
        }
        if let Some(p) = &self.audit {
            s = s.audit_file(p);
        }
        if let Some(p) = &self.canned {
            s = s.canned_file(p);
        }
        Some(s)
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
    let serve = match argh::from_env::<Cli>().command {
        Command::Serve(s) => s,
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
    let cobrowse = serve.cobrowse_settings();
    let config = serve.config();
    let hub = match Hub::new(config.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Err(e)) = cobrowse.as_ref().map(tandem::cobrowse::check_files) {
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
