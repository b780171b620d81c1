//! `tandem serve` as a child process for the TLS benchmarks (`tlsidle.rs`,
//! `tlsspeed.rs`): one worker thread and the settings of benches/compare.sh,
//! TLS with the kit's test CA when asked, on a free port; killed (by its
//! handle) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::Pki;

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tandem` (under `wrap`, such as heaptrack, if given), TLS with
/// `pki`'s certificate if given, and waits until it listens.
pub fn start(tandem: &str, wrap: Option<&str>, pki: Option<&Pki>) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut cmd = match wrap {
        Some(wrap) => {
            let mut cmd = Command::new(wrap);
            cmd.arg(tandem);
            cmd
        }
        None => Command::new(tandem),
    };
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--threads", "1", "--buffer-events", "1000"])
        .args(["--max-connections", "20000", "--stream-padding", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(pki) = pki {
        cmd.arg("--tls-cert").arg(pki.cert());
        cmd.arg("--tls-key").arg(pki.key());
    }
    let child = cmd.spawn().expect("start tandem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tandem did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port }
}
