//! Agents: accounts, sign-in, and the cookie sessions that follow it.
//!
//! Accounts come from `--agents FILE`: one `name:hash` a line, the hash an
//! argon2id PHC string (salted, slow, memory-hard: a stolen file costs an
//! attacker real work per guess). `tandem agents add FILE NAME` appends one,
//! reading the password from standard input so it never sits in `ps` or a
//! shell history. Without a file co-browsing makes a random per-run agent
//! key, which the program shows its operator as a sign-in link carrying it
//! in the URL *fragment* (`Cobrowse::sign_in_link`), which browsers never
//! send to a server nor put in a `Referer`.
//!
//! A sign-in gives a random token in a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Max-Age`); the server keeps only its digest and an expiry, checked on
//! every request. Failed sign-ins are limited per name and overall, so
//! guessing a password over HTTP is slow even before argon2 makes it so.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use parking_lot::Mutex;

use super::secret::{digest, random_token, Digest32};
use super::settings::SetupError;
use crate::error::Error;

/// Longest agent name.
pub const MAX_AGENT_NAME: usize = 32;
/// Failed sign-ins allowed per name in [`FAIL_WINDOW`].
pub(crate) const FAILS_PER_NAME: u32 = 5;
/// Failed sign-ins allowed overall in [`FAIL_WINDOW`].
pub(crate) const FAILS_TOTAL: u32 = 50;
pub(crate) const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Most agents signed in at once (bounds the cookie table).
const MAX_SIGNED_IN: usize = 10_000;

/// Checks an agent name: 1 to 32 of `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_agent_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_AGENT_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "invalid agent name (1 to {MAX_AGENT_NAME} of A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// The argon2id PHC string of a password, with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// The `--agents` file line for an agent: `name:hash`. The name is 1 to 32
/// of `A-Z a-z 0-9 . _ -`, the password at least 8 characters.
pub fn agent_line(name: &str, password: &str) -> Result<String, SetupError> {
    check_agent_name(name).map_err(SetupError::setting)?;
    if password.len() < 8 {
        return Err(SetupError::setting("password too short (min 8 characters)"));
    }
    Ok(format!("{name}:{}", hash_password(password)))
}

/// How agents prove who they are.
enum Method {
    Accounts(HashMap<String, String>),
    Key(Digest32),
}

struct SignedIn {
    name: String,
    expires: Instant,
    /// When this node made it or last had it from Redis (`--redis`).
    checked: Instant,
}

#[derive(Default)]
struct Fails {
    since: Option<Instant>,
    total: u32,
    per_name: HashMap<String, u32>,
}

/// Accounts, sign-ins and their cookies.
pub(crate) struct Agents {
    method: Method,
    ttl: Duration,
    signed_in: Mutex<HashMap<Digest32, SignedIn>>,
    fails: Mutex<Fails>,
}

/// What a sign-in request carries.
pub(crate) enum Credentials {
    /// An account's name and password.
    Password { name: String, password: String },
    /// The per-run key and the name to show.
    Key { key: String, name: String },
}

impl Agents {
    /// Accounts from a file: `name:$argon2id$...` lines, `#` comments.
    pub(crate) fn from_file(path: &Path, ttl: Duration) -> Result<Agents, SetupError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SetupError::file(format!("--agents {}: {e}", path.display())))?;
        let mut accounts = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                SetupError::file(format!("--agents {} line {}: {why}", path.display(), i + 1))
            };
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("expected name:hash"))?;
            check_agent_name(name).map_err(|e| bad(&e))?;
            PasswordHash::new(hash)
                .map_err(|_| bad("not an argon2 PHC hash (see `tandem agents add`)"))?;
            accounts.insert(name.to_string(), hash.to_string());
        }
        if accounts.is_empty() {
            return Err(SetupError::file(format!(
                "--agents {}: no accounts in the file",
                path.display()
            )));
        }
        Ok(Agents::new(Method::Accounts(accounts), ttl))
    }

    /// A per-run key (given, or random); returns the key to print.
    pub(crate) fn with_key(key: Option<&str>, ttl: Duration) -> (Agents, String) {
        let key = key.map_or_else(|| random_token(18), str::to_string);
        (Agents::new(Method::Key(digest(&key)), ttl), key)
    }

    fn new(method: Method, ttl: Duration) -> Agents {
        Agents {
            method,
            ttl,
            signed_in: Mutex::new(HashMap::new()),
            fails: Mutex::new(Fails::default()),
        }
    }

    /// The digest of the per-run key, if agents sign in with one.
    pub(crate) fn key_digest(&self) -> Option<Digest32> {
        match &self.method {
            Method::Key(d) => Some(*d),
            Method::Accounts(_) => None,
        }
    }

    /// Whether agents sign in with the per-run key (no accounts file).
    pub(crate) fn uses_key(&self) -> bool {
        matches!(self.method, Method::Key(_))
    }

    /// Checks credentials; on success returns the agent's name and a new cookie token.
    /// `other_key`: the key given is another node's, known to Redis
    /// (`--redis`), and accepted as this node's own.
    /// Blocking (argon2 takes tens of milliseconds): call from `spawn_blocking`.
    pub(crate) fn sign_in(
        &self,
        creds: &Credentials,
        other_key: bool,
    ) -> Result<(String, String), Error> {
        let name = match creds {
            Credentials::Password { name, .. } | Credentials::Key { name, .. } => name.clone(),
        };
        check_agent_name(&name).map_err(Error::bad_request)?;
        self.check_fails(&name)?;
        let ok =
            match (&self.method, creds) {
                (Method::Accounts(accounts), Credentials::Password { password, .. }) => {
                    accounts.get(&name).is_some_and(|h| {
                        PasswordHash::new(h).is_ok_and(|h| {
                            Argon2::default()
                                .verify_password(password.as_bytes(), &h)
                                .is_ok()
                        })
                    })
                }
                (Method::Key(d), Credentials::Key { key, .. }) => other_key || digest(key) == *d,
                (Method::Accounts(_), Credentials::Key { .. }) => return Err(Error::bad_request(
                    "this server uses agent accounts (--agents): sign in with name and password",
                )),
                (Method::Key(_), Credentials::Password { .. }) => {
                    return Err(Error::bad_request(
                        "this server uses a per-run agent key: sign in with the key it printed",
                    ))
                }
            };
        if !ok {
            self.note_fail(&name);
            return Err(Error::unauthorized("wrong agent name or password"));
        }
        let token = random_token(32);
        let now = Instant::now();
        let mut map = self.signed_in.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SIGNED_IN {
            return Err(Error::rate_limited(format!(
                "too many agents signed in (max {MAX_SIGNED_IN})"
            )));
        }
        map.insert(
            digest(&token),
            SignedIn {
                name: name.clone(),
                expires: now + self.ttl,
                checked: now,
            },
        );
        Ok((name, token))
    }

    fn check_fails(&self, name: &str) -> Result<(), Error> {
        let mut f = self.fails.lock();
        if f.since.is_none_or(|s| s.elapsed() >= FAIL_WINDOW) {
            *f = Fails {
                since: Some(Instant::now()),
                ..Fails::default()
            };
        }
        if f.total >= FAILS_TOTAL || f.per_name.get(name).copied().unwrap_or(0) >= FAILS_PER_NAME {
            return Err(Agents::too_many());
        }
        Ok(())
    }

    fn note_fail(&self, name: &str) {
        let mut f = self.fails.lock();
        f.total += 1;
        if f.per_name.len() < 10_000 || f.per_name.contains_key(name) {
            *f.per_name.entry(name.to_string()).or_default() += 1;
        }
    }

    /// The agent a cookie token belongs to, if it is signed in and not expired.
    pub(crate) fn who(&self, token: &str) -> Option<String> {
        let d = digest(token);
        let mut map = self.signed_in.lock();
        match map.get(&d) {
            Some(s) if s.expires > Instant::now() => Some(s.name.clone()),
            Some(_) => {
                map.remove(&d);
                None
            }
            None => None,
        }
    }

    /// Ends a sign-in.
    pub(crate) fn sign_out(&self, token: &str) {
        self.forget(&digest(token));
    }

    /// A sign-in made on another node (or before a restart), by its
    /// digest, with the time it has left (from Redis).
    pub(crate) fn adopt(&self, d: Digest32, name: String, left: Duration) {
        let now = Instant::now();
        let mut map = self.signed_in.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() < MAX_SIGNED_IN {
            map.insert(
                d,
                SignedIn {
                    name,
                    expires: now + left,
                    checked: now,
                },
            );
        }
    }

    /// When this node last had the sign-in of `token` from Redis (or made
    /// it), if it holds it.
    pub(crate) fn checked(&self, token: &str) -> Option<Instant> {
        self.signed_in.lock().get(&digest(token)).map(|s| s.checked)
    }

    /// Ends a sign-in by its digest (one ended on another node).
    pub(crate) fn forget(&self, d: &Digest32) {
        self.signed_in.lock().remove(d);
    }

    /// Forgets every sign-in this node cached (with `--redis`, they load
    /// again from Redis when next used).
    pub(crate) fn forget_all(&self) {
        self.signed_in.lock().clear();
    }

    /// The failure message of the sign-in limits.
    pub(crate) fn too_many() -> Error {
        Error::rate_limited(format!(
            "too many failed sign-ins (max {FAILS_PER_NAME} per name, {FAILS_TOTAL} in all, a minute): wait a minute"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_agent_name("ann.b-c_1").is_ok());
        assert!(check_agent_name("").is_err());
        assert!(check_agent_name("a b").is_err());
        assert!(check_agent_name(&"a".repeat(33)).is_err());
    }

    #[test]
    fn key_sign_in_and_expiry() {
        let (a, key) = Agents::with_key(Some("0123456789abcdef"), Duration::from_secs(60));
        assert_eq!(key, "0123456789abcdef");
        let bad = Credentials::Key {
            key: "nope".into(),
            name: "ann".into(),
        };
        assert!(a.sign_in(&bad, false).unwrap_err().is_unauthorized());
        let good = Credentials::Key {
            key,
            name: "ann".into(),
        };
        let (name, token) = a.sign_in(&good, false).unwrap();
        assert_eq!(name, "ann");
        assert_eq!(a.who(&token).as_deref(), Some("ann"));
        a.sign_out(&token);
        assert_eq!(a.who(&token), None);
        for _ in 0..5 {
            let _ = a.sign_in(&bad, false);
        }
        assert!(a.sign_in(&good, false).unwrap_err().is_rate_limited());
    }
}
