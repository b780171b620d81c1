//! `tandem serve`: flags become a validated `Config`, then `tandem::serve`.
//! Nothing else lives here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use tandem::cobrowse::{Cobrowse, CobrowseConfig};
use tandem::http::HttpConfig;
use tandem::proxy::{ProxyConfig, Upstream};
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
    Token(TokenCmd),
}

/// Print a signed channel token (see docs/security.md, Channel tokens).
#[derive(FromArgs)]
#[argh(subcommand, name = "token")]
struct TokenCmd {
    /// the secret file, as given to serve --secret-file
    #[argh(option)]
    secret_file: PathBuf,
    /// the channel (or, with --prefix, the channel-name prefix) it is for
    #[argh(option)]
    channel: String,
    /// the channel is a prefix: the token is for every channel starting with it
    #[argh(switch)]
    prefix: bool,
    /// rights: sub, pub or sub,pub [sub]
    #[argh(option, default = "String::from(\"sub\")")]
    rights: String,
    /// how long it is valid from now [1h]
    #[argh(option, from_str_fn(duration), default = "Duration::from_secs(3600)")]
    ttl: Duration,
    /// the only client id (client= of requests) it is for
    #[argh(option)]
    client: Option<String>,
}

fn token_cmd(t: &TokenCmd) -> ExitCode {
    use tandem::token::{now_unix, Rights, Signer, Token};
    let made = (|| -> Result<String, String> {
        let signer = Signer::from_file(&t.secret_file)?;
        let rights = Rights::parse(&t.rights)?;
        if !t.prefix || !t.channel.is_empty() {
            tandem::check_channel(&t.channel).map_err(|e| e.message().to_string())?;
        }
        if let Some(c) = &t.client {
            if c.is_empty() || c.len() > 64 {
                return Err("--client must be 1 to 64 bytes".into());
            }
        }
        let ttl = t.ttl.as_secs().max(1);
        Ok(signer.mint(&Token {
            channel: t.channel.clone(),
            prefix: t.prefix,
            rights,
            expires: now_unix() + ttl,
            client: t.client.clone(),
        }))
    })();
    match made {
        Ok(tok) => {
            println!("{tok}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(2)
        }
    }
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

/// Verify the hash chain of an audit log (or of every node's log, checked
/// together); prints each one's line count and head hash.
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
struct AuditVerify {
    /// the audit log (--audit FILE of serve); with --redis, one per node
    #[argh(positional, greedy)]
    files: Vec<PathBuf>,
}

/// Run the push server (with its demo pages) until SIGINT or SIGTERM.
///
/// Durations take a unit: 500ms, 15s, 10m, 1h (a bare number is seconds).
/// A flag left out keeps the library's default (`tandem::Config`,
/// `tandem::http::HttpConfig`, `tandem::cobrowse` settings), shown in brackets.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// address to listen on [127.0.0.1:8080]
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8080))")]
    listen: SocketAddr,
    /// worker threads [one per core]
    #[argh(option)]
    threads: Option<usize>,
    /// events kept per channel for resume [256]
    #[argh(option)]
    buffer_events: Option<usize>,
    /// how long events stay buffered [10m]
    #[argh(option, from_str_fn(duration))]
    buffer_age: Option<Duration>,
    /// largest event in bytes [65536]
    #[argh(option)]
    max_event_bytes: Option<usize>,
    /// most parts in one multipart/form-data publish [64]
    #[argh(option)]
    max_parts: Option<usize>,
    /// most events in one long-poll answer [100]
    #[argh(option)]
    poll_batch: Option<usize>,
    /// long-poll hold time when the client names none [25s]
    #[argh(option, from_str_fn(duration))]
    poll_timeout: Option<Duration>,
    /// longest long-poll hold a client may ask for [2m]
    #[argh(option, from_str_fn(duration))]
    poll_timeout_max: Option<Duration>,
    /// heartbeat interval on idle streams [15s]
    #[argh(option, from_str_fn(duration))]
    heartbeat: Option<Duration>,
    /// bytes of padding at the start of streams [2048]
    #[argh(option)]
    stream_padding: Option<usize>,
    /// reconnect delay told to SSE clients [2s]
    #[argh(option, from_str_fn(duration))]
    sse_retry: Option<Duration>,
    /// how often idle channels are swept away [30s]
    #[argh(option, from_str_fn(duration))]
    sweep_interval: Option<Duration>,
    /// channels clients may make; a new name beyond it gets 503 [100000]
    #[argh(option)]
    max_channels: Option<usize>,
    /// open connections beyond which new ones get 503 [10000]
    #[argh(option)]
    max_connections: Option<usize>,
    /// close a connection that sends no complete request head for this long, from its opening or its last answer [75s]
    #[argh(option, from_str_fn(duration))]
    idle_timeout: Option<Duration>,
    /// an origin allowed by CORS, or *; repeat for more [same origin only]
    #[argh(option)]
    allow_origin: Vec<String>,
    /// how long shutdown waits for connections to drain [10s]
    #[argh(option, from_str_fn(duration))]
    shutdown_timeout: Option<Duration>,
    /// largest request head (request line and headers) in bytes; larger ones get 431 [32768]
    #[argh(option)]
    max_head_bytes: Option<usize>,
    /// longest request URL (path and query) in bytes; longer ones get 414 [8192]
    #[argh(option)]
    max_url_bytes: Option<usize>,
    /// close a connection whose request head takes longer than this from its first byte (slowloris), answering 408 [10s]
    #[argh(option, from_str_fn(duration))]
    head_timeout: Option<Duration>,
    /// answer 408 and close when a request body (Content-Length or chunked) takes longer than this to arrive [30s]
    #[argh(option, from_str_fn(duration))]
    body_timeout: Option<Duration>,
    /// open connections one client address may hold; beyond, new ones get 429 (a trusted proxy's are not counted) [1000]
    #[argh(option)]
    max_connections_per_addr: Option<usize>,
    /// publishes one client address may make per second (bursts of as many); beyond, 429 with Retry-After; 0 for no limit [0]
    #[argh(option)]
    publishes_per_second: Option<u32>,
    /// new help sessions and classes one client address may open per minute; beyond, 429 with Retry-After; 0 for no limit [10]
    #[argh(option)]
    sessions_per_minute: Option<u32>,
    /// a reverse proxy (address or CIDR block) whose Forwarded / X-Forwarded-For name the client; repeat for more; `none` trusts none [127.0.0.0/8 and ::1]
    #[argh(option)]
    trusted_proxy: Vec<String>,
    /// turn co-browsing off (/cobrowse.js, /agent, /cobrowse/..., /portal/)
    #[argh(switch)]
    no_cobrowse: bool,
    /// co-browsing agent accounts, name:argon2-hash lines (see `tandem agents add`) [a per-run key, printed]
    #[argh(option)]
    agents: Option<PathBuf>,
    /// append the co-browsing audit log (hash-chained JSON lines) to this file
    #[argh(option)]
    audit: Option<PathBuf>,
    /// write chat text into the audit log [its length only]
    #[argh(switch)]
    audit_chat_text: bool,
    /// canned chat replies for agents, one a line [built-in ones]
    #[argh(option)]
    canned: Option<PathBuf>,
    /// how long an agent stays signed in [8h]
    #[argh(option, from_str_fn(duration))]
    agent_session_ttl: Option<Duration>,
    /// how long a help session lives at most [4h]
    #[argh(option, from_str_fn(duration))]
    help_session_ttl: Option<Duration>,
    /// most help sessions open at once [1000]
    #[argh(option)]
    max_help_sessions: Option<usize>,
    /// a customer whose page has not been heard from for this long shows as gone [45s]
    #[argh(option, from_str_fn(duration))]
    presence_timeout: Option<Duration>,
    /// most followers in one class (classroom mode) [100]
    #[argh(option)]
    max_class_followers: Option<usize>,
    /// share every channel with the other nodes through this Redis, redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS); without it one process keeps everything in memory. With --redis-cluster, a node of the cluster (repeat for more)
    #[argh(option)]
    redis: Vec<String>,
    /// the --redis addresses are nodes of a Redis Cluster: channels spread over its shards, announced on sharded pub/sub
    #[argh(switch)]
    redis_cluster: bool,
    /// read the Redis password from this file (its one line) instead of the URL
    #[argh(option)]
    redis_password_file: Option<PathBuf>,
    /// with rediss://, a PEM file of the CA certificates the Redis server's certificate is checked against [the system's]
    #[argh(option)]
    redis_ca: Option<PathBuf>,
    /// put tandem in front of this web application, http://HOST:PORT or https://HOST:PORT: requests outside the tandem prefix go to it
    #[argh(option)]
    upstream: Option<Upstream>,
    /// with an https --upstream, a PEM file of the CA certificates its certificate is checked against [the system's]
    #[argh(option)]
    upstream_ca: Option<PathBuf>,
    /// with --upstream, where tandem's own routes live [/_tandem]
    #[argh(option)]
    tandem_prefix: Option<String>,
    /// with --upstream, a Host the proxy answers to besides the listen address (name: any port; name:port: that port); repeat for more
    #[argh(option)]
    public_host: Vec<String>,
    /// with --upstream, how long the upstream may take to send its response head [1m]
    #[argh(option, from_str_fn(duration))]
    upstream_timeout: Option<Duration>,
    /// serve TLS (HTTP/1.1 and HTTP/2) with this PEM certificate chain; needs --tls-key; reloaded on SIGHUP
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the PEM private key of --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// with TLS, send Strict-Transport-Security: max-age=SECONDS [off]
    #[argh(option)]
    hsts: Option<u64>,
    /// require signed channel tokens, checked with the secret in this file (32 bytes or more; read again on SIGHUP, the previous secret accepted until the next SIGHUP); see --tokens-for
    #[argh(option)]
    secret_file: Option<PathBuf>,
    /// with --secret-file, which channels need a token: all, none, or a channel-name prefix (repeatable) [all]
    #[argh(option)]
    tokens_for: Vec<String>,
}

impl Serve {
    /// `--secret-file` and `--tokens-for`, read and checked.
    fn tokens(&self) -> Result<Option<tandem::token::TokenPolicy>, String> {
        use tandem::token::{Needs, Signer, TokenPolicy};
        let Some(path) = &self.secret_file else {
            if !self.tokens_for.is_empty() {
                return Err("--tokens-for needs --secret-file".into());
            }
            return Ok(None);
        };
        let signer = Signer::from_file(path)?;
        let needs = match self
            .tokens_for
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
        {
            [] | ["all"] => Needs::All,
            ["none"] => Needs::None,
            ref p if p.iter().any(|p| *p == "all" || *p == "none") => {
                return Err("--tokens-for all or none cannot be mixed with prefixes".into())
            }
            ref p => Needs::Prefixes(p.iter().map(|p| p.to_string()).collect()),
        };
        Ok(Some(TokenPolicy { signer, needs }))
    }
    /// `--tls-cert`, `--tls-key` and `--hsts`, read and checked.
    fn tls(&self) -> Result<Option<tandem::TlsConfig>, String> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.hsts.is_some() => {
                return Err("--hsts needs TLS (--tls-cert and --tls-key)".into())
            }
            (None, None) => return Ok(None),
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
            (Some(c), Some(k)) => (c, k),
        };
        let tls = tandem::TlsConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?;
        Ok(Some(match self.hsts {
            Some(secs) => tls.with_hsts(Duration::from_secs(secs)),
            None => tls,
        }))
    }
}

/// On every SIGHUP, reads the certificate and the token secret again; a
/// bad file keeps what was there. A changed secret is rotated in: the one
/// before it is still accepted until the next SIGHUP.
async fn reload_on_sighup(
    tls: Option<tandem::TlsConfig>,
    secret: Option<(PathBuf, tandem::Service)>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    while hup.recv().await.is_some() {
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => log::info!("SIGHUP: tls certificate and key reloaded"),
                Err(e) => log::warn!("SIGHUP: tls reload failed, keeping the old certificate: {e}"),
            }
        }
        if let Some((path, service)) = &secret {
            match tandem::token::Signer::from_file(path).map(|s| service.rotate_token_secret(s)) {
                Ok(true) => log::info!(
                    "SIGHUP: token secret rotated; tokens of the previous secret are accepted until the next SIGHUP"
                ),
                Ok(false) => log::info!(
                    "SIGHUP: token secret unchanged; tokens of any previous secret are now refused"
                ),
                Err(e) => log::warn!("SIGHUP: token secret not reloaded, keeping the old one: {e}"),
            }
        }
    }
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

/// `cfg.field = flag` for each flag that was given: the flags are laid over
/// the library's defaults, which are written once, in the library.
macro_rules! lay {
    ($cfg:expr, $flags:expr, $($field:ident),* $(,)?) => {
        $(if let Some(v) = $flags.$field.clone() {
            $cfg.$field = v;
        })*
    };
}

impl Serve {
    /// The library's settings with the flags laid over them; `None` for
    /// co-browsing with `--no-cobrowse`.
    fn config(&self) -> (Config, HttpConfig, Option<CobrowseConfig>) {
        let mut core = Config::default();
        lay!(
            core,
            self,
            buffer_events,
            buffer_age,
            max_event_bytes,
            max_parts,
            poll_batch,
            poll_timeout,
            poll_timeout_max,
            heartbeat,
            stream_padding,
            sse_retry,
            sweep_interval,
            max_channels,
        );
        let mut http = HttpConfig::default();
        lay!(
            http,
            self,
            max_connections,
            idle_timeout,
            shutdown_timeout,
            max_head_bytes,
            max_url_bytes,
            head_timeout,
            body_timeout,
            max_connections_per_addr,
            publishes_per_second,
            sessions_per_minute,
        );
        if !self.trusted_proxy.is_empty() {
            http.trusted_proxies = self
                .trusted_proxy
                .iter()
                .filter(|p| p.as_str() != "none")
                .cloned()
                .collect();
        }
        if !self.allow_origin.is_empty() {
            http.allow_origins = self.allow_origin.clone();
        }
        let mut cb = CobrowseConfig::default();
        lay!(
            cb,
            self,
            agent_session_ttl,
            help_session_ttl,
            max_help_sessions,
            presence_timeout,
            max_class_followers
        );
        cb.agents_file = self.agents.clone();
        cb.audit_file = self.audit.clone();
        cb.audit_chat_text = self.audit_chat_text;
        cb.canned_file = self.canned.clone();
        (core, http, (!self.no_cobrowse).then_some(cb))
    }
}

impl Serve {
    /// The Redis settings of `--redis*`; `None` without `--redis`. A flag
    /// that needs another, or a password file that cannot be read or is
    /// empty, is a usage error.
    fn redis_options(&self) -> Result<Option<tandem::RedisOptions>, String> {
        if self.redis.is_empty() {
            let lone = [
                (self.redis_cluster, "--redis-cluster"),
                (self.redis_password_file.is_some(), "--redis-password-file"),
                (self.redis_ca.is_some(), "--redis-ca"),
            ];
            if let Some((_, flag)) = lone.iter().find(|(set, _)| *set) {
                return Err(format!("{flag} needs --redis"));
            }
            return Ok(None);
        }
        if self.redis.len() > 1 && !self.redis_cluster {
            return Err(
                "several --redis are the nodes of a Redis Cluster: add --redis-cluster \
                 (one Redis server takes one --redis)"
                    .into(),
            );
        }
        let mut opts = if self.redis_cluster {
            tandem::RedisOptions::cluster(&self.redis)
        } else {
            tandem::RedisOptions::new(&self.redis[0])
        };
        if let Some(path) = &self.redis_password_file {
            let password =
                tandem::RedisOptions::read_password_file(path).map_err(|e| e.to_string())?;
            opts = opts.password(&password);
        }
        if let Some(path) = &self.redis_ca {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --redis-ca {}: {e}", path.display()))?;
            opts = opts.ca_pem(pem);
        }
        Ok(Some(opts))
    }

    /// The proxy's settings with `--upstream`: the hosts it answers to are
    /// the listen address (`localhost:PORT` too on a loopback or unspecified
    /// address) and every `--public-host`.
    fn proxy(&self, addr: SocketAddr) -> Option<ProxyConfig> {
        let mut cfg = ProxyConfig::new(self.upstream.clone()?);
        if let Some(p) = &self.tandem_prefix {
            cfg.prefix = p.clone();
        }
        if let Some(t) = self.upstream_timeout {
            cfg.response_timeout = t;
        }
        if let Some(ca) = &self.upstream_ca {
            cfg = cfg.upstream_ca(ca);
        }
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            hosts.push(format!("localhost:{}", addr.port()));
        }
        if addr.ip().is_unspecified() {
            hosts.push(format!("127.0.0.1:{}", addr.port()));
        }
        hosts.extend(self.public_host.iter().cloned());
        Some(cfg.hosts(hosts))
    }
}

/// `tandem agents add FILE NAME`: the password comes from standard input,
/// never from the command line (which `ps` and shell histories show).
/// `tandem audit verify FILE...`: one log as before, several together.
fn audit_verify(files: &[PathBuf]) -> ExitCode {
    match files {
        [] => {
            eprintln!("tandem: audit verify needs the audit log (or every node's log)");
            ExitCode::from(2)
        }
        [one] => match tandem::cobrowse::verify_audit(one) {
            Ok(ok) => {
                println!("ok: {} lines, head {}", ok.lines, ok.head);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tandem: audit log {}: {e}", one.display());
                ExitCode::from(1)
            }
        },
        many => {
            let paths: Vec<&std::path::Path> = many.iter().map(PathBuf::as_path).collect();
            match tandem::cobrowse::verify_audit_logs(&paths) {
                Ok(found) => {
                    for (path, ok) in many.iter().zip(&found) {
                        println!(
                            "ok: {}: {} lines, head {}",
                            path.display(),
                            ok.lines,
                            ok.head
                        );
                    }
                    let lines: usize = found.iter().map(|v| v.lines).sum();
                    println!("ok: {} logs, {lines} lines", found.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tandem: audit logs: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

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
        Command::Token(t) => return token_cmd(&t),
        Command::Agents(AgentsCmd {
            command: AgentsSub::Add(a),
        }) => return agents_add(&a),
        Command::Audit(AuditCmd {
            command: AuditSub::Verify(v),
        }) => {
            return audit_verify(&v.files);
        }
    };
    let (config, http, cobrowse) = serve.config();
    let hub = match Hub::new(config.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = http.validate() {
        eprintln!("tandem: {e}");
        return ExitCode::from(2);
    }
    let tls = match serve.tls() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Err(e)) = serve.proxy(serve.listen).map(|p| p.validate()) {
        eprintln!("tandem: {e}");
        return ExitCode::from(2);
    }
    let checked = cobrowse.as_ref().map(|cb| {
        cb.validate()?;
        tandem::cobrowse::check_files(cb)
    });
    if let Some(Err(e)) = checked {
        eprintln!("tandem: {e}");
        return ExitCode::from(2);
    }
    let tokens = match serve.tokens() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    // Read again on SIGHUP.
    let secret_file = serve.secret_file.clone();
    let redis = match serve.redis_options() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    // Always the multi-thread scheduler, even for one worker: the
    // current-thread one was measured (benches/compare.sh) at a third of the
    // deliveries per CPU-second when 10,000 subscribers wake at once.
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = serve.threads.filter(|&n| n > 0) {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        // With --redis, the channels are shared: loaded from Redis before
        // this node listens, so it serves no subscriber without them.
        let hub = match redis {
            None => hub,
            Some(options) => match Hub::with_redis_options(config.clone(), options).await {
                Ok(h) => {
                    log::info!("channels shared through redis ({} loaded)", h.channel_count());
                    h
                }
                Err(e) => {
                    eprintln!("tandem: {e}");
                    // A URL that does not parse is a usage error.
                    return ExitCode::from(if e.is_bad_request() { 2 } else { 1 });
                }
            },
        };
        let listener = match tokio::net::TcpListener::bind(serve.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tandem: cannot listen on {}: {e}", serve.listen);
                return ExitCode::from(1);
            }
        };
        let addr = listener.local_addr().map_or(serve.listen, |a| a);
        // The application the binary serves: channels, co-browsing with its
        // demo portal, and the live status feed. A library user picks.
        let mut service = tandem::Service::new(hub.clone())
            .with_config(http)
            .expect("validated before the runtime started");
        if let Some(policy) = tokens {
            service = service.with_tokens(policy);
        }
        // Co-browsing first: the proxy shares customers' sessions with it.
        let cobrowse = match cobrowse.map(|cb| Cobrowse::new(hub.clone(), cb)) {
            None => None,
            Some(Ok(cb)) => Some(cb.with_portal()),
            Some(Err(e)) => {
                eprintln!("tandem: {e}");
                return ExitCode::from(2);
            }
        };
        // Where tandem's own routes live: the root, or the proxy's prefix.
        let mut own_prefix = String::new();
        if let Some(mut proxy) = serve.proxy(addr) {
            own_prefix = proxy.prefix.clone();
            if addr.ip().is_unspecified() && serve.public_host.is_empty() {
                log::warn!(
                    "proxy: listening on {addr} but answering only to Host localhost and 127.0.0.1; name the others with --public-host"
                );
            }
            log::info!(
                "proxy: every request outside {} goes to {}",
                proxy.prefix,
                proxy.upstream
            );
            if let Some(cb) = &cobrowse {
                proxy = proxy.cobrowse(cb.clone());
            }
            // Validated before, but the CA file is read again here (it
            // may have changed), as are the system's CA certificates.
            service = match service.with_proxy(proxy) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tandem: {e}");
                    return ExitCode::from(2);
                }
            };
        }
        if let Some(cb) = cobrowse {
            if let Some(link) = cb.sign_in_link(addr) {
                let link = link.replacen("/agent#", &format!("{own_prefix}/agent#"), 1);
                let link = match &tls {
                    Some(_) => link.replacen("http://", "https://", 1),
                    None => link,
                };
                // Printed, not logged: the key must reach the operator
                // whatever RUST_LOG says. It sits in the URL's fragment,
                // which no browser sends.
                eprintln!("tandem: agent sign-in for this run: {link}");
            }
            service = service.with_app(std::sync::Arc::new(cb));
        }
        tokio::spawn(tandem::status::run(hub, service.shutdown().clone()));
        if tls.is_some() || secret_file.is_some() {
            let secret = secret_file.map(|path| (path, service.clone()));
            tokio::spawn(reload_on_sighup(tls.clone(), secret));
        }
        let server = tandem::serve(listener, service).with_graceful_shutdown(signal());
        let server = match tls {
            Some(tls) => {
                log::info!("tandem listening on https://{addr}/ (HTTP/1.1 and HTTP/2)");
                server.with_tls(tls)
            }
            None => {
                log::info!("tandem listening on http://{addr}/");
                if !addr.ip().is_loopback() {
                    // Printed, not logged: whatever RUST_LOG says.
                    eprintln!(
                        "tandem: warning: listening on {addr} without TLS: events, cookies and agent sign-ins cross the network in plaintext; serve HTTPS with --tls-cert FILE --tls-key FILE (PEM), or put tandem behind a TLS-terminating proxy"
                    );
                }
                server
            }
        };
        match server.await {
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
    /// the channel URL: http[s]://HOST:PORT/ch/NAME[/TRANSPORT][?since=CURSOR]
    #[argh(positional)]
    url: String,
    /// check an https server's certificate against this PEM file's CA certificates instead of the system's
    #[argh(option)]
    ca: Option<PathBuf>,
    /// a channel token, sent as Authorization: Bearer (for a server with --secret-file)
    #[argh(option)]
    token: Option<String>,
    /// a file holding the channel token, read again when the token in it nears its expiry (a renewer keeps it fresh)
    #[argh(option)]
    token_file: Option<PathBuf>,
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
    /// the channel URL: http[s]://HOST:PORT/ch/NAME
    #[argh(positional)]
    url: String,
    /// check an https server's certificate against this PEM file's CA certificates instead of the system's
    #[argh(option)]
    ca: Option<PathBuf>,
    /// a channel token, sent as Authorization: Bearer (for a server with --secret-file)
    #[argh(option)]
    token: Option<String>,
    /// a file holding the channel token, read again when the token in it nears its expiry (a renewer keeps it fresh)
    #[argh(option)]
    token_file: Option<PathBuf>,
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

/// The client, told of `--ca`, `--token` and `--token-file` when given.
fn configured(
    mut client: tandem::client::Client,
    ca: Option<&Path>,
    token: Option<String>,
    token_file: Option<PathBuf>,
) -> Result<tandem::client::Client, String> {
    if let Some(path) = ca {
        client = client.with_ca_file(path).map_err(|e| e.to_string())?;
    }
    match (token, token_file) {
        (Some(_), Some(_)) => Err("--token and --token-file: give one".into()),
        (Some(t), None) => Ok(client.with_token(t)),
        (None, Some(path)) => {
            // Read now, so that a wrong path is a usage error at once.
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            Ok(client.with_token_source(move || {
                let path = path.clone();
                async move {
                    std::fs::read_to_string(&path).map_err(|e| {
                        format!("cannot read the token file {}: {e}", path.display()).into()
                    })
                }
            }))
        }
        (None, None) => Ok(client),
    }
}

/// A usage error of a client command: said, exit status 2.
fn usage_failure(msg: &str) -> ExitCode {
    eprintln!("tandem: {msg}");
    ExitCode::from(2)
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
    let client = match configured(client, cmd.ca.as_deref(), cmd.token, cmd.token_file) {
        Ok(client) => client,
        Err(e) => return usage_failure(&e),
    };
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
    let client = match configured(client, cmd.ca.as_deref(), cmd.token, cmd.token_file) {
        Ok(client) => client,
        Err(e) => return usage_failure(&e),
    };
    match client_runtime().block_on(client.publish(&cmd.url, event)) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => client_failure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration as the help writes it: `10m`, `75s`, `8h`.
    fn shown(d: Duration) -> String {
        match d.as_secs() {
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    }

    /// Each default is written once, in the library; the help only shows
    /// it, and this keeps what it shows true.
    #[test]
    fn help_shows_the_library_defaults() {
        let help = match Cli::from_args(&["tandem"], &["serve", "--help"]) {
            Err(e) => e.output,
            Ok(_) => panic!("--help parsed as a command"),
        };
        let (c, h) = (Config::default(), HttpConfig::default());
        let cb = CobrowseConfig::default();
        let p = ProxyConfig::new("http://127.0.0.1:9000".parse().unwrap());
        let expected = [
            ("--buffer-events", c.buffer_events.to_string()),
            ("--buffer-age", shown(c.buffer_age)),
            ("--max-event-bytes", c.max_event_bytes.to_string()),
            ("--max-parts", c.max_parts.to_string()),
            ("--poll-batch", c.poll_batch.to_string()),
            ("--poll-timeout ", shown(c.poll_timeout)),
            ("--poll-timeout-max", shown(c.poll_timeout_max)),
            ("--heartbeat", shown(c.heartbeat)),
            ("--stream-padding", c.stream_padding.to_string()),
            ("--sse-retry", shown(c.sse_retry)),
            ("--sweep-interval", shown(c.sweep_interval)),
            ("--max-channels", c.max_channels.to_string()),
            ("--max-connections", h.max_connections.to_string()),
            ("--idle-timeout", shown(h.idle_timeout)),
            ("--shutdown-timeout", shown(h.shutdown_timeout)),
            ("--max-head-bytes", h.max_head_bytes.to_string()),
            ("--max-url-bytes", h.max_url_bytes.to_string()),
            ("--head-timeout", shown(h.head_timeout)),
            ("--body-timeout", shown(h.body_timeout)),
            (
                "--max-connections-per-addr",
                h.max_connections_per_addr.to_string(),
            ),
            ("--publishes-per-second", h.publishes_per_second.to_string()),
            ("--sessions-per-minute", h.sessions_per_minute.to_string()),
            ("--agent-session-ttl", shown(cb.agent_session_ttl)),
            ("--help-session-ttl", shown(cb.help_session_ttl)),
            ("--max-help-sessions", cb.max_help_sessions.to_string()),
            ("--presence-timeout", shown(cb.presence_timeout)),
            ("--max-class-followers", cb.max_class_followers.to_string()),
            ("--tandem-prefix", p.prefix.clone()),
            ("--upstream-timeout", shown(p.response_timeout)),
            (
                "--upstream-ca",
                match &p.upstream_ca {
                    None => "the system's".into(),
                    Some(f) => f.display().to_string(),
                },
            ),
        ];
        let lines: Vec<&str> = help.lines().collect();
        for (flag, value) in expected {
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("no {flag} in the help:\n{help}"));
            // A flag's description may wrap onto the lines that follow.
            let line = lines[at..]
                .iter()
                .enumerate()
                .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with("--"))
                .map(|(_, l)| l.trim())
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                line.trim_end().ends_with(&format!("[{value}]")),
                "{flag} shows another default than the library's {value}: {line}"
            );
        }
    }

    #[test]
    fn upstream_flags() {
        let parse = |args: &[&str]| match Cli::from_args(&["tandem"], args) {
            Ok(Cli {
                command: Command::Serve(s),
            }) => Ok(s),
            Ok(_) => panic!("not serve"),
            Err(e) => Err(e.output),
        };
        let s = parse(&["serve"]).unwrap();
        assert!(s.proxy(s.listen).is_none());
        let s = parse(&[
            "serve",
            "--upstream",
            "http://127.0.0.1:9000",
            "--public-host",
            "app.example",
            "--tandem-prefix",
            "/_t",
        ])
        .unwrap();
        let p = s.proxy(SocketAddr::from(([127, 0, 0, 1], 8080))).unwrap();
        p.validate().unwrap();
        assert_eq!(p.prefix, "/_t");
        assert_eq!(
            p.hosts,
            ["127.0.0.1:8080", "localhost:8080", "app.example"].map(String::from)
        );
        assert!(p.upstream_ca.is_none());
        let s = parse(&[
            "serve",
            "--upstream",
            "https://app.internal",
            "--upstream-ca",
            "/etc/app/ca.pem",
        ])
        .unwrap();
        let p = s.proxy(SocketAddr::from(([127, 0, 0, 1], 8080))).unwrap();
        assert!(p.upstream.is_https() && p.upstream.port() == 443);
        assert_eq!(
            p.upstream_ca.as_deref(),
            Some(std::path::Path::new("/etc/app/ca.pem"))
        );
        // Refused before listening, naming the flag and the file.
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("upstream-ca /etc/app/ca.pem: cannot read it"),
            "{e}"
        );
        let Err(e) = parse(&["serve", "--upstream", "ftp://127.0.0.1:9000"]) else {
            panic!("an ftp upstream was taken");
        };
        assert!(
            e.contains("must be http://host:port or https://host:port"),
            "{e}"
        );
    }

    #[test]
    fn flags_are_laid_over_the_defaults() {
        let Command::Serve(s) = Cli::from_args(
            &["tandem"],
            &[
                "serve",
                "--heartbeat",
                "3s",
                "--max-connections",
                "7",
                "--max-class-followers",
                "20",
            ],
        )
        .unwrap()
        .command
        else {
            panic!("not serve")
        };
        let (core, http, cb) = s.config();
        assert_eq!(cb.unwrap().max_class_followers, 20);
        assert_eq!(core.heartbeat, Duration::from_secs(3));
        assert_eq!(http.max_connections, 7);
        assert_eq!(core.buffer_events, Config::default().buffer_events);
        assert_eq!(http.idle_timeout, HttpConfig::default().idle_timeout);
        assert_eq!(http.trusted_proxies, HttpConfig::default().trusted_proxies);
    }

    #[test]
    fn limit_flags() {
        let serve = |args: &[&str]| {
            let mut all = vec!["serve"];
            all.extend_from_slice(args);
            let Command::Serve(s) = Cli::from_args(&["tandem"], &all).unwrap().command else {
                panic!("not serve")
            };
            s.config().1
        };
        let http = serve(&[
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "fd00::/8",
            "--publishes-per-second",
            "50",
            "--head-timeout",
            "2s",
            "--max-head-bytes",
            "65536",
        ]);
        assert_eq!(http.trusted_proxies, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(http.publishes_per_second, 50);
        assert_eq!(http.head_timeout, Duration::from_secs(2));
        assert_eq!(http.max_head_bytes, 65536);
        http.validate().unwrap();
        assert!(serve(&["--trusted-proxy", "none"])
            .trusted_proxies
            .is_empty());
        let bad = serve(&["--trusted-proxy", "proxy.example"]);
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("trusted-proxy"));
    }
}
