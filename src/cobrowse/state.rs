//! The co-browsing state and what can be done with it, with no HTTP in it.
//!
//! [`Cobrowse`] holds the help sessions, the agents and their sign-ins, the
//! audit log, the phone-code guess counts and the console publisher. Its
//! operations take plain inputs (the values of the co-browsing cookies a
//! request carried, an [`Ask`], a [`Say`]) and give plain outputs (ids,
//! tokens, JSON values for the answers), refusing with a [`crate::Error`]
//! that says what and names the limit. `routes.rs` turns requests into these
//! calls and their results into answers; `gate.rs` decides who reads which
//! `cb.` channel.
//!
//! Locks (`parking_lot`) are held for a few map operations and never while
//! publishing, writing the audit log or awaiting: every operation changes
//! the state under the lock, lets it go, then tells the channels, the audit
//! writer and the console publisher.
//!
//! With `--redis` the maps here are a cache: each operation that changes
//! the state writes it to Redis (`store.rs`) before it answers, and refuses
//! with 503 when Redis does not take it; `sync.rs` fills the cache before a
//! request is decided and keeps it in step with the other nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::agents::{Agents, Credentials, FAILS_PER_NAME, FAILS_TOTAL, FAIL_WINDOW};
use super::audit::Audit;
use super::class::Classes;
use super::console::{Console, CONSOLE_CHANNEL};
use super::portal::Portal;
use super::session::{channel_of, Ask, Sessions, CODE_FAILS, CODE_TTL, CODE_WINDOW};
use super::settings::{load_canned, CobrowseConfig, SetupError};
use super::share::ShareSession;
use super::store::{now_ms, Store};
use crate::error::Error;
use crate::{Hub, NewEvent};

/// Co-browsing: help sessions, agents, the audit log and the channel gate.
/// Cheap to clone. Mount it with [`crate::Service::with_app`]; with
/// [`Cobrowse::with_portal`] it serves the demo portal too.
#[derive(Clone)]
pub struct Cobrowse {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cobrowse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cobrowse")
            .field("sessions", &self.inner.sessions.lock().map.len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    hub: Hub,
    settings: CobrowseConfig,
    pub(crate) agents: Agents,
    /// With `--redis`, the store of record (`store.rs`, `sync.rs`).
    pub(crate) store: Option<Store>,
    /// Whether the task following the other nodes' notices runs.
    pub(crate) syncing: AtomicBool,
    /// Dropped with the state: stops that task.
    pub(crate) stop: tokio::sync::watch::Sender<()>,
    key: Option<String>,
    pub(crate) sessions: Mutex<Sessions>,
    pub(crate) audit: Audit,
    canned: Vec<String>,
    code_fails: Mutex<HashMap<String, (Instant, u32)>>,
    share: OnceLock<Arc<dyn ShareSession>>,
    console: Console,
    portal: OnceLock<Portal>,
    /// Whether the task that marks silent customers gone runs.
    watching: AtomicBool,
    /// The open classes (classroom mode, `class.rs`).
    classes: Mutex<Classes>,
    /// Whether help sessions keep the customer's cookies on the proxied
    /// application (`proxied.rs`).
    pub(crate) jars: AtomicBool,
}

/// The co-browsing cookies a request carried: their values, unchecked.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cookies {
    /// The customer's `{session id}.{token}`.
    pub(crate) help: Option<String>,
    /// The agent's sign-in token.
    pub(crate) agent: Option<String>,
    /// A class presenter's `{class id}.{token}` (see `class.rs`).
    pub(crate) present: Option<String>,
    /// A class follower's `{class id}.{follower id}.{token}`.
    pub(crate) follow: Option<String>,
}

/// Who is speaking in a help session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    Customer,
    Agent(String),
    /// The server itself (a session that timed out).
    Server,
}

impl Who {
    fn client_id(&self) -> String {
        match self {
            Who::Customer => "customer".into(),
            Who::Agent(n) => format!("agent:{n}"),
            Who::Server => "server".into(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Who::Customer => "customer",
            Who::Agent(n) => n,
            Who::Server => "timeout",
        }
    }

    pub(crate) fn is_agent(&self) -> bool {
        matches!(self, Who::Agent(_))
    }
}

/// A checked event a participant sends into a help session (`end` is
/// [`Cobrowse::end`]). URLs are paths within the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Say {
    /// An agent sends the customer to `url`.
    Push { url: String },
    /// An agent asks for the customer's page.
    Pull,
    /// The customer answers a pull.
    Pulled { url: String, title: String },
    /// A page load on either side.
    Nav {
        url: String,
        title: String,
        text: String,
    },
    /// A clicked link, which blinks on both sides before both navigate.
    Click {
        url: String,
        title: String,
        text: String,
    },
    /// A chat line, not blank.
    Chat { text: String },
}

impl Cobrowse {
    /// Co-browsing over `hub` with `settings`: agents from the agents file
    /// (or a per-run key), the audit log, the canned replies. The error
    /// names the setting, or the file and line.
    pub fn new(hub: Hub, settings: CobrowseConfig) -> Result<Cobrowse, SetupError> {
        settings.validate()?;
        let ttl = settings.agent_session_ttl;
        let (agents, key) = match &settings.agents_file {
            Some(p) => (Agents::from_file(p, ttl)?, None),
            None => {
                let (a, k) = Agents::with_key(settings.agent_key.as_deref(), ttl);
                // A key the caller chose is the caller's to show; only a made one is printable.
                (a, settings.agent_key.is_none().then_some(k))
            }
        };
        let audit = match &settings.audit_file {
            Some(p) => Audit::open(p, hub.node())
                .map_err(|e| SetupError::file(format!("--audit {}: {e}", p.display())))?,
            None => Audit::off(),
        };
        let canned = load_canned(settings.canned_file.as_deref())?;
        let store = hub.redis().map(|r| Store::new(r.connection()));
        let cb = Cobrowse {
            inner: Arc::new(Inner {
                hub,
                settings,
                agents,
                store,
                syncing: AtomicBool::new(false),
                stop: tokio::sync::watch::channel(()).0,
                key,
                sessions: Mutex::new(Sessions::default()),
                audit,
                canned,
                code_fails: Mutex::new(HashMap::new()),
                share: OnceLock::new(),
                console: Console::default(),
                portal: OnceLock::new(),
                watching: AtomicBool::new(false),
                classes: Mutex::new(Classes::default()),
                jars: AtomicBool::new(false),
            }),
        };
        // With `--redis`, hear the other nodes from now on.
        cb.start_sync();
        Ok(cb)
    }

    /// Shares the application's session with joined agents (see
    /// [`ShareSession`]). Set once: a second call is ignored (and logged).
    pub fn with_share(self, share: Arc<dyn ShareSession>) -> Cobrowse {
        if self.inner.share.set(share).is_err() {
            log::warn!("Cobrowse::with_share called twice; the first one stays");
        }
        self
    }

    /// The per-run agent key this instance made (no agents file and no key
    /// given), for the program to show its operator; `None` otherwise.
    pub fn printable_key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }

    /// The agent sign-in link for the per-run key this instance made, on a
    /// server listening at `addr` (one listening on every interface gets
    /// this machine's own, `127.0.0.1`); `None` when it made no key. The key
    /// is in the fragment, which browsers never send to a server. Nothing is
    /// printed: showing it is the program's choice.
    pub fn sign_in_link(&self, addr: SocketAddr) -> Option<String> {
        let key = self.printable_key()?;
        let mut addr = addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Some(format!("http://{addr}/agent#key={key}"))
    }

    /// Adds the demo portal; false if it was there already.
    pub(crate) fn set_portal(&self, portal: Portal) -> bool {
        self.inner.portal.set(portal).is_ok()
    }

    /// The demo portal, if it is mounted and claims `path`.
    pub(crate) fn portal(&self, path: &str) -> Option<&Portal> {
        self.inner.portal.get().filter(|p| p.claims(path))
    }

    /// Waits until the audit lines recorded so far are in the file.
    pub(crate) async fn audited(&self) {
        self.inner.audit.written().await;
    }

    /// With `--redis`, where the state is kept (`store.rs`).
    pub(crate) fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// The end of session `id`'s lifetime, ms since 1970.
    fn ends_ms(&self, created_ms: u64) -> u64 {
        created_ms + self.inner.settings.help_session_ttl.as_millis() as u64
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub(crate) fn settings(&self) -> &CobrowseConfig {
        &self.inner.settings
    }

    pub(crate) fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    pub(crate) fn classes(&self) -> &Mutex<Classes> {
        &self.inner.classes
    }

    pub(crate) fn canned(&self) -> &[String] {
        &self.inner.canned
    }

    pub(crate) fn share(&self) -> Option<&Arc<dyn ShareSession>> {
        self.inner.share.get()
    }

    /// The signed-in agent named by a sign-in token, if any.
    pub(crate) fn agent_named(&self, cookies: &Cookies) -> Option<String> {
        cookies
            .agent
            .as_deref()
            .and_then(|t| self.inner.agents.who(t))
    }

    /// The signed-in agent of a request, or 401.
    pub(crate) fn agent(&self, cookies: &Cookies) -> Result<String, Error> {
        self.agent_named(cookies)
            .ok_or_else(|| Error::unauthorized("agents only: sign in at /agent"))
    }

    /// The customer's session id, if the request carries a valid customer cookie.
    pub(crate) fn customer(&self, cookies: &Cookies) -> Option<String> {
        let (id, token) = cookies.help.as_deref()?.split_once('.')?;
        let ttl = self.inner.settings.help_session_ttl;
        let sessions = self.inner.sessions.lock();
        sessions
            .map
            .get(id)
            .filter(|s| s.is_customer(token) && s.created.elapsed() < ttl)
            .map(|s| s.id.clone())
    }

    /// Who may speak in a session: the customer by cookie, or a joined agent
    /// naming the session.
    pub(crate) fn participant(
        &self,
        cookies: &Cookies,
        named: Option<&str>,
    ) -> Result<(String, Who), Error> {
        if let Some(id) = self.customer(cookies) {
            if named.is_none_or(|n| n == id) {
                return Ok((id, Who::Customer));
            }
        }
        let agent = match self.agent(cookies) {
            Ok(a) => a,
            Err(_) if cookies.help.is_some() => {
                return Err(Error::forbidden(
                    "not a participant of this help session (it may have ended)",
                ))
            }
            Err(_) => {
                return Err(Error::unauthorized(
                    "ask for help first, or sign in as an agent",
                ))
            }
        };
        let id = named.ok_or_else(|| Error::bad_request("session is required for agents"))?;
        let ttl = self.inner.settings.help_session_ttl;
        let sessions = self.inner.sessions.lock();
        match sessions.map.get(id).filter(|s| s.created.elapsed() < ttl) {
            None => Err(Error::not_found("no such help session (it may have ended)")),
            Some(s) if s.agents.contains(&agent) => Ok((id.to_string(), Who::Agent(agent))),
            Some(_) => Err(Error::forbidden("join this help session first")),
        }
    }

    /// The application session of help session `id`, which a page of an
    /// agent's view names, if the agent joined it (see `share.rs`).
    pub(crate) fn shared_of(&self, cookies: &Cookies, id: &str) -> Option<String> {
        let agent = self.agent_named(cookies)?;
        let sessions = self.inner.sessions.lock();
        let s = sessions.map.get(id)?;
        if s.agents.contains(&agent) {
            s.shared.clone()
        } else {
            None
        }
    }

    /// Whether `agent` joined session `id`, if the session is open (not
    /// ended, not past its lifetime).
    pub(crate) fn joined_open(&self, id: &str, agent: &str) -> Option<bool> {
        let ttl = self.inner.settings.help_session_ttl;
        let sessions = self.inner.sessions.lock();
        let s = sessions.map.get(id).filter(|s| s.created.elapsed() < ttl)?;
        Some(s.agents.iter().any(|a| a == agent))
    }

    pub(crate) async fn publish(&self, id: &str, kind: &str, who: &Who, data: Value) {
        if let Err(e) = self.try_publish(id, kind, who, data).await {
            log::warn!("co-browse event for {id} refused: {e}");
        }
    }

    /// `publish`, refused when the event could not be stored (with
    /// `--redis`, Redis unreachable: 503), for a participant's own event.
    async fn try_publish(&self, id: &str, kind: &str, who: &Who, data: Value) -> Result<(), Error> {
        let ev = NewEvent {
            kind: kind.to_string(),
            data: Bytes::from(data.to_string()),
            content_type: Some("application/json".into()),
            from: Some(who.client_id()),
        };
        self.hub().publish(&channel_of(id), ev).await.map(|_| ())
    }

    /// Republishes the console list after a change to it (see `console.rs`):
    /// the snapshot is taken under the sessions lock, which is let go before
    /// the publish is awaited.
    pub(crate) async fn publish_list(&self) {
        if let Some(store) = self.store() {
            return self.publish_shared_list(store).await;
        }
        let publish_current = || async {
            let list = self.inner.sessions.lock().list();
            let ev = sessions_event(&list);
            if let Err(e) = self.hub().publish(CONSOLE_CHANNEL, ev).await {
                log::warn!("console list refused: {e}");
            }
        };
        self.inner.console.changed(publish_current).await;
    }

    /// With `--redis`: several nodes publish the list, each after its own
    /// change, so a node's snapshot may be older than another's published
    /// before it. Each change bumps a counter in Redis after it is stored;
    /// a publisher reads the counter, then the list (from Redis), publishes
    /// it, and reads the counter again: changed, it goes round again. So the
    /// last list on `cb.console` is the current one: a change counted after
    /// the publisher's second read is published by its own node after it.
    async fn publish_shared_list(&self, store: &Store) {
        if let Err(e) = store.changed().await {
            log::warn!("console list not republished: {e}");
            return;
        }
        let publish_current = || async {
            loop {
                let Ok(before) = store.version().await else {
                    return;
                };
                let list = match self.shared_list().await {
                    Ok(l) => l,
                    Err(e) => {
                        log::warn!("console list not republished: {e}");
                        return;
                    }
                };
                let ev = sessions_event(&list);
                if let Err(e) = self.hub().publish(CONSOLE_CHANNEL, ev).await {
                    log::warn!("console list refused: {e}");
                    return;
                }
                match store.version().await {
                    Ok(after) if after != before => continue,
                    _ => return,
                }
            }
        };
        self.inner.console.changed(publish_current).await;
    }

    /// With `--redis`, every open session's summary from Redis, oldest
    /// first; this node's cache takes them too.
    async fn shared_list(&self) -> Result<Vec<Value>, Error> {
        let Some(store) = self.store() else {
            return Ok(self.inner.sessions.lock().list());
        };
        let all = store.all().await?;
        let ttl = self.inner.settings.help_session_ttl.as_millis() as u64;
        let now = now_ms();
        let mut out = Vec::with_capacity(all.len());
        let mut sessions = self.inner.sessions.lock();
        for st in all {
            if now.saturating_sub(st.created_ms) >= ttl {
                continue;
            }
            if let Some(s) = super::session::Session::restore(st.clone()) {
                out.push(s.summary());
            }
            sessions.upsert(st);
        }
        Ok(out)
    }

    /// Every open session's summary, oldest first, and the console
    /// channel's last id to resume the live list from. The id is read
    /// first: a change the list misses is published after it, so a console
    /// that resumes from it hears of that change.
    pub(crate) async fn list(&self) -> Result<(Vec<Value>, String), Error> {
        // A cursor with the epoch: a console resuming from it after a
        // restart gets a reset, never a silent skip.
        let since = self.hub().info(CONSOLE_CHANNEL).cursor().to_string();
        let list = self.shared_list().await?;
        Ok((list, since))
    }

    /// The customer of session `id` was heard from (a ping, a request):
    /// if they were shown as gone, the console's list changes.
    pub(crate) async fn heard(&self, id: &str) -> Result<(), Error> {
        let mut back = self.inner.sessions.lock().seen(id);
        if let Some(store) = self.store() {
            back = store.heard(id).await?;
        }
        if back {
            self.publish_list().await;
        }
        Ok(())
    }

    /// Marks gone the customers not heard from for `--presence-timeout`,
    /// and republishes the list if any changed.
    pub(crate) async fn check_presence(&self) {
        let timeout = self.inner.settings.presence_timeout;
        let mut changed = self.inner.sessions.lock().presence(timeout);
        if let Some(store) = self.store() {
            // Redis knows when the customer was last heard on any node.
            changed = store.presence(timeout).await.unwrap_or_else(|e| {
                log::warn!("presence not checked: {e}");
                false
            });
        }
        if changed {
            self.publish_list().await;
        }
    }

    /// How often the customer's page pings: a third of the presence timeout.
    pub(crate) fn ping_every(&self) -> Duration {
        self.inner.settings.presence_timeout / 3
    }

    /// Starts, once and on the current tokio runtime, the task that checks
    /// presence every quarter of the presence timeout, so a closed page
    /// shows as gone within 1.25 times it with nobody asking. The task
    /// holds the state weakly and stops when the last `Cobrowse` goes.
    pub(crate) fn watch_presence(&self) {
        if self.inner.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.watching.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let every = (self.inner.settings.presence_timeout / 4).max(Duration::from_millis(100));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                Cobrowse { inner }.check_presence().await;
            }
        });
    }

    /// Ends sessions past their lifetime.
    pub(crate) async fn expire(&self) {
        let ttl = self.inner.settings.help_session_ttl;
        let mut old: Vec<String> = self
            .inner
            .sessions
            .lock()
            .expire(ttl)
            .into_iter()
            .map(|s| s.id)
            .collect();
        if let Some(store) = self.store() {
            // The one node that takes a session off the list announces its end.
            old.clear();
            let before = now_ms().saturating_sub(ttl.as_millis() as u64);
            for id in store.older_than(before).await.unwrap_or_default() {
                if store.end(&id).await.unwrap_or(false) {
                    old.push(id);
                }
            }
        }
        for id in &old {
            self.publish(id, "end", &Who::Server, json!({"by": "timeout"}))
                .await;
            self.close_after_end(&channel_of(id), "end", id).await;
            self.inner.audit.record(
                "ended",
                &[("session", id.as_str().into()), ("by", "timeout".into())],
            );
        }
        if !old.is_empty() {
            self.publish_list().await;
        }
    }

    /// Opens a help session; returns its id and the customer's token.
    pub(crate) async fn open(&self, ask: Ask) -> Result<(String, String), Error> {
        let max = self.inner.settings.max_help_sessions;
        let shared = ask.shared.is_some();
        let full = || {
            Error::rate_limited(format!(
                "too many open help sessions (max {max}): try again in a while"
            ))
        };
        let mut ask = ask;
        if let Some(store) = self.store() {
            if store.count().await? >= max {
                return Err(full());
            }
            if ask.label.is_none() {
                ask.label = Some(format!("visitor {}", store.next_visitor().await?));
            }
        }
        let (id, token) = {
            let mut sessions = self.inner.sessions.lock();
            if sessions.map.len() >= max {
                return Err(full());
            }
            sessions.create(ask)
        };
        if let Some(store) = self.store() {
            let stored = self.inner.sessions.lock().map.get(&id).map(|s| s.stored());
            if let Some(st) = stored {
                if let Err(e) = store.create(&st, self.ends_ms(st.created_ms)).await {
                    // Never a session the other nodes cannot see.
                    self.inner.sessions.lock().remove(&id);
                    let _ = store.end(&id).await;
                    return Err(e);
                }
            }
        }
        self.inner.audit.record(
            "created",
            &[
                ("session", id.as_str().into()),
                ("by", "customer".into()),
                ("shared_app_session", shared.into()),
            ],
        );
        self.publish_list().await;
        Ok((id, token))
    }

    /// What the customer sees of their session: its summary, its channel
    /// and where to resume it, and what is (not) shared.
    pub(crate) async fn session_view(&self, id: &str) -> Result<Value, Error> {
        // The cursor first, then the chat: a line kept in between is both in
        // the chat and after the cursor, and clients drop it by its `n`;
        // none is in neither.
        let since = self.hub().info(&channel_of(id)).cursor().to_string();
        let chat = match self.store() {
            Some(store) => {
                // What other nodes changed (an agent joined there).
                self.refresh(id).await?;
                Some(store.chat(id).await?)
            }
            None => None,
        };
        let sessions = self.inner.sessions.lock();
        let s = sessions
            .map
            .get(id)
            .ok_or_else(|| Error::not_found("no help session (it has ended)"))?;
        let mut shared = vec![
            "the address and title of the pages of this site you open while the session lasts",
            "the links you click on this site",
            "the chat",
        ];
        if s.shared.is_some() || s.jar.is_some() {
            shared.push("your session on this site (for example your cart), for the agent to see");
        }
        let mut v = s.summary();
        v["channel"] = Value::from(s.channel());
        v["chat"] = chat.map_or_else(|| s.chat(), Value::from);
        v["ping_every"] = Value::from(self.ping_every().as_millis() as u64);
        v["shared"] = json!(shared);
        v["not_shared"] = json!([
            "other tabs and other sites",
            "what you type into forms",
            "your cookies and passwords"
        ]);
        drop(sessions);
        v["since"] = Value::from(since);
        Ok(v)
    }

    /// A fresh phone code for session `id`, and how long it lasts.
    pub(crate) async fn issue_code(&self, id: &str) -> Result<(String, u64), Error> {
        let code = match self.store() {
            Some(store) => store.new_code(id, CODE_TTL).await?,
            None => self
                .inner
                .sessions
                .lock()
                .new_code(id)
                .ok_or_else(|| Error::not_found("no help session (it has ended)"))?,
        };
        self.inner
            .audit
            .record("code_issued", &[("session", id.into())]);
        Ok((code, CODE_TTL.as_secs()))
    }

    /// The session a phone code points at; wrong codes are counted per agent.
    pub(crate) async fn redeem(&self, agent: &str, code: &str) -> Result<String, Error> {
        let too_many = || {
            Error::rate_limited(format!(
                "too many wrong codes (max {CODE_FAILS} in {} minutes): find the session in the list",
                CODE_WINDOW.as_secs() / 60
            ))
        };
        let fails_key = format!("tandem:cb:codefail:{agent}");
        if let Some(store) = self.store() {
            // Counted in Redis: wrong codes typed on every node add up.
            if store.count_of(&fails_key).await? >= u64::from(CODE_FAILS) {
                return Err(too_many());
            }
        } else {
            let mut fails = self.inner.code_fails.lock();
            fails.retain(|_, (t, _)| t.elapsed() < CODE_WINDOW);
            if fails.get(agent).is_some_and(|(_, n)| *n >= CODE_FAILS) {
                return Err(too_many());
            }
        }
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(store) = self.store() {
                // GETDEL: a code is spent on every node at once.
                if let Some(id) = store.redeem(code).await? {
                    if self.refresh(&id).await? {
                        return Ok(id);
                    }
                }
            } else if let Some(id) = self.inner.sessions.lock().redeem(code) {
                return Ok(id);
            }
        }
        if let Some(store) = self.store() {
            store.bump(&fails_key, CODE_WINDOW).await?;
        } else {
            self.inner
                .code_fails
                .lock()
                .entry(agent.to_string())
                .or_insert((Instant::now(), 0))
                .1 += 1;
        }
        self.inner
            .audit
            .record("code_failed", &[("agent", agent.into())]);
        Err(Error::not_found(
            "no help session has this code (6 digits, valid 10 minutes)",
        ))
    }

    /// `agent` joins session `id` (found `via` the list or a code); returns
    /// the session's summary with its channel and where to resume it.
    pub(crate) async fn join(&self, agent: &str, id: &str, via: &str) -> Result<Value, Error> {
        if let Some(store) = self.store() {
            if !self.refresh(id).await? {
                return Err(Error::not_found("no such help session (it may have ended)"));
            }
            let created = self
                .inner
                .sessions
                .lock()
                .map
                .get(id)
                .map_or(0, |s| s.created_ms);
            // SADD: of two nodes adding one agent at once, one hears it is new.
            let first = store.join(id, agent, self.ends_ms(created)).await?;
            if let Some(s) = self.inner.sessions.lock().map.get_mut(id) {
                if !s.agents.iter().any(|a| a == agent) {
                    s.agents.push(agent.to_string());
                }
            }
            return self.joined(agent, id, via, first).await;
        }
        let first = {
            let mut sessions = self.inner.sessions.lock();
            let s = sessions
                .map
                .get_mut(id)
                .ok_or_else(|| Error::not_found("no such help session (it may have ended)"))?;
            if s.agents.iter().any(|a| a == agent) {
                false
            } else {
                s.agents.push(agent.to_string());
                true
            }
        };
        self.joined(agent, id, via, first).await
    }

    /// What follows `agent` joining session `id` (`first`: not joined
    /// before): the `joined` event, the audit, the list; the answer.
    async fn joined(&self, agent: &str, id: &str, via: &str, first: bool) -> Result<Value, Error> {
        if first {
            let who = Who::Agent(agent.to_string());
            self.publish(id, "joined", &who, json!({"agent": agent}))
                .await;
            self.notify("joined", json!({"id": id, "agent": agent}))
                .await;
            self.inner.audit.record(
                "joined",
                &[
                    ("session", id.into()),
                    ("agent", agent.into()),
                    ("via", via.into()),
                ],
            );
            self.publish_list().await;
        }
        // The cursor before the chat, as in `session_view`.
        let since = self.hub().info(&channel_of(id)).cursor().to_string();
        let chat = match self.store() {
            Some(store) => Some(store.chat(id).await?),
            None => None,
        };
        let sessions = self.inner.sessions.lock();
        let mut v = sessions
            .map
            .get(id)
            .map(|s| {
                let mut v = s.summary();
                v["chat"] = chat.clone().map_or_else(|| s.chat(), Value::from);
                v
            })
            .unwrap_or_default();
        drop(sessions);
        v["channel"] = Value::from(channel_of(id));
        v["since"] = Value::from(since);
        Ok(v)
    }

    /// A participant's event into session `id`: audited, then published
    /// with `from` set by the server. A chat line is kept with the session
    /// first (see `Session::keep_chat`); its number is returned.
    pub(crate) async fn say(&self, id: &str, who: &Who, say: Say) -> Result<Option<u64>, Error> {
        let mut number = None;
        let audit = &self.inner.audit;
        let sid = || ("session", Value::from(id));
        let by = || ("by", Value::from(who.name()));
        let (kind, data) = match say {
            Say::Push { url } => {
                audit.record("pushed", &[sid(), by(), ("url", url.as_str().into())]);
                ("push", json!({"by": who.name(), "url": url}))
            }
            Say::Pull => {
                audit.record("pull_asked", &[sid(), by()]);
                ("pull", json!({"by": who.name()}))
            }
            Say::Pulled { url, title } => {
                audit.record("pulled", &[sid(), by(), ("url", url.as_str().into())]);
                (
                    "pulled",
                    json!({"by": who.name(), "url": url, "title": title}),
                )
            }
            Say::Nav { url, title, text } => {
                if let (Some(store), false) = (self.store(), who.is_agent()) {
                    store
                        .set(id, &[("url", url.as_str()), ("title", title.as_str())])
                        .await?;
                }
                if !who.is_agent() {
                    let mut sessions = self.inner.sessions.lock();
                    if let Some(s) = sessions.map.get_mut(id) {
                        s.url = url.clone();
                        s.title = title.clone();
                    }
                }
                let data = json!({"by": who.name(), "url": url, "title": title, "text": text});
                ("nav", data)
            }
            Say::Click { url, title, text } => {
                audit.record("clicked", &[sid(), by(), ("url", url.as_str().into())]);
                let data = json!({"by": who.name(), "url": url, "title": title, "text": text});
                ("click", data)
            }
            Say::Chat { text } => {
                let mut fields = vec![sid(), by(), ("length", Value::from(text.chars().count()))];
                if self.inner.settings.audit_chat_text {
                    fields.push(("text", Value::from(text.as_str())));
                }
                audit.record("chat", &fields);
                // The customer speaks under the session's label, the name the list shows.
                let (mut n, name, created) = {
                    let mut sessions = self.inner.sessions.lock();
                    match sessions.map.get_mut(id) {
                        Some(s) => {
                            let name = match who {
                                Who::Customer => s.label.clone(),
                                _ => who.name().to_string(),
                            };
                            (
                                s.keep_chat(&name, &who.client_id(), &text),
                                name,
                                s.created_ms,
                            )
                        }
                        None => (0, who.name().to_string(), 0),
                    }
                };
                if let Some(store) = self.store() {
                    // Numbered and kept in Redis: lines said on every node
                    // get one sequence, and a page on any node loads them.
                    let line = json!({"by": name, "from": who.client_id(), "text": text});
                    let line = line.to_string();
                    n = store
                        .keep_chat(id, &line[1..], self.ends_ms(created))
                        .await?;
                }
                number = Some(n);
                ("chat", json!({"by": name, "text": text, "n": n}))
            }
        };
        if kind == "nav" && !who.is_agent() {
            self.publish_list().await;
        }
        self.try_publish(id, kind, who, data).await?;
        Ok(number)
    }

    /// Ends session `id`: everyone on its channel hears `end`, the channel
    /// closes, the console list changes. Whether it was open.
    pub(crate) async fn end(&self, id: &str, who: &Who) -> Result<bool, Error> {
        let had = self.inner.sessions.lock().remove(id).is_some();
        let ended = match self.store() {
            // The one node that takes it off the list announces the end.
            Some(store) => store.end(id).await?,
            None => had,
        };
        if !ended {
            return Ok(false);
        }
        self.publish(id, "end", who, json!({"by": who.name()}))
            .await;
        // Close the session's channel: open streams deliver the `end` event
        // and then end, waiting long-polls answer at once.
        self.close_after_end(&channel_of(id), "end", id).await;
        self.inner.audit.record(
            "ended",
            &[("session", id.into()), ("by", who.name().into())],
        );
        self.publish_list().await;
        Ok(true)
    }

    /// Checks an agent's credentials (off the async workers: argon2 takes
    /// tens of milliseconds); returns the agent's name and a new sign-in
    /// token.
    pub(crate) async fn sign_in(&self, creds: Credentials) -> Result<(String, String), Error> {
        let name_of = match &creds {
            Credentials::Password { name, .. } | Credentials::Key { name, .. } => name.clone(),
        };
        let (per_name, total) = (
            format!("tandem:cb:signfail:{name_of}"),
            "tandem:cb:signfail".to_string(),
        );
        if let Some(store) = self.store() {
            // Failures on every node count together.
            if store.count_of(&per_name).await? >= u64::from(FAILS_PER_NAME)
                || store.count_of(&total).await? >= u64::from(FAILS_TOTAL)
            {
                return Err(Agents::too_many());
            }
        }
        // With --redis, another live node's per-run key signs in here too.
        let other_key = match (self.store(), &creds) {
            (Some(store), Credentials::Key { key, .. }) if self.uses_key() => {
                let d = super::secret::digest(key);
                self.inner.agents.key_digest() != Some(d) && store.key_known(&d.hex()).await?
            }
            _ => false,
        };
        let this = self.clone();
        let result =
            tokio::task::spawn_blocking(move || this.inner.agents.sign_in(&creds, other_key))
                .await
                .map_err(|_| Error::internal("sign-in failed"))?;
        let (name, token) = match result {
            Ok(v) => v,
            Err(e) => {
                if let (Some(store), true) = (self.store(), e.is_unauthorized()) {
                    store.bump(&per_name, FAIL_WINDOW).await?;
                    store.bump(&total, FAIL_WINDOW).await?;
                }
                self.inner.audit.record(
                    "signin_failed",
                    &[("status", crate::http::status_of(&e).as_u16().into())],
                );
                return Err(e);
            }
        };
        if let Some(store) = self.store() {
            let ttl = self.inner.settings.agent_session_ttl;
            let d = Cobrowse::token_digest(&token);
            if let Err(e) = store.sign_in(&d, &name, ttl).await {
                // Never a sign-in the other nodes do not know.
                self.inner.agents.sign_out(&token);
                return Err(e);
            }
        }
        self.inner
            .audit
            .record("signed_in", &[("agent", name.as_str().into())]);
        Ok((name, token))
    }

    /// Whether agents sign in with the per-run key (no accounts file).
    pub(crate) fn uses_key(&self) -> bool {
        self.inner.agents.uses_key()
    }

    /// Ends the sign-in of a token.
    pub(crate) async fn sign_out(&self, cookies: &Cookies) -> Result<(), Error> {
        if let Some(t) = &cookies.agent {
            if let Some(store) = self.store() {
                store.sign_out(&Cobrowse::token_digest(t)).await?;
                self.notify_sign_out(t).await;
            }
            self.inner.agents.sign_out(t);
        }
        Ok(())
    }
}

/// The console list as the event `cb.console` carries.
fn sessions_event(list: &[Value]) -> NewEvent {
    NewEvent {
        kind: "sessions".into(),
        data: Bytes::from(json!({ "sessions": list }).to_string()),
        content_type: Some("application/json".into()),
        from: Some("server".into()),
    }
}
