//! Co-browsing's own settings, and the one error its setting up can end in.
//!
//! Apart from the router's [`crate::Config`]: an embedder that mounts no
//! co-browsing never sees them. Start from [`CobrowseConfig::default`] and change
//! what you need with the builder methods; [`crate::cobrowse::Cobrowse::new`]
//! validates them and reads the files they name, and
//! [`crate::cobrowse::check_files`] does only the reading, so a program can
//! refuse to start before it listens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::helpers::MAX_CHAT;

/// What co-browsing runs with: agent accounts (or a per-run key), the audit
/// log, canned replies, and the lifetimes and limits of sign-ins, help
/// sessions and classes.
///
/// ```
/// use std::time::Duration;
/// use tandem::cobrowse::CobrowseConfig;
///
/// let s = CobrowseConfig::default()
///     .audit_file("audit.log")
///     .help_session_ttl(Duration::from_secs(3600));
/// s.validate().unwrap();
/// let bad = CobrowseConfig::default().max_help_sessions(0);
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "max-help-sessions must be between 1 and 100000"
/// );
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct CobrowseConfig {
    /// Agent accounts (`name:argon2-hash` lines); `None`: a per-run key.
    pub agents_file: Option<PathBuf>,
    /// The per-run agent key instead of a random one (kept private: set it
    /// with [`CobrowseConfig::agent_key`]; it is never shown).
    pub(crate) agent_key: Option<String>,
    /// Where the hash-chained audit log is appended; `None`: no log.
    pub audit_file: Option<PathBuf>,
    /// Write chat text into the audit log (by default only its length).
    pub audit_chat_text: bool,
    /// Canned chat replies for agents, one a line; `None`: built-in ones.
    pub canned_file: Option<PathBuf>,
    /// How long an agent's sign-in lasts.
    pub agent_session_ttl: Duration,
    /// How long a help session lives (waiting or active) at most.
    pub help_session_ttl: Duration,
    /// Most help sessions open at once (waiting and active).
    pub max_help_sessions: usize,
    /// A customer whose page has not been heard from for this long (the
    /// widget pings at a third of it) shows as gone in the console.
    pub presence_timeout: Duration,
    /// Most followers in one class (classroom mode).
    pub max_class_followers: usize,
}

impl Default for CobrowseConfig {
    /// A per-run agent key, no audit log, the built-in canned replies,
    /// sign-ins for 8 hours, help sessions for 4 hours, at most 1000 open.
    fn default() -> CobrowseConfig {
        CobrowseConfig {
            agents_file: None,
            agent_key: None,
            audit_file: None,
            audit_chat_text: false,
            canned_file: None,
            agent_session_ttl: Duration::from_secs(8 * 3600),
            help_session_ttl: Duration::from_secs(4 * 3600),
            max_help_sessions: 1000,
            presence_timeout: Duration::from_secs(45),
            max_class_followers: 100,
        }
    }
}

impl fmt::Debug for CobrowseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CobrowseConfig")
            .field("agents_file", &self.agents_file)
            // Never shown: printing the settings must not leak the key.
            .field("agent_key", &self.agent_key.as_ref().map(|_| ".."))
            .field("audit_file", &self.audit_file)
            .field("audit_chat_text", &self.audit_chat_text)
            .field("canned_file", &self.canned_file)
            .field("agent_session_ttl", &self.agent_session_ttl)
            .field("help_session_ttl", &self.help_session_ttl)
            .field("max_help_sessions", &self.max_help_sessions)
            .field("presence_timeout", &self.presence_timeout)
            .field("max_class_followers", &self.max_class_followers)
            .finish()
    }
}

impl CobrowseConfig {
    /// Agent accounts from this file (`name:argon2-hash` lines, see
    /// `tandem agents add`) instead of a per-run key.
    pub fn agents_file(mut self, path: impl Into<PathBuf>) -> CobrowseConfig {
        self.agents_file = Some(path.into());
        self
    }

    /// The per-run agent key to use instead of a random one (16 to 128
    /// printable ASCII characters); ignored with an agents file. A key given
    /// here is the caller's to show: [`crate::cobrowse::Cobrowse::printable_key`]
    /// only returns a key it made.
    pub fn agent_key(mut self, key: impl Into<String>) -> CobrowseConfig {
        self.agent_key = Some(key.into());
        self
    }

    /// Append the hash-chained audit log (JSON lines) to this file.
    pub fn audit_file(mut self, path: impl Into<PathBuf>) -> CobrowseConfig {
        self.audit_file = Some(path.into());
        self
    }

    /// Write chat text into the audit log (by default only its length).
    pub fn audit_chat_text(mut self, on: bool) -> CobrowseConfig {
        self.audit_chat_text = on;
        self
    }

    /// Canned chat replies for agents from this file, one a line, `#`
    /// comments (by default, built-in ones).
    pub fn canned_file(mut self, path: impl Into<PathBuf>) -> CobrowseConfig {
        self.canned_file = Some(path.into());
        self
    }

    /// How long an agent's sign-in lasts (at least a minute; default 8 h).
    pub fn agent_session_ttl(mut self, ttl: Duration) -> CobrowseConfig {
        self.agent_session_ttl = ttl;
        self
    }

    /// How long a help session lives, waiting or active, before it ends by
    /// itself (at least a minute; default 4 h).
    pub fn help_session_ttl(mut self, ttl: Duration) -> CobrowseConfig {
        self.help_session_ttl = ttl;
        self
    }

    /// Most help sessions open at once (1 to 100000; default 1000).
    pub fn max_help_sessions(mut self, n: usize) -> CobrowseConfig {
        self.max_help_sessions = n;
        self
    }

    /// After how long without a word from the customer's page (a ping, a
    /// request) the console shows the customer as gone (1 s to 10 min;
    /// default 45 s, so a closed tab shows as gone within a minute).
    pub fn presence_timeout(mut self, t: Duration) -> CobrowseConfig {
        self.presence_timeout = t;
        self
    }

    /// Most followers in one class (1 to 100000; default 100): the next
    /// one to join is refused with 429.
    pub fn max_class_followers(mut self, n: usize) -> CobrowseConfig {
        self.max_class_followers = n;
        self
    }

    /// Checks every setting; the error names the setting and its limit.
    pub fn validate(&self) -> Result<(), SetupError> {
        let check = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(SetupError::setting(msg))
            }
        };
        check(
            self.agent_key.as_deref().is_none_or(|k| {
                (16..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
            }),
            "agent-key must be 16 to 128 printable ascii characters",
        )?;
        check(
            self.agent_session_ttl >= Duration::from_secs(60),
            "agent-session-ttl must be at least 1 minute",
        )?;
        check(
            self.help_session_ttl >= Duration::from_secs(60),
            "help-session-ttl must be at least 1 minute",
        )?;
        check(
            (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.presence_timeout),
            "presence-timeout must be between 1 second and 10 minutes",
        )?;
        check(
            (1..=100_000).contains(&self.max_class_followers),
            "max-class-followers must be between 1 and 100000",
        )?;
        check(
            (1..=100_000).contains(&self.max_help_sessions),
            "max-help-sessions must be between 1 and 100000",
        )
    }
}

/// Why co-browsing could not be set up: a setting out of range, or a file
/// it names that cannot be read or is malformed. The message names the
/// setting or the file (and line), e.g. `--agents agents.txt line 3:
/// expected name:hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Setting,
    File,
}

impl SetupError {
    pub(crate) fn setting(message: impl Into<String>) -> SetupError {
        SetupError {
            kind: Kind::Setting,
            message: message.into(),
        }
    }

    pub(crate) fn file(message: impl Into<String>) -> SetupError {
        SetupError {
            kind: Kind::File,
            message: message.into(),
        }
    }

    /// Whether a setting is out of range (see [`CobrowseConfig::validate`]).
    pub fn is_setting(&self) -> bool {
        self.kind == Kind::Setting
    }

    /// Whether a file named by the settings cannot be read or is malformed.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SetupError {}

/// The canned replies used without a canned file.
const DEFAULT_CANNED: &[&str] = &[
    "Hello! I'm here to help. What are you trying to do?",
    "Let me show you: I'll send you to the right page.",
    "Could you tell me what you see on your screen now?",
    "Is there anything else I can help you with?",
    "Thank you, and have a good day!",
];

/// The canned replies: from the file (one a line, `#` comments), or built in.
pub(crate) fn load_canned(path: Option<&Path>) -> Result<Vec<String>, SetupError> {
    let Some(p) = path else {
        return Ok(DEFAULT_CANNED.iter().map(|s| s.to_string()).collect());
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| SetupError::file(format!("--canned {}: {e}", p.display())))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if let Some(l) = lines.iter().find(|l| l.chars().count() > MAX_CHAT) {
        return Err(SetupError::file(format!(
            "--canned {}: a reply is too long (max {MAX_CHAT} characters): {:.40}...",
            p.display(),
            l
        )));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_limit_and_the_key_is_never_shown() {
        let key = CobrowseConfig::default().agent_key("short");
        let e = key.validate().unwrap_err();
        assert!(e.is_setting());
        assert_eq!(
            e.to_string(),
            "agent-key must be 16 to 128 printable ascii characters"
        );
        let s = CobrowseConfig::default().agent_key("0123456789abcdef-secret");
        s.validate().unwrap();
        assert!(!format!("{s:?}").contains("secret"));
        let ttl = CobrowseConfig::default().help_session_ttl(Duration::from_secs(1));
        assert!(ttl.validate().unwrap_err().to_string().contains("1 minute"));
        let followers = CobrowseConfig::default().max_class_followers(0);
        assert_eq!(
            followers.validate().unwrap_err().to_string(),
            "max-class-followers must be between 1 and 100000"
        );
        let e = load_canned(Some(Path::new("/nonexistent/canned"))).unwrap_err();
        assert!(e.is_file() && e.to_string().starts_with("--canned /nonexistent/canned:"));
    }
}
