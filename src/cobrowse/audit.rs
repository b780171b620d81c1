//! The audit log: one JSON object per line, each chained to the one before.
//!
//! Every line carries `prev`, the SHA-256 (hex) of the previous line's bytes
//! (without its newline); the first line's `prev` is 64 zeros. Removing or
//! editing any line but the last breaks the `prev` of the line after it, and
//! [`verify`] (`tandem audit verify FILE`) names the first line that does not
//! fit. A chain cannot vouch for its own last line: `verify` prints the head
//! hash so it can be noted elsewhere (a ticket, a second log) and compared.
//!
//! Lines are written under a `parking_lot` mutex, file I/O included. That is
//! the one place this crate does I/O under a lock, on purpose: the chain is
//! only valid if lines reach the file in the order their hashes were
//! computed, audit lines are a few hundred bytes into the page cache, and
//! they come at human speed (a click, a chat line), never per stream event.
//! On restart the writer reads the file's last line and continues the chain.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::secret::sha256_hex;

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit log writer (or a no-op without `--audit`).
pub(crate) struct Audit {
    file: Mutex<Option<Chain>>,
}

struct Chain {
    file: File,
    prev: String,
}

impl Audit {
    /// A writer that writes nothing.
    pub(crate) fn off() -> Audit {
        Audit {
            file: Mutex::new(None),
        }
    }

    /// Opens (or creates) the log at `path`, continuing its chain.
    pub(crate) fn open(path: &Path) -> io::Result<Audit> {
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
        Ok(Audit {
            file: Mutex::new(Some(Chain { file, prev })),
        })
    }

    /// Appends one record: `event`, the fields, `time` (ms since the epoch) and `prev`.
    pub(crate) fn record(&self, event: &str, fields: &[(&str, Value)]) {
        let mut guard = self.file.lock();
        let Some(chain) = guard.as_mut() else {
            return;
        };
        let mut obj = Map::new();
        obj.insert("event".into(), Value::from(event));
        for (k, v) in fields {
            obj.insert((*k).into(), v.clone());
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        obj.insert("time".into(), Value::from(time));
        obj.insert("prev".into(), Value::from(chain.prev.as_str()));
        let line = Value::Object(obj).to_string();
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        match chain
            .file
            .write_all(&bytes)
            .and_then(|()| chain.file.flush())
        {
            Ok(()) => chain.prev = sha256_hex(line.as_bytes()),
            // A full disk must not take co-browsing down, but must be seen.
            Err(e) => log::error!("audit log write failed: {e}"),
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

/// Checks a log's chain; the error names the first line that breaks it.
pub fn verify(path: &Path) -> Result<Verified, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let no = i + 1;
        let line = line.map_err(|e| format!("line {no}: {e}"))?;
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("line {no}: not JSON ({e})"))?;
        let got = v.get("prev").and_then(Value::as_str).unwrap_or("");
        if got != prev {
            return Err(format!(
                "line {no}: chain broken (its prev does not match the line before it: \
                 a line was removed, edited or inserted here)"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_continues_across_reopen_and_detects_edits() {
        let dir = std::env::temp_dir().join(format!("tandem-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unit.log");
        let _ = std::fs::remove_file(&path);
        Audit::open(&path).unwrap().record("a", &[("n", 1.into())]);
        let log = Audit::open(&path).unwrap();
        log.record("b", &[]);
        log.record("c", &[]);
        assert_eq!(verify(&path).unwrap().lines, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"b\"", "\"x\"", 1)).unwrap();
        assert!(verify(&path).unwrap_err().starts_with("line 3:"));
        let _ = std::fs::remove_file(&path);
    }
}
