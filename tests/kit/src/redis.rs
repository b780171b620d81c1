//! A real `redis-server` (the Debian package) for the scale-out tests: on a
//! free 127.0.0.1 port, in a temporary directory of its own, never the
//! system's service. Stopped (by its PID) when dropped; it can be stopped
//! and started again on the same port to test an outage.
//!
//! [`RedisServer::start_opts`] adds a password (`requirepass`) or TLS only
//! (`--tls-port`, with a CA and a certificate for 127.0.0.1 made by rcgen
//! at start, the CA's PEM in [`RedisServer::ca_file`]). [`RedisCluster`]
//! is three of them as a Redis Cluster of three masters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start one.
#[derive(Debug, Clone, Default)]
pub struct RedisOpts {
    /// Every write in the append-only file (fsync always), so a restart
    /// keeps every stored event.
    pub appendonly: bool,
    /// `requirepass`.
    pub password: Option<String>,
    /// TLS only, on a certificate made for 127.0.0.1.
    pub tls: bool,
    /// A Redis Cluster node (`cluster-enabled yes`, its bus on a free port).
    pub cluster: bool,
}

/// One redis-server process.
pub struct RedisServer {
    pub port: u16,
    bus_port: u16,
    dir: PathBuf,
    opts: RedisOpts,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM: (ca, cert, key).
fn make_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tandem test redis CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca certificate");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server names");
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl RedisServer {
    /// Starts one with nothing persisted.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// Starts one; with `appendonly`, every write is in its append-only
    /// file (fsync always), so a restart keeps every stored event.
    pub fn start_with(appendonly: bool) -> RedisServer {
        RedisServer::start_opts(RedisOpts {
            appendonly,
            ..RedisOpts::default()
        })
    }

    /// Starts one as `opts` says.
    pub fn start_opts(opts: RedisOpts) -> RedisServer {
        let mut r = RedisServer::prepare(opts);
        r.run();
        r
    }

    fn prepare(opts: RedisOpts) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tandem-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        if opts.tls {
            let (ca, cert, key) = make_certificates();
            std::fs::write(dir.join("ca.pem"), ca).expect("ca file");
            std::fs::write(dir.join("cert.pem"), cert).expect("cert file");
            std::fs::write(dir.join("key.pem"), key).expect("key file");
        }
        RedisServer {
            port,
            bus_port: if opts.cluster { free_port() } else { 0 },
            dir,
            opts,
            child: None,
        }
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` with TLS; no password).
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The PEM file of the CA that signed its certificate (with TLS).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args([
                "--appendonly",
                if self.opts.appendonly { "yes" } else { "no" },
            ])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir);
        if self.opts.tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(self.dir.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if let Some(p) = &self.opts.password {
            cmd.args(["--requirepass", p]);
        }
        if self.opts.cluster {
            if self.opts.tls {
                cmd.args(["--tls-cluster", "yes"]);
            }
            if let Some(p) = &self.opts.password {
                cmd.args(["--masterauth", p]);
            }
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-port", &self.bus_port.to_string()])
                .args(["--cluster-node-timeout", "3000"])
                // The other shards keep serving while one is down.
                .args(["--cluster-require-full-coverage", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = if self.opts.tls {
                self.cli(&["PING"]).starts_with("PONG")
            } else {
                let line = self.raw(&["PING"]);
                line.starts_with("+PONG") || line.starts_with("-NOAUTH")
            };
            if pong {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One command over a plain connection of its own; the first line of
    /// the answer, or "" if there is none.
    fn raw(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut req = String::new();
        let mut push = |args: &[&str]| {
            req.push_str(&format!("*{}\r\n", args.len()));
            for a in args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
        };
        if let Some(p) = &self.opts.password {
            push(&["AUTH", p]);
        }
        push(args);
        if s.write_all(req.as_bytes()).is_err() {
            return String::new();
        }
        let mut r = BufReader::new(s);
        let mut line = String::new();
        if self.opts.password.is_some() {
            let _ = r.read_line(&mut line);
            line.clear();
        }
        let _ = r.read_line(&mut line);
        line.trim_end().to_string()
    }

    /// Sends one command (RESP, over its own connection) and returns the
    /// first line of the answer (`+OK`, `:3`, `-ERR ...`; with TLS,
    /// through redis-cli: `OK`, `3`, `ERR ...`).
    pub fn command(&self, args: &[&str]) -> String {
        if self.opts.tls {
            return self.cli(args);
        }
        let line = self.raw(args);
        assert!(!line.is_empty(), "redis on {} did not answer", self.port);
        line
    }

    /// `redis-cli` with one command: its whole answer as redis-cli prints it.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.opts.tls {
            cmd.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        if let Some(p) = &self.opts.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Stops it (SIGKILL, by PID) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters (no replicas), append-only, each on
/// free ports in a temporary directory: node `i` serves the slots
/// [`RedisCluster::SLOTS`]`[i]`. A node can be stopped and restarted; the
/// others keep serving meanwhile (`cluster-require-full-coverage no`).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Slots moved by [`RedisCluster::move_slot`], in order: (slot, to).
    moved: std::sync::Mutex<Vec<(u16, usize)>>,
}

impl RedisCluster {
    /// The slots of each node.
    pub const SLOTS: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

    /// Starts the three and waits for `cluster_state:ok` on each.
    pub fn start() -> RedisCluster {
        RedisCluster::start_opts(RedisOpts::default())
    }

    /// Starts the three, each as `opts` says (with TLS, all on one
    /// certificate, the bus too), append-only cluster nodes.
    pub fn start_opts(opts: RedisOpts) -> RedisCluster {
        RedisCluster::start_with(opts, false)
    }

    /// Three masters and, with `replicas`, a replica of each: node `3 + i`
    /// replicates node `i` (and takes over when it fails).
    pub fn start_with(opts: RedisOpts, replicas: bool) -> RedisCluster {
        let opts = RedisOpts {
            appendonly: true,
            cluster: true,
            ..opts
        };
        let total = if replicas { 6 } else { 3 };
        let mut nodes: Vec<RedisServer> = (0..total)
            .map(|_| RedisServer::prepare(opts.clone()))
            .collect();
        if opts.tls {
            for i in 1..nodes.len() {
                for f in ["ca.pem", "cert.pem", "key.pem"] {
                    std::fs::copy(nodes[0].dir.join(f), nodes[i].dir.join(f)).expect("tls files");
                }
            }
        }
        for n in &mut nodes {
            n.run();
        }
        for (n, (from, to)) in nodes.iter().zip(Self::SLOTS) {
            let ok = n.command(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &from.to_string(),
                &to.to_string(),
            ]);
            assert_eq!(ok.trim_start_matches('+'), "OK");
        }
        for other in &nodes[1..] {
            let ok = nodes[0].command(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &other.port.to_string(),
                &other.bus_port.to_string(),
            ]);
            assert_eq!(ok.trim_start_matches('+'), "OK");
        }
        let c = RedisCluster {
            nodes,
            moved: std::sync::Mutex::new(Vec::new()),
        };
        if replicas {
            c.wait_known();
            for i in 0..3 {
                let master = c.nodes[i].cli(&["CLUSTER", "MYID"]);
                let ok = c.nodes[3 + i].command(&["CLUSTER", "REPLICATE", &master]);
                assert_eq!(ok.trim_start_matches('+'), "OK");
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while !c.nodes[3..].iter().all(|n| {
                n.cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            }) {
                assert!(Instant::now() < deadline, "the replicas never synced");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c.wait_ok();
        c
    }

    fn wait_known(&self) {
        let want = format!("cluster_known_nodes:{}", self.nodes.len());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains(&want))
        {
            assert!(Instant::now() < deadline, "the nodes never met");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` is a master (a replica that took over).
    pub fn wait_master(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.nodes[i].cli(&["ROLE"]).starts_with("master") {
            assert!(Instant::now() < deadline, "node {i} never took over");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node says `cluster_state:ok` and knows all three.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves `slot` (its keys too) from the node serving it to node `to`,
    /// as a resharding does (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE`,
    /// `SETSLOT NODE` on every node); the slot map changes for good.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let id = |i: usize| self.nodes[i].cli(&["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        let slot_s = slot.to_string();
        let ok = |r: String| assert_eq!(r.trim_start_matches('+'), "OK");
        ok(self.nodes[to].command(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]));
        ok(self.nodes[from].command(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]));
        let keys = self.nodes[from].cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "1000"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if !keys.is_empty() {
            let port = self.nodes[to].port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            ok(self.nodes[from].command(&args));
        }
        for n in &self.nodes {
            ok(n.command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]));
        }
        self.moved.lock().unwrap().push((slot, to));
    }

    /// The node serving `slot` now.
    fn owner(&self, slot: u16) -> usize {
        let moved = self.moved.lock().unwrap();
        match moved.iter().rev().find(|(s, _)| *s == slot) {
            Some((_, to)) => *to,
            None => self.node_of(slot),
        }
    }

    /// Every node's URL, to start from.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `CLUSTER KEYSLOT key`, asked of the cluster.
    pub fn keyslot(&self, key: &str) -> u16 {
        let line = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]);
        line.trim_start_matches(':').parse().expect("a slot")
    }

    /// The node that served `slot` at the start.
    pub fn node_of(&self, slot: u16) -> usize {
        Self::SLOTS
            .iter()
            .position(|&(a, b)| (a..=b).contains(&slot))
            .expect("a slot")
    }

    /// The node that serves tandem channel `channel` (its keys' hash tag).
    pub fn node_of_channel(&self, channel: &str) -> usize {
        self.node_of(self.keyslot(&format!("tandem:{{{channel}}}:m")))
    }
}
