//! The audit log: one JSON object per line, each chained to the one before.
//!
//! Every line carries `prev`, the SHA-256 (hex) of the previous line's bytes
//! (without its newline); the first line's `prev` is 64 zeros. Removing or
//! editing any line but the last breaks the `prev` of the line after it, and
//! [`verify`] (`tandem audit verify FILE`) names the first line that does not
//! fit. A chain cannot vouch for its own last line: `verify` prints the head
//! hash so it can be noted elsewhere (a ticket, a second log) and compared.
//!
//! **One writer.** The file, and the hash of the last line written, belong
//! to one thread of their own (`tandem-audit`). `Audit::record` builds the
//! record and sends it down a channel, so whoever records, from any async
//! worker, neither waits for the disk nor holds a lock while it does; there
//! is no lock in here at all. The writer takes the records in the order they
//! were sent, sets each one's `prev`, writes the line and hashes it: the
//! chain's order is the channel's, and no two lines can interleave.
//! `Audit::written` waits (asynchronously) until every record sent before
//! it is in the file, so an answer can follow its audit line as it always
//! has. Dropping the `Audit` closes the channel and waits for the writer to
//! finish what was sent: nothing is lost at shutdown.
//!
//! On restart the writer reads the file's last line and continues the chain.
//!
//! **Several nodes** (`--redis`) keep one chain each, in a file of their
//! own, and every line names its node (`node`, the id the node reports to
//! Redis). One chain shared in Redis would make every audit line of every
//! node wait for a round trip and a lock across the cluster, and would stop
//! co-browsing while Redis is away; a chain per node costs nothing, and
//! [`verify_logs`] checks the nodes' files together: each chain whole, and
//! no file given twice (a copied chain would hide a missing one). A help
//! session whose customer is on one node and whose agent is on another has
//! its lines in both files; `time` orders them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::secret::sha256_hex;

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit log writer (or a no-op without an audit file).
pub(crate) struct Audit {
    writer: Option<Writer>,
    /// The node every line names (`--redis`), or none for a lone server.
    node: Option<String>,
}

/// The sending side of the writer thread.
struct Writer {
    // `Option` only so that `drop` can close the channel before joining.
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

enum Msg {
    /// A record without its `prev`, which the writer sets.
    Record(Map<String, Value>),
    /// Answered once every record sent before it is written.
    Written(oneshot::Sender<()>),
}

impl Audit {
    /// A writer that writes nothing.
    pub(crate) fn off() -> Audit {
        Audit {
            writer: None,
            node: None,
        }
    }

    /// Opens (or creates) the log at `path`, continuing its chain, and starts
    /// its writer thread. With `node`, every line names it.
    pub(crate) fn open(path: &Path, node: Option<&str>) -> io::Result<Audit> {
        let prev = match File::open(path) {
            Ok(f) => {
                let mut last = None;
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    if !line.is_empty() {
                        last = Some(line);
                    }
                }
                last.map_or_else(|| GENESIS.to_string(), |l| sha256_hex(l.as_bytes()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => GENESIS.to_string(),
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // Unbounded: records come at human speed (a click, a chat line),
        // never per stream event, and a bounded channel would make a
        // recorder on an async worker wait for the disk after all.
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tandem-audit".into())
            .spawn(move || write_all(file, prev, rx))?;
        Ok(Audit {
            writer: Some(Writer {
                tx: Some(tx),
                thread: Some(thread),
            }),
            node: node.map(str::to_string),
        })
    }

    /// Appends one record: `event`, the fields, `time` (ms since the epoch)
    /// and `prev`. Never blocks: the writer thread writes it.
    pub(crate) fn record(&self, event: &str, fields: &[(&str, Value)]) {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else {
            return;
        };
        let mut obj = Map::new();
        obj.insert("event".into(), Value::from(event));
        if let Some(node) = &self.node {
            obj.insert("node".into(), Value::from(node.as_str()));
        }
        for (k, v) in fields {
            obj.insert((*k).into(), v.clone());
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        obj.insert("time".into(), Value::from(time));
        if tx.send(Msg::Record(obj)).is_err() {
            log::error!("audit log writer is gone: a {event} record is lost");
        }
    }

    /// Waits until every record sent before this call is written (or its
    /// write failed and was logged). At once without an audit file.
    pub(crate) async fn written(&self) {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Written(done)).is_ok() {
            // An error means the writer is gone; nothing more will be written.
            let _ = wait.await;
        }
    }
}

impl Drop for Audit {
    /// Closes the channel and waits for the writer to write what was sent.
    fn drop(&mut self) {
        if let Some(w) = &mut self.writer {
            drop(w.tx.take());
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    log::error!("audit log writer panicked");
                }
            }
        }
    }
}

/// The writer thread: one record at a time, in the order sent, until every
/// sender is gone.
fn write_all(mut file: File, mut prev: String, rx: mpsc::Receiver<Msg>) {
    for msg in rx {
        match msg {
            Msg::Record(mut obj) => {
                obj.insert("prev".into(), Value::from(prev.as_str()));
                let line = Value::Object(obj).to_string();
                let mut bytes = line.clone().into_bytes();
                bytes.push(b'\n');
                match file.write_all(&bytes).and_then(|()| file.flush()) {
                    Ok(()) => prev = sha256_hex(line.as_bytes()),
                    // A full disk must not take co-browsing down, but must be seen.
                    Err(e) => log::error!("audit log write failed: {e}"),
                }
            }
            Msg::Written(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// What [`verify`] found in a sound log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked.
    pub lines: usize,
    /// SHA-256 of the last line: note it elsewhere to detect a cut tail.
    pub head: String,
}

/// Why [`verify`] rejected a log: the file or one of its lines could not
/// be read, or a line is not JSON or does not chain to the one before it.
/// It shows as the first line that breaks the log and why, e.g. `line 5:
/// chain broken (...)`, or as the file when it could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    line: Option<usize>,
    io: bool,
    message: String,
}

impl VerifyError {
    /// The first line (from 1) that breaks the log; `None` when the file
    /// could not be opened.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// Whether reading failed (the file could not be opened, or a line
    /// could not be read): the log may be sound, it was not checked.
    /// Otherwise a line is not JSON or does not chain.
    pub fn is_io(&self) -> bool {
        self.io
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VerifyError {}

/// Checks a log's chain; the error names the first line that breaks it.
pub fn verify(path: &Path) -> Result<Verified, VerifyError> {
    let f = File::open(path).map_err(|e| VerifyError {
        line: None,
        io: true,
        message: format!("{}: {e}", path.display()),
    })?;
    let broken = |no: usize, io: bool, message: String| VerifyError {
        line: Some(no),
        io,
        message,
    };
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let no = i + 1;
        let line = line.map_err(|e| broken(no, true, format!("line {no}: {e}")))?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| broken(no, false, format!("line {no}: not JSON ({e})")))?;
        let got = v.get("prev").and_then(Value::as_str).unwrap_or("");
        if got != prev {
            return Err(broken(
                no,
                false,
                format!(
                    "line {no}: chain broken (its prev does not match the line before it: \
                     a line was removed, edited or inserted here)"
                ),
            ));
        }
        prev = sha256_hex(line.as_bytes());
        n = no;
    }
    Ok(Verified {
        lines: n,
        head: prev,
    })
}

/// Checks the logs of several nodes together (one file each, see the
/// module's map): every chain whole, and no log given twice. The error names
/// the file and, as [`verify`]'s does, the first line that breaks it.
pub fn verify_logs(paths: &[&Path]) -> Result<Vec<Verified>, VerifyError> {
    let mut found: Vec<Verified> = Vec::with_capacity(paths.len());
    for path in paths {
        let v = verify(path).map_err(|e| VerifyError {
            message: if e.io {
                e.message.clone()
            } else {
                format!("{}: {}", path.display(), e.message)
            },
            ..e
        })?;
        let twice = (v.lines > 0)
            .then(|| found.iter().position(|f| f.head == v.head))
            .flatten();
        if let Some(j) = twice {
            return Err(VerifyError {
                line: None,
                io: false,
                message: format!(
                    "{} is the same chain as {} (the same head): give each node's log once",
                    path.display(),
                    paths[j].display()
                ),
            });
        }
        found.push(v);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn chain_continues_across_reopen_and_detects_edits() {
        let path = temp("unit.log");
        Audit::open(&path, None)
            .unwrap()
            .record("a", &[("n", 1.into())]);
        let log = Audit::open(&path, None).unwrap();
        log.record("b", &[]);
        log.record("c", &[]);
        drop(log);
        assert_eq!(verify(&path).unwrap().lines, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"b\"", "\"x\"", 1)).unwrap();
        let e = verify(&path).unwrap_err();
        assert_eq!((e.line(), e.is_io()), (Some(3), false));
        assert!(e.to_string().starts_with("line 3: chain broken ("), "{e}");
        let e = verify(&temp("absent.log")).unwrap_err();
        assert_eq!((e.line(), e.is_io()), (None, true));
        let _ = std::fs::remove_file(&path);
    }

    /// Many threads record at once: every line is there, whole, and the
    /// chain verifies. Then `written` makes the lines sent before it visible.
    #[test]
    fn many_writers_keep_one_chain() {
        let path = temp("many.log");
        let log = std::sync::Arc::new(Audit::open(&path, None).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        log.record("chat", &[("thread", t.into()), ("n", i.into())]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(log.written());
        assert_eq!(verify(&path).unwrap().lines, 2000);
        log.record("ended", &[]);
        drop(log);
        assert_eq!(verify(&path).unwrap().lines, 2001, "drop writes the rest");
        let _ = std::fs::remove_file(&path);
    }

    /// Two nodes' logs: each line names its node, the two verify together,
    /// a log given twice and a broken one are named.
    #[test]
    fn nodes_keep_a_chain_each_and_verify_together() {
        let (a, b) = (temp("node-a.log"), temp("node-b.log"));
        let la = Audit::open(&a, Some("na")).unwrap();
        let lb = Audit::open(&b, Some("nb")).unwrap();
        la.record("created", &[("session", "s1".into())]);
        lb.record("joined", &[("session", "s1".into())]);
        lb.record("ended", &[("session", "s1".into())]);
        drop((la, lb));
        let first: Value =
            serde_json::from_str(std::fs::read_to_string(&a).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(first["node"], "na");
        assert_eq!(first["event"], "created");
        let found = verify_logs(&[&a, &b]).unwrap();
        assert_eq!((found[0].lines, found[1].lines), (1, 2));
        let e = verify_logs(&[&a, &b, &a]).unwrap_err();
        assert!(e.to_string().contains("is the same chain as"), "{e}");
        let copy = temp("node-a-copy.log");
        std::fs::copy(&a, &copy).unwrap();
        assert!(
            verify_logs(&[&a, &copy]).is_err(),
            "a copied chain is refused"
        );
        let text = std::fs::read_to_string(&b).unwrap();
        std::fs::write(&b, text.replacen("joined", "left", 1)).unwrap();
        let e = verify_logs(&[&a, &b]).unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: line 2:", b.display())),
            "{e}"
        );
        for p in [a, b, copy] {
            let _ = std::fs::remove_file(p);
        }
    }
}
