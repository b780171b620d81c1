//! Reaching Redis: one server or a cluster, plain or TLS (`rediss://`), a
//! password from the URL or from a file, and [`RedisConn`], the connection
//! every module shares (a `ConnectionManager` on one server, redis-rs's
//! cluster connection on a cluster; both reconnect by themselves).

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, ProtocolVersion,
    RedisConnectionInfo, RedisFuture, TlsCertificates, Value,
};

use crate::error::Error;

/// Longest a command may take before the publish is refused (503).
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest each step of connecting at start may take (a TLS handshake on a
/// loaded machine takes a while): then it is an error, never a hang.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the Redis of `--redis` is and how to reach it (`docs/scaling.md`).
///
/// ```
/// let one = tandem::RedisOptions::new("redis://10.0.0.5:6379/0");
/// let cluster = tandem::RedisOptions::cluster(["redis://10.0.0.5:7000", "redis://10.0.0.6:7000"])
///     .password("s3cret");
/// # let _ = (one, cluster);
/// ```
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// `redis://[:PASSWORD@]HOST:PORT/DB`, or `rediss://` for TLS. With
    /// [`RedisOptions::is_cluster`], nodes of the cluster to start from (one
    /// is enough; the others are found from it).
    pub urls: Vec<String>,
    /// A Redis Cluster: channels spread over its shards, announcements on
    /// sharded pub/sub.
    pub cluster: bool,
    /// The password, instead of one in the URLs.
    pub password: Option<String>,
    /// PEM CA certificates a `rediss://` server's certificate is checked
    /// against, instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field(
                "urls",
                &self.urls.iter().map(|u| shown(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

impl RedisOptions {
    /// One Redis server.
    pub fn new(url: &str) -> RedisOptions {
        RedisOptions {
            urls: vec![url.to_string()],
            ..RedisOptions::default()
        }
    }

    /// A Redis Cluster, from one or more of its nodes.
    pub fn cluster<S: AsRef<str>>(seeds: impl IntoIterator<Item = S>) -> RedisOptions {
        RedisOptions {
            urls: seeds.into_iter().map(|s| s.as_ref().to_string()).collect(),
            cluster: true,
            ..RedisOptions::default()
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// With this password (instead of one in the URLs).
    pub fn password(mut self, password: &str) -> RedisOptions {
        self.password = Some(password.to_string());
        self
    }

    /// Checking a `rediss://` server's certificate against these PEM CA
    /// certificates instead of the system's.
    pub fn ca_pem(mut self, pem: Vec<u8>) -> RedisOptions {
        self.ca_pem = Some(pem);
        self
    }

    /// The password in `path` (`--redis-password-file`): its first line,
    /// without the line end. Refused (bad request) when the file cannot be
    /// read or holds no password.
    pub fn read_password_file(path: &Path) -> Result<String, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::bad_request(format!(
                "cannot read the redis password file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.contains('\n') {
            return Err(Error::bad_request(format!(
                "the redis password file {} must hold one line, the password",
                path.display()
            )));
        }
        Ok(line.to_string())
    }

    /// How the addresses show in messages: without passwords.
    pub(super) fn shown(&self) -> String {
        self.urls
            .iter()
            .map(|u| shown(u))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `redis://user:password@host/db` without the password.
pub(super) fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The connection to Redis every module shares: cheap to clone, it
/// reconnects by itself. On a cluster each command goes to the shard of its
/// keys, so a command or script touching several keys must keep them under
/// one hash tag (`tandem:{C}:...`).
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster (redis-rs's cluster connection: slots, redirects).
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// How to reach one node of a cluster directly (the subscriptions to its
/// shard channels): the seeds' TLS, credentials and CA, RESP3 (pushes).
pub(super) struct NodeTemplate {
    tls: bool,
    redis: RedisConnectionInfo,
    ca_pem: Option<Vec<u8>>,
}

impl NodeTemplate {
    pub(super) fn client(&self, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_string(), port)
        };
        let info = ConnectionInfo {
            addr,
            redis: self.redis.clone(),
        };
        client(info, &self.ca_pem)
    }
}

fn client(info: ConnectionInfo, ca: &Option<Vec<u8>>) -> redis::RedisResult<redis::Client> {
    match ca {
        Some(pem) => redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// What `connect` made.
pub(super) enum Connected {
    Single(redis::Client, ConnectionManager),
    Cluster(ClusterConnection, NodeTemplate),
}

/// A start-up error: what went wrong, said plainly, with the address
/// (never a password). A refused password or an untrusted certificate is
/// named as such.
fn failed(shown: &str, tls: bool, e: redis::RedisError) -> Error {
    let text = e.to_string();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH");
    if auth {
        return Error::unavailable(format!(
            "redis {shown}: the password was refused or is missing ({text}); \
             check the URL's password or --redis-password-file"
        ));
    }
    if tls && (text.contains("certificate") || text.contains("Certificate")) {
        return Error::unavailable(format!(
            "redis {shown}: the server's TLS certificate is not trusted ({text}); \
             give its CA with --redis-ca FILE"
        ));
    }
    Error::unavailable(format!("redis {shown}: {text}"))
}

fn timed_out(shown: &str) -> Error {
    Error::unavailable(format!(
        "redis {shown}: not reachable within {START_TIMEOUT:?}"
    ))
}

/// Connects as `opts` says; usage errors (a URL that does not parse, a CA
/// without TLS, a database on a cluster) are bad requests, the rest
/// unavailable.
pub(super) async fn connect(opts: &RedisOptions) -> Result<Connected, Error> {
    let shown = opts.shown();
    let usage = |what: String| Error::bad_request(format!("redis {shown}: {what}"));
    if opts.urls.is_empty() {
        return Err(usage("no address given".into()));
    }
    if opts.urls.len() > 1 && !opts.cluster {
        return Err(usage(
            "several addresses are the nodes of a Redis Cluster: add --redis-cluster".into(),
        ));
    }
    let mut infos = Vec::new();
    for url in &opts.urls {
        let mut info = url.as_str().into_connection_info().map_err(|e| {
            usage(format!(
                "{e} (expected redis://[:PASSWORD@]HOST:PORT/DB or rediss://...)"
            ))
        })?;
        if let Some(p) = &opts.password {
            info.redis.password = Some(p.clone());
        }
        infos.push(info);
    }
    let tls = |i: &ConnectionInfo| matches!(i.addr, ConnectionAddr::TcpTls { .. });
    let is_tls = tls(&infos[0]);
    if infos.iter().any(|i| tls(i) != is_tls) {
        return Err(usage("mixes redis:// and rediss://".into()));
    }
    if opts.ca_pem.is_some() && !is_tls {
        return Err(usage("--redis-ca is for TLS: use rediss://".into()));
    }
    if !opts.cluster {
        let info = infos.pop().expect("one address");
        let client = client(info, &opts.ca_pem).map_err(|e| usage(e.to_string()))?;
        let probe = probe(&client);
        let cluster_enabled = tokio::time::timeout(START_TIMEOUT, probe)
            .await
            .map_err(|_| timed_out(&shown))?
            .map_err(|e| failed(&shown, is_tls, e))?;
        if cluster_enabled {
            return Err(usage(
                "this Redis is a node of a Redis Cluster: add --redis-cluster".into(),
            ));
        }
        let manager = tokio::time::timeout(START_TIMEOUT, ConnectionManager::new(client.clone()))
            .await
            .map_err(|_| timed_out(&shown))?
            .map_err(|e| failed(&shown, is_tls, e))?;
        return Ok(Connected::Single(client, manager));
    }
    if infos.iter().any(|i| i.redis.db != 0) {
        return Err(usage("a Redis Cluster has only database 0".into()));
    }
    let template = NodeTemplate {
        tls: is_tls,
        redis: RedisConnectionInfo {
            db: 0,
            protocol: ProtocolVersion::RESP3,
            ..infos[0].redis.clone()
        },
        ca_pem: opts.ca_pem.clone(),
    };
    // Probe one seed the same way first (the cluster client would retry).
    let seed = template
        .client(&host_of(&infos[0]), port_of(&infos[0]))
        .map_err(|e| usage(e.to_string()))?;
    let cluster_enabled = tokio::time::timeout(START_TIMEOUT, probe(&seed))
        .await
        .map_err(|_| timed_out(&shown))?
        .map_err(|e| failed(&shown, is_tls, e))?;
    if !cluster_enabled {
        return Err(usage(
            "this Redis is not a Redis Cluster: leave out --redis-cluster".into(),
        ));
    }
    let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
        .retries(2)
        .connection_timeout(COMMAND_TIMEOUT / 2)
        .response_timeout(COMMAND_TIMEOUT);
    if let Some(pem) = &opts.ca_pem {
        builder = builder.certs(TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
    }
    let cluster = builder.build().map_err(|e| usage(e.to_string()))?;
    let conn = tokio::time::timeout(START_TIMEOUT, cluster.get_async_connection())
        .await
        .map_err(|_| timed_out(&shown))?
        .map_err(|e| failed(&shown, is_tls, e))?;
    Ok(Connected::Cluster(conn, template))
}

/// One plain connection and `INFO cluster`: whether the server is a node
/// of a Redis Cluster. Its error is the start's (a refused password, an
/// untrusted certificate: said at once, not retried).
async fn probe(client: &redis::Client) -> redis::RedisResult<bool> {
    let mut c = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut c)
        .await?;
    Ok(info.contains("cluster_enabled:1"))
}

fn host_of(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, _) | ConnectionAddr::TcpTls { host: h, .. } => h.clone(),
        ConnectionAddr::Unix(_) => String::new(),
    }
}

fn port_of(info: &ConnectionInfo) -> u16 {
    match &info.addr {
        ConnectionAddr::Tcp(_, p) | ConnectionAddr::TcpTls { port: p, .. } => *p,
        ConnectionAddr::Unix(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_and_shown_addresses() {
        let dir = std::env::temp_dir().join(format!("tandem-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(RedisOptions::read_password_file(&file).unwrap(), "s3cret");
        std::fs::write(&file, "s3cret").unwrap();
        assert_eq!(RedisOptions::read_password_file(&file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(RedisOptions::read_password_file(&file).is_err());
        assert!(RedisOptions::read_password_file(&dir.join("none")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(shown("redis://u:secret@h:6379/0"), "redis://…@h:6379/0");
        let o = RedisOptions::cluster(["redis://:pw@a:1", "redis://b:2"]).password("x");
        assert_eq!(o.shown(), "redis://…@a:1,redis://b:2");
        assert!(!format!("{o:?}").contains("pw@"));
    }
}
