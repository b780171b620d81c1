//! Help sessions: who asked, what they were looking at, who joined.
//!
//! A help session is made when a customer asks for help and lives until
//! either side ends it or `--help-session-ttl` passes. It has an id from 18
//! random bytes (unguessable, but not a credential: it names the session's
//! channel, `cb.{id}`, and so appears in URLs) and the digest of the
//! customer's token (the credential, kept in an `HttpOnly` cookie). Agents
//! are named in `agents` once they join; being signed in is not enough to
//! read a session.
//!
//! A customer on the phone can show a 6-digit code instead of being found in
//! the list: it expires after [`CODE_TTL`], and an agent who types wrong
//! codes is stopped after [`CODE_FAILS`] of them (see `state.rs`), so the
//! million codes cannot be walked.
//!
//! This file is plain data behind the caller's lock: no I/O, no channels.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::helpers::MAX_CHAT_LINES;
use super::jar::Jar;
use super::secret::{digest, random_below, random_token, Digest32};
use super::store::{now_ms, Stored};

/// How long a phone code stays valid.
pub const CODE_TTL: Duration = Duration::from_secs(600);
/// Wrong phone codes an agent may type in [`CODE_WINDOW`].
pub const CODE_FAILS: u32 = 5;
/// The window of [`CODE_FAILS`].
pub const CODE_WINDOW: Duration = Duration::from_secs(600);

/// Where a help session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Asked for help; no agent yet.
    Waiting,
    /// At least one agent joined.
    Active,
}

/// One help session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    customer: Digest32,
    pub(crate) label: String,
    pub(crate) url: String,
    pub(crate) title: String,
    pub(crate) message: String,
    pub(crate) created_ms: u64,
    pub(crate) created: Instant,
    pub(crate) agents: Vec<String>,
    pub(crate) code: Option<(String, Instant)>,
    /// The application session shared with joined agents (see `share.rs`),
    /// never shown to anyone.
    pub(crate) shared: Option<String>,
    /// The customer's cookies on the proxied application (proxy mode,
    /// `jar.rs`), never shown to anyone.
    pub(crate) jar: Option<Jar>,
    /// Whether the customer lets joined agents act for them: requests
    /// other than GET and HEAD from the agents' view reach the application
    /// only while it is on. The customer turns it on and off.
    pub(crate) control: bool,
    /// Whether the node that made it keeps a cookie jar for it (with
    /// `--redis`: jars stay on that node).
    pub(crate) jar_elsewhere: bool,
    /// When this node last had it from Redis (or made it), with `--redis`.
    pub(crate) checked: Instant,
    /// The jar as this node last read or wrote it in Redis (`--redis`):
    /// what changed since is what to write.
    pub(crate) jar_saved: HashMap<String, String>,
    /// The last [`MAX_CHAT_LINES`] chat lines, `{n, by, from, text}`, for
    /// pages that load after them (a navigation, a reload, a joining agent).
    chat: VecDeque<Value>,
    /// The number of the last chat line (from 1; lines carry it as `n`).
    chat_n: u64,
    /// When the customer's page was last heard from (a ping, a request).
    pub(crate) seen: Instant,
    /// Whether the console shows the customer as online (see
    /// `Sessions::presence`).
    pub(crate) online: bool,
}

impl Session {
    /// Keeps a chat line; returns its number.
    pub(crate) fn keep_chat(&mut self, by: &str, from: &str, text: &str) -> u64 {
        self.chat_n += 1;
        if self.chat.len() >= MAX_CHAT_LINES {
            self.chat.pop_front();
        }
        self.chat
            .push_back(json!({"n": self.chat_n, "by": by, "from": from, "text": text}));
        self.chat_n
    }

    /// The chat kept so far, oldest first.
    pub(crate) fn chat(&self) -> Value {
        Value::from(self.chat.iter().cloned().collect::<Vec<_>>())
    }

    pub(crate) fn state(&self) -> State {
        if self.agents.is_empty() {
            State::Waiting
        } else {
            State::Active
        }
    }

    /// What Redis keeps of it (`store.rs`).
    pub(crate) fn stored(&self) -> Stored {
        Stored {
            id: self.id.clone(),
            customer: self.customer.hex(),
            label: self.label.clone(),
            url: self.url.clone(),
            title: self.title.clone(),
            message: self.message.clone(),
            created_ms: self.created_ms,
            control: self.control,
            jar: self.jar.is_some() || self.jar_elsewhere,
            shared: self.shared.clone(),
            online: self.online,
            agents: self.agents.clone(),
        }
    }

    /// A session another node made (or this node before a restart), from
    /// Redis; `None` if its customer digest is not one.
    pub(crate) fn restore(st: Stored) -> Option<Session> {
        let customer = Digest32::from_hex(&st.customer)?;
        let age = Duration::from_millis(now_ms().saturating_sub(st.created_ms));
        let now = Instant::now();
        let mut s = Session {
            id: st.id.clone(),
            customer,
            label: String::new(),
            url: String::new(),
            title: String::new(),
            message: String::new(),
            created_ms: st.created_ms,
            created: now.checked_sub(age).unwrap_or(now),
            agents: Vec::new(),
            code: None,
            shared: None,
            jar: None,
            control: false,
            jar_elsewhere: false,
            checked: now,
            jar_saved: HashMap::new(),
            chat: VecDeque::new(),
            chat_n: 0,
            seen: now,
            online: true,
        };
        s.update(st);
        Some(s)
    }

    /// Takes what Redis says (the jar stays this node's).
    pub(crate) fn update(&mut self, st: Stored) {
        self.label = st.label;
        self.url = st.url;
        self.title = st.title;
        self.message = st.message;
        self.agents = st.agents;
        self.control = st.control;
        self.shared = st.shared;
        self.online = st.online;
        self.jar_elsewhere = st.jar;
        self.checked = Instant::now();
    }

    /// The channel the session's events travel on.
    pub(crate) fn channel(&self) -> String {
        channel_of(&self.id)
    }

    /// Whether `token` is this session's customer token.
    pub(crate) fn is_customer(&self, token: &str) -> bool {
        digest(token) == self.customer
    }

    /// What the console shows (no token, no code, no shared session).
    pub(crate) fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "label": self.label,
            "url": self.url,
            "title": self.title,
            "message": self.message,
            "created": self.created_ms,
            "state": match self.state() { State::Waiting => "waiting", State::Active => "active" },
            "agents": self.agents,
            "online": self.online,
            "control": self.control,
            "can_control": self.jar.is_some() || self.jar_elsewhere,
        })
    }
}

/// The channel of session `id`.
pub(crate) fn channel_of(id: &str) -> String {
    format!("cb.{id}")
}

/// Every open help session, and the phone codes that point at them.
#[derive(Default)]
pub(crate) struct Sessions {
    pub(crate) map: HashMap<String, Session>,
    codes: HashMap<String, String>,
    counter: u64,
}

/// What the customer asked with.
pub(crate) struct Ask {
    pub(crate) label: Option<String>,
    pub(crate) url: String,
    pub(crate) title: String,
    pub(crate) message: String,
    pub(crate) shared: Option<String>,
    pub(crate) jar: Option<Jar>,
}

impl Sessions {
    /// Makes a session; returns its id and the customer's token.
    pub(crate) fn create(&mut self, ask: Ask) -> (String, String) {
        self.counter += 1;
        let id = random_token(18);
        let token = random_token(32);
        let session = Session {
            id: id.clone(),
            customer: digest(&token),
            label: ask
                .label
                .unwrap_or_else(|| format!("visitor {}", self.counter)),
            url: ask.url,
            title: ask.title,
            message: ask.message,
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            created: Instant::now(),
            agents: Vec::new(),
            code: None,
            shared: ask.shared,
            jar: ask.jar,
            control: false,
            jar_elsewhere: false,
            checked: Instant::now(),
            jar_saved: HashMap::new(),
            chat: VecDeque::new(),
            chat_n: 0,
            seen: Instant::now(),
            online: true,
        };
        self.map.insert(id.clone(), session);
        (id, token)
    }

    /// Takes a session as Redis has it into this node's cache.
    pub(crate) fn upsert(&mut self, st: Stored) {
        match self.map.get_mut(&st.id) {
            Some(s) => s.update(st),
            None => {
                if let Some(s) = Session::restore(st) {
                    self.map.insert(s.id.clone(), s);
                }
            }
        }
    }

    /// Removes a session and its code.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Session> {
        let s = self.map.remove(id)?;
        if let Some((code, _)) = &s.code {
            self.codes.remove(code);
        }
        Some(s)
    }

    /// The sessions older than `ttl`, removed.
    pub(crate) fn expire(&mut self, ttl: Duration) -> Vec<Session> {
        let old: Vec<String> = self
            .map
            .values()
            .filter(|s| s.created.elapsed() >= ttl)
            .map(|s| s.id.clone())
            .collect();
        old.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The customer of session `id` was heard from; true if that brings
    /// them back online (the console's list changes).
    pub(crate) fn seen(&mut self, id: &str) -> bool {
        let Some(s) = self.map.get_mut(id) else {
            return false;
        };
        s.seen = Instant::now();
        !std::mem::replace(&mut s.online, true)
    }

    /// Marks gone the customers not heard from for `timeout`; true if any
    /// changed (the console's list changes).
    pub(crate) fn presence(&mut self, timeout: Duration) -> bool {
        let mut changed = false;
        for s in self.map.values_mut() {
            let online = s.seen.elapsed() < timeout;
            if online != s.online {
                s.online = online;
                changed = true;
            }
        }
        changed
    }

    /// Gives session `id` a fresh 6-digit code (replacing its old one).
    pub(crate) fn new_code(&mut self, id: &str) -> Option<String> {
        let now = Instant::now();
        self.codes.retain(|_, sid| {
            self.map
                .get(sid)
                .and_then(|s| s.code.as_ref())
                .is_some_and(|(_, t)| *t > now)
        });
        let old = self.map.get(id)?.code.clone();
        if let Some((c, _)) = old {
            self.codes.remove(&c);
        }
        let code = loop {
            let c = format!("{:06}", random_below(1_000_000));
            if !self.codes.contains_key(&c) {
                break c;
            }
        };
        self.codes.insert(code.clone(), id.to_string());
        self.map.get_mut(id)?.code = Some((code.clone(), now + CODE_TTL));
        Some(code)
    }

    /// The session a code points at, if the code is current. A used code is spent.
    pub(crate) fn redeem(&mut self, code: &str) -> Option<String> {
        let id = self.codes.get(code)?.clone();
        let s = self.map.get_mut(&id)?;
        let current = s
            .code
            .as_ref()
            .is_some_and(|(c, t)| c == code && *t > Instant::now());
        self.codes.remove(code);
        s.code = None;
        current.then_some(id)
    }

    /// Summaries of every session, oldest first.
    pub(crate) fn list(&self) -> Vec<Value> {
        let mut v: Vec<&Session> = self.map.values().collect();
        v.sort_by_key(|s| s.created);
        v.into_iter().map(Session::summary).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> Ask {
        Ask {
            label: None,
            url: "/".into(),
            title: "t".into(),
            message: String::new(),
            shared: None,
            jar: None,
        }
    }

    #[test]
    fn tokens_and_codes() {
        let mut s = Sessions::default();
        let (id, token) = s.create(ask());
        let (id2, _) = s.create(ask());
        assert_ne!(id, id2);
        assert!(s.map[&id].is_customer(&token));
        assert!(!s.map[&id2].is_customer(&token));
        let code = s.new_code(&id).unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(s.redeem("x"), None);
        assert_eq!(s.redeem(&code).as_deref(), Some(id.as_str()));
        assert_eq!(s.redeem(&code), None, "a code is spent once used");
        assert_eq!(s.list().len(), 2);
        s.remove(&id);
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn the_chat_is_kept_bounded_and_numbered() {
        let mut s = Sessions::default();
        let (id, _) = s.create(ask());
        let session = s.map.get_mut(&id).unwrap();
        for i in 0..MAX_CHAT_LINES + 3 {
            assert_eq!(
                session.keep_chat("ann", "agent:ann", &format!("line {i}")),
                i as u64 + 1
            );
        }
        let chat = session.chat();
        let chat = chat.as_array().unwrap();
        assert_eq!(chat.len(), MAX_CHAT_LINES);
        assert_eq!(chat[0]["n"], 4);
        assert_eq!(chat[0]["text"], "line 3");
        assert_eq!(chat.last().unwrap()["n"], MAX_CHAT_LINES as u64 + 3);
    }
}
