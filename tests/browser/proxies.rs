//! Proxies to put between a client (raw socket or browser) and tandem.
//!
//! Two are the real thing, run from config templates kept in the repo:
//!
//! * [`Squid`]: a squid forward proxy (`tests/proxies/squid.conf`), what a
//!   corporate network puts between its browsers and the internet.
//! * [`Nginx`]: an nginx reverse proxy with nginx's defaults
//!   (`tests/proxies/nginx.conf`) or the recommended settings
//!   (`tests/proxies/nginx-http11.conf`), what an operator puts in front of
//!   tandem.
//!
//! Three are written here, each with one misbehaviour found in the wild:
//!
//! * [`BufferingProxy`]: holds response bodies until 16 KiB have accumulated
//!   (a buffering corporate proxy or anti-virus scanner).
//! * [`Http10Proxy`]: speaks HTTP/1.0 to the server and the client, one
//!   request per connection (old forward proxies).
//! * [`IdleCutProxy`]: cuts connections on which nothing passed for a while
//!   (load balancers, NAT boxes, firewalls), and counts what it accepted and
//!   cut.
//!
//! Every one listens on a free `127.0.0.1` port and is stopped when its value
//! is dropped, also when a test panics: squid and nginx are processes spawned
//! by us and killed by their PID, with their config, logs and temp files in a
//! temp dir of their own; the Rust proxies run on a thread of their own with
//! their own tokio runtime, so sync and async tests alike can use them.

#![allow(dead_code)] // not every user of the harness uses every helper

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long squid or nginx may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How many bytes [`BufferingProxy`] holds back.
pub const BUFFER_BYTES: usize = 16 * 1024;

/// The directory of the config templates.
pub fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxies")
}

/// A config template from `tests/proxies` with its `{{KEY}}`s filled in;
/// panics if a placeholder is left.
fn render(template: &str, vars: &[(&str, String)]) -> String {
    let path = templates_dir().join(template);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !text.contains("{{"),
        "{template}: a placeholder was not filled in"
    );
    text
}

/// A process-unique name: `{prefix}{pid}n{counter}`.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp dir of our own, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{}-{nanos}", unique(kind)));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        // Squid started as root drops to its own user (`proxy` on Debian)
        // before it opens its logs: let it write here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
        }
        TempDir(path)
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// A file in it, as text; empty if it is not there (yet).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
    /// Writes a file in it and returns its path.
    fn write(&self, name: &str, text: String) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on right now (the OS picks it; another process
/// could take it before ours binds, so starts are retried).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A spawned process, killed by its PID and reaped on drop.
#[derive(Debug)]
struct Process {
    what: &'static str,
    child: Child,
    /// Files the process leaves behind when killed, removed after it.
    leftovers: Vec<PathBuf>,
}

impl Process {
    fn spawn(what: &'static str, mut cmd: Command, dir: &TempDir) -> io::Result<Process> {
        let out = std::fs::File::create(dir.path().join("stdout.log"))?;
        let err = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Process {
            what,
            child,
            leftovers: Vec::new(),
        })
    }

    /// Waits until `port` accepts connections. Err (with the logs) if the
    /// process exits first or does not listen within [`START_TIMEOUT`].
    fn wait_listening(&mut self, port: u16, dir: &TempDir, logs: &[&str]) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        let explain = |why: String| {
            let mut msg = format!("{} on port {port}: {why}", self.what);
            for name in ["stdout.log", "stderr.log"].iter().chain(logs) {
                let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
                if !text.trim().is_empty() {
                    msg.push_str(&format!("\n--- {name}:\n{}", text.trim_end()));
                }
            }
            msg
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(explain(format!("exited early ({status})")));
            }
            if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(explain(format!("not listening after {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL, to this one PID: both servers run as a single process here
        // (squid -N without helpers, nginx without a master), so nothing is
        // orphaned, and neither has state worth a graceful stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.leftovers {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Starts a server up to three times (another process may grab the port
/// between `free_port` and the server's bind).
fn start_retrying<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match attempt() {
            Ok(v) => return v,
            Err(e) => errors.push(e),
        }
    }
    panic!("could not start {what}:\n{}", errors.join("\n\n"));
}

/// Whether a program is on the `PATH` (or at its Debian path).
pub fn have(program: &str) -> bool {
    which(program).is_some()
}

fn which(program: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn program(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed; the proxy tests need it (Debian: apt-get install {name})"
        )
    })
}

/// A squid forward proxy on `127.0.0.1:port`, from `tests/proxies/squid.conf`.
///
/// Clients send it absolute URLs (`GET http://127.0.0.1:8080/ch/c/sse
/// HTTP/1.1`); Chromium needs `--proxy-server=http://127.0.0.1:PORT
/// --proxy-bypass-list=<-loopback>` to send it loopback requests at all.
#[derive(Debug)]
pub struct Squid {
    /// The port it listens on.
    pub port: u16,
    /// Its process id.
    pub pid: u32,
    process: Process,
    dir: TempDir,
}

impl Squid {
    /// Starts squid with its default `read_timeout` (15 minutes).
    pub fn start() -> Squid {
        Squid::start_with_read_timeout(Duration::from_secs(15 * 60))
    }

    /// Starts squid cutting server responses that send nothing for
    /// `read_timeout` (whole seconds).
    pub fn start_with_read_timeout(read_timeout: Duration) -> Squid {
        let squid = program("squid");
        start_retrying("squid", || {
            let dir = TempDir::new("tandem-squid");
            let port = free_port();
            let conf = render(
                "squid.conf",
                &[
                    ("PORT", port.to_string()),
                    ("DIR", dir.path().display().to_string()),
                    (
                        "READ_TIMEOUT",
                        format!("{} seconds", read_timeout.as_secs().max(1)),
                    ),
                ],
            );
            let conf_path = dir.write("squid.conf", conf)?;
            // A service name of our own: squid names its shared memory
            // segments after it, so instances running side by side (and the
            // system's squid, if any) never share them.
            let service = unique("tandem");
            let mut cmd = Command::new(&squid);
            cmd.arg("-N")
                .arg("-n")
                .arg(&service)
                .arg("-f")
                .arg(&conf_path);
            let mut process = Process::spawn("squid", cmd, &dir).map_err(|e| e.to_string())?;
            // Killed squids leave their segments in /dev/shm; remove ours.
            for seg in ["metadata", "queues", "readers"] {
                process
                    .leftovers
                    .push(format!("/dev/shm/{service}-cf__{seg}.shm").into());
            }
            process.wait_listening(port, &dir, &["cache.log"])?;
            Ok(Squid {
                port,
                pid: process.pid(),
                process,
                dir,
            })
        })
    }

    /// The access log so far (one line per finished request).
    pub fn access_log(&self) -> String {
        self.dir.read("access.log")
    }

    /// The cache (diagnostic) log so far.
    pub fn cache_log(&self) -> String {
        self.dir.read("cache.log")
    }
}

/// Which nginx config to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxConfig {
    /// `tests/proxies/nginx.conf`: nothing but `proxy_pass`, so HTTP/1.0 to
    /// tandem and default buffering.
    Defaults,
    /// `tests/proxies/nginx-http11.conf`: the settings docs/deployment.md
    /// recommends (HTTP/1.1 upstream, keep-alive, Host, timeouts).
    Http11,
    /// `Defaults` plus `proxy_ignore_headers X-Accel-Buffering`: nginx
    /// buffers tandem's streams as it would any response. The control that
    /// shows what tandem's header does; not a config to deploy.
    DefaultsIgnoringAccelBuffering,
    /// `tests/proxies/nginx-pair.conf`: `Http11` balancing over two nodes
    /// (`Nginx::start_pair`).
    Pair,
}

impl NginxConfig {
    /// The template's file name.
    pub fn file(self) -> &'static str {
        match self {
            NginxConfig::Defaults | NginxConfig::DefaultsIgnoringAccelBuffering => "nginx.conf",
            NginxConfig::Http11 => "nginx-http11.conf",
            NginxConfig::Pair => "nginx-pair.conf",
        }
    }

    /// The rendered config.
    fn render(self, vars: &[(&str, String)]) -> String {
        let text = render(self.file(), vars);
        match self {
            NginxConfig::DefaultsIgnoringAccelBuffering => {
                let pass = "proxy_pass http://";
                assert!(text.contains(pass), "nginx.conf has no proxy_pass");
                text.replacen(
                    pass,
                    &format!("proxy_ignore_headers X-Accel-Buffering;\n            {pass}"),
                    1,
                )
            }
            _ => text,
        }
    }
}

/// An nginx reverse proxy on `127.0.0.1:port` in front of
/// `127.0.0.1:upstream`.
#[derive(Debug)]
pub struct Nginx {
    /// The port it listens on.
    pub port: u16,
    /// Its process id.
    pub pid: u32,
    /// Which config it runs.
    pub config: NginxConfig,
    process: Process,
    dir: TempDir,
}

impl Nginx {
    /// nginx with its defaults (`tests/proxies/nginx.conf`): HTTP/1.0 to the
    /// upstream, response buffering on.
    pub fn start(upstream_port: u16) -> Nginx {
        Nginx::start_with(upstream_port, NginxConfig::Defaults)
    }

    /// nginx with the recommended settings (`tests/proxies/nginx-http11.conf`).
    pub fn start_http11(upstream_port: u16) -> Nginx {
        Nginx::start_with(upstream_port, NginxConfig::Http11)
    }

    /// nginx with the given config.
    pub fn start_with(upstream_port: u16, config: NginxConfig) -> Nginx {
        Nginx::start_over(&[upstream_port], config)
    }

    /// nginx balancing (round robin) over two tandem nodes.
    pub fn start_pair(first: u16, second: u16) -> Nginx {
        Nginx::start_over(&[first, second], NginxConfig::Pair)
    }

    fn start_over(upstreams: &[u16], config: NginxConfig) -> Nginx {
        let nginx = program("nginx");
        start_retrying("nginx", || {
            let dir = TempDir::new("tandem-nginx");
            let port = free_port();
            let mut vars = vec![
                ("PORT", port.to_string()),
                ("UPSTREAM", upstreams[0].to_string()),
                ("DIR", dir.path().display().to_string()),
            ];
            if let Some(second) = upstreams.get(1) {
                vars.push(("UPSTREAM2", second.to_string()));
            }
            let conf = config.render(&vars);
            let conf_path = dir.write("nginx.conf", conf)?;
            let mut cmd = Command::new(&nginx);
            // -p and -e keep nginx away from its system prefix and error log
            // even before it has read the config.
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf_path);
            let mut process = Process::spawn("nginx", cmd, &dir).map_err(|e| e.to_string())?;
            process.wait_listening(port, &dir, &["error.log"])?;
            Ok(Nginx {
                port,
                pid: process.pid(),
                config,
                process,
                dir,
            })
        })
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        self.dir.read("error.log")
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        self.dir.read("access.log")
    }
}

/// A Rust proxy's listener, thread and runtime; stopped on drop.
#[derive(Debug)]
struct Background {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `serve(listener)` on a new thread with its own runtime until
    /// dropped. Dropping the runtime drops every connection task, which
    /// closes their sockets.
    fn spawn<F, Fut>(name: &str, serve: F) -> Background
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let std_listener = StdListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let addr = std_listener.local_addr().expect("proxy address");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    tokio::select! {
                        _ = serve(listener) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn the proxy thread");
        Background {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections forever, handling each in a task of its own.
async fn accept_loop<H, Fut>(listener: TcpListener, handle: H)
where
    H: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::task::spawn_local(handle(s));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Runs an accept loop on a `LocalSet`, so handlers need not be `Send`.
fn spawn_accepting<H, Fut>(name: &str, handle: H) -> Background
where
    H: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Background::spawn(name, move |listener| async move {
        tokio::task::LocalSet::new()
            .run_until(accept_loop(listener, handle))
            .await
    })
}

/// Reads until `buf` holds a whole HTTP head; returns its length, or `None`
/// if the peer closed first.
async fn read_head<R: AsyncRead + Unpin>(
    s: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Headers that belong to one hop and are never forwarded.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A request head rewritten for the upstream: this HTTP version, hop-by-hop
/// headers dropped, `Connection: close` (one request per connection).
fn rewrite_request(head: &[u8], version: &str) -> io::Result<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut out = format!(
        "{} {} {version}\r\n",
        req.method.unwrap_or("GET"),
        req.path.unwrap_or("/")
    )
    .into_bytes();
    for h in req.headers.iter().filter(|h| !hop_by_hop(h.name)) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(out)
}

/// A response head rewritten for the client: hop-by-hop headers dropped,
/// `Connection: close`, and the status line's version replaced if asked.
fn rewrite_response(head: &[u8], version: Option<&str>) -> io::Result<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(head)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let version = version.unwrap_or(if resp.version == Some(0) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    });
    let mut out = format!(
        "{version} {} {}\r\n",
        resp.code.unwrap_or(502),
        resp.reason.unwrap_or("")
    )
    .into_bytes();
    for h in resp.headers.iter().filter(|h| !hop_by_hop(h.name)) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(out)
}

/// What a reverse proxy does with a response body.
#[derive(Debug, Clone, Copy)]
enum BodyPolicy {
    /// Pass bytes on as they come.
    Stream,
    /// Hold bytes until this many have accumulated or the response ends.
    Hold(usize),
}

/// One request through a reverse proxy that closes every connection after
/// one response: reads the client's request head, sends it on rewritten to
/// `version`, copies the rest of the client's bytes (a request body) as they
/// come, and relays the response head and then the body by `policy` until
/// the upstream closes.
async fn one_request(
    mut client: TcpStream,
    upstream: SocketAddr,
    version: &'static str,
    answer_version: Option<&'static str>,
    policy: BodyPolicy,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let Some(len) = read_head(&mut client, &mut buf).await? else {
        return Ok(());
    };
    let mut up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    up.write_all(&rewrite_request(&buf[..len], version)?)
        .await?;
    up.write_all(&buf[len..]).await?;
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    // The request body, if any, as it comes; ends with either side.
    let upload = async move {
        let _ = tokio::io::copy(&mut client_r, &mut up_w).await;
        std::future::pending::<()>().await
    };
    let download = async move {
        let mut buf = Vec::new();
        let Some(len) = read_head(&mut up_r, &mut buf).await? else {
            return Ok(());
        };
        client_w
            .write_all(&rewrite_response(&buf[..len], answer_version)?)
            .await?;
        let mut held: Vec<u8> = buf.split_off(len);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let flush = match policy {
                BodyPolicy::Stream => !held.is_empty(),
                BodyPolicy::Hold(n) => held.len() >= n,
            };
            if flush {
                client_w.write_all(&held).await?;
                held.clear();
            }
            let n = up_r.read(&mut chunk).await?;
            if n == 0 {
                // The response ended: whatever was held goes now.
                client_w.write_all(&held).await?;
                client_w.shutdown().await?;
                return Ok::<(), io::Error>(());
            }
            held.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::select! {
        r = download => r,
        _ = upload => Ok(()),
    }
}

/// A reverse proxy that holds each response body until [`BUFFER_BYTES`]
/// (16 KiB) have accumulated or the response ends, then passes it on: a
/// buffering corporate proxy or anti-virus scanner. Heads pass at once.
///
/// One request per connection (`Connection: close` both ways), HTTP/1.1 to
/// the upstream; the body's bytes, chunk framing included, are relayed
/// untouched.
#[derive(Debug)]
pub struct BufferingProxy {
    /// The port it listens on.
    pub port: u16,
    bg: Background,
}

impl BufferingProxy {
    /// Starts a buffering proxy in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> BufferingProxy {
        let bg = spawn_accepting("buffering-proxy", move |client| async move {
            let _ = one_request(
                client,
                upstream,
                "HTTP/1.1",
                None,
                BodyPolicy::Hold(BUFFER_BYTES),
            )
            .await;
        });
        BufferingProxy {
            port: bg.addr.port(),
            bg,
        }
    }
}

/// A reverse proxy that speaks HTTP/1.0 both ways: each request goes to the
/// upstream as `HTTP/1.0` with `Connection: close`, and the response comes
/// back as `HTTP/1.0`, its body passed on as it arrives until the upstream
/// closes. One request per connection.
///
/// Headers other than the hop-by-hop ones pass untouched, so a server that
/// wrongly answered HTTP/1.0 with `Transfer-Encoding: chunked` would show it
/// to the client.
#[derive(Debug)]
pub struct Http10Proxy {
    /// The port it listens on.
    pub port: u16,
    bg: Background,
}

impl Http10Proxy {
    /// Starts an HTTP/1.0 proxy in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> Http10Proxy {
        let bg = spawn_accepting("http10-proxy", move |client| async move {
            let _ = one_request(
                client,
                upstream,
                "HTTP/1.0",
                Some("HTTP/1.0"),
                BodyPolicy::Stream,
            )
            .await;
        });
        Http10Proxy {
            port: bg.addr.port(),
            bg,
        }
    }
}

/// A TCP proxy that forwards bytes both ways and cuts both connections once
/// no byte has passed in either direction for `idle`, like a load balancer,
/// NAT box or firewall with an idle timeout. It counts the connections it
/// accepted and those it cut, so a test can tell a stream that stayed open
/// from one that was cut and came back.
#[derive(Debug)]
pub struct IdleCutProxy {
    /// The port it listens on.
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
    bg: Background,
}

impl IdleCutProxy {
    /// Starts an idle-cutting proxy in front of `upstream`.
    pub fn start(upstream: SocketAddr, idle: Duration) -> IdleCutProxy {
        let accepted = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), cut.clone());
        let bg = spawn_accepting("idle-cut-proxy", move |client| {
            a.fetch_add(1, Ordering::SeqCst);
            let cut = c.clone();
            async move {
                let _ = relay_until_idle(client, upstream, idle, &cut).await;
            }
        });
        IdleCutProxy {
            port: bg.addr.port(),
            accepted,
            cut,
            bg,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections cut for being idle so far.
    pub fn cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

/// Relays bytes both ways until either side closes, or until it cuts the
/// connection for idleness, counting the cut in `cut` before the sockets
/// close (a test that sees the close then finds it counted).
async fn relay_until_idle(
    mut client: TcpStream,
    upstream: SocketAddr,
    idle: Duration,
    cut: &AtomicUsize,
) -> io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = up.split();
    let mut a = vec![0u8; 16 * 1024];
    let mut b = vec![0u8; 16 * 1024];
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            r = cr.read(&mut a) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                uw.write_all(&a[..n]).await?;
            }
            r = ur.read(&mut b) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                cw.write_all(&b[..n]).await?;
            }
            _ = &mut idle_timer => {
                cut.fetch_add(1, Ordering::SeqCst);
                // Dropping both sockets (on return) closes both connections.
                return Ok(());
            }
        }
        idle_timer
            .as_mut()
            .reset(tokio::time::Instant::now() + idle);
    }
}

/// `addr()` and `url()` for each harness, from the port it listens on
/// (all of them listen on 127.0.0.1).
macro_rules! listens_on_loopback {
    ($($t:ty),*) => {$(
        impl $t {
            /// `127.0.0.1:port`.
            pub fn addr(&self) -> SocketAddr {
                SocketAddr::from(([127, 0, 0, 1], self.port))
            }

            /// `http://127.0.0.1:port`.
            pub fn url(&self) -> String {
                format!("http://{}", self.addr())
            }
        }
    )*};
}
listens_on_loopback!(Squid, Nginx, BufferingProxy, Http10Proxy, IdleCutProxy);
