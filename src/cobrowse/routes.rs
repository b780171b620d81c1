//! The HTTP face of co-browsing: its routes, its cookies, and the gate.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /cobrowse/session` | anyone | ask for help: `{url,title,message?,label?}`; sets the customer cookie |
//! | `GET /cobrowse/session` | customer | the customer's session (after a navigation) |
//! | `POST /cobrowse/session/code` | customer | a 6-digit phone code |
//! | `POST /cobrowse/event` | participant | `{type, session?, url?, title?, text?}` into the session |
//! | `GET /cobrowse/sessions` | agent | the list the console shows (then live on `cb.console`) |
//! | `POST /cobrowse/join` | agent | `{session}` or `{code}` |
//! | `GET /cobrowse/canned` | agent | the canned chat replies |
//! | `POST /agent/signin`, `/agent/signout`, `GET /agent/me` | agent | sign-in cookie |
//!
//! Every POST must be `application/json` (a cross-site HTML form cannot send
//! that without a CORS preflight) and, when it has an `Origin`, come from an
//! allowed one; the cookies are also `SameSite=Strict`. No token is ever in
//! a URL or a response body: the cookies are `HttpOnly`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::agents::{Agents, Credentials};
use super::audit::Audit;
use super::portal::Portal;
use super::session::{channel_of, Ask, Sessions, CODE_FAILS, CODE_WINDOW};
use super::share::{cookie, ShareSession};
use crate::error::Error;
use crate::http::{Access, App, AppFuture, Body};
use crate::{Hub, NewEvent};

/// The customer's cookie: `{session id}.{token}`.
pub(crate) const HELP_COOKIE: &str = "tandem_help";
/// The agent's sign-in cookie.
pub(crate) const AGENT_COOKIE: &str = "tandem_agent";
/// Which help session an agent's browser is viewing (not a secret: it only
/// picks among the sessions the agent joined).
pub(crate) const VIEW_COOKIE: &str = "tandem_view";
/// The channel of the live console list.
pub const CONSOLE_CHANNEL: &str = "cb.console";

/// Longest URL a session event carries.
pub const MAX_URL: usize = 2048;
/// Longest page title.
pub const MAX_TITLE: usize = 200;
/// Longest message a customer sends with a help request.
pub const MAX_MESSAGE: usize = 500;
/// Longest chat line.
pub const MAX_CHAT: usize = 2000;
/// Longest customer label.
pub const MAX_LABEL: usize = 64;

/// The canned replies used without `--canned`.
const DEFAULT_CANNED: &[&str] = &[
    "Hello! I'm here to help. What are you trying to do?",
    "Let me show you: I'll send you to the right page.",
    "Could you tell me what you see on your screen now?",
    "Is there anything else I can help you with?",
    "Thank you, and have a good day!",
];

/// Co-browsing: help sessions, agents, the audit log and the channel gate.
/// Cheap to clone; mount it with [`crate::Service::with_app`].
#[derive(Clone)]
pub struct Cobrowse {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    agents: Agents,
    key: Option<String>,
    sessions: Mutex<Sessions>,
    audit: Audit,
    canned: Vec<String>,
    code_fails: Mutex<HashMap<String, (Instant, u32)>>,
    share: OnceLock<Arc<dyn ShareSession>>,
}

/// Who is speaking in a help session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
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
}

fn err(status: StatusCode, msg: impl Into<String>) -> Error {
    match status {
        StatusCode::UNAUTHORIZED => Error::unauthorized(msg),
        StatusCode::FORBIDDEN => Error::forbidden(msg),
        StatusCode::NOT_FOUND => Error::not_found(msg),
        StatusCode::METHOD_NOT_ALLOWED => Error::method_not_allowed(msg),
        StatusCode::TOO_MANY_REQUESTS => Error::rate_limited(msg),
        StatusCode::SERVICE_UNAVAILABLE => Error::unavailable(msg),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::unsupported_media_type(msg),
        StatusCode::INTERNAL_SERVER_ERROR => Error::internal(msg),
        _ => Error::bad_request(msg),
    }
}

impl Cobrowse {
    /// Co-browsing over `hub`, with the hub's config: agents from
    /// `agents_file` (or a per-run key), the audit log at `audit_file`, canned
    /// replies from `canned_file`. The error names the file and line.
    pub fn new(hub: Hub) -> Result<Cobrowse, String> {
        let cfg = hub.config().clone();
        let (agents, key) = match &cfg.agents_file {
            Some(p) => (Agents::from_file(p, cfg.agent_session_ttl)?, None),
            None => {
                let (a, k) = Agents::with_key(
                    cfg.agent_key.as_ref().map(|k| k.0.as_str()),
                    cfg.agent_session_ttl,
                );
                // A key the caller chose is the caller's to show; only a made one is printed.
                (a, cfg.agent_key.is_none().then_some(k))
            }
        };
        let audit = match &cfg.audit_file {
            Some(p) => Audit::open(p).map_err(|e| format!("--audit {}: {e}", p.display()))?,
            None => Audit::off(),
        };
        let canned = load_canned(cfg.canned_file.as_deref())?;
        Ok(Cobrowse {
            inner: Arc::new(Inner {
                hub,
                agents,
                key,
                sessions: Mutex::new(Sessions::default()),
                audit,
                canned,
                code_fails: Mutex::new(HashMap::new()),
                share: OnceLock::new(),
            }),
        })
    }

    /// Shares the application's session with joined agents (see
    /// [`ShareSession`]). Set once: a second call is ignored (and logged).
    pub fn with_share(self, share: Arc<dyn ShareSession>) -> Cobrowse {
        if self.inner.share.set(share).is_err() {
            log::warn!("Cobrowse::with_share called twice; the first one stays");
        }
        self
    }

    /// The per-run agent key this instance made, to show the operator.
    pub fn printable_key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }

    /// For the application's own requests: the application session handle
    /// captured when the customer asked for help, if this request comes from
    /// a signed-in agent who joined the help session it is viewing.
    pub fn shared_session(&self, headers: &HeaderMap) -> Option<String> {
        let agent = self.agent(headers).ok()?;
        let id = cookie(headers, VIEW_COOKIE)?;
        let sessions = self.inner.sessions.lock();
        let s = sessions.map.get(&id)?;
        if s.agents.contains(&agent) {
            s.shared.clone()
        } else {
            None
        }
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The signed-in agent of a request, or 401.
    fn agent(&self, headers: &HeaderMap) -> Result<String, Error> {
        cookie(headers, AGENT_COOKIE)
            .and_then(|t| self.inner.agents.who(&t))
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "agents only: sign in at /agent"))
    }

    /// The customer's session id, if the request carries a valid customer cookie.
    fn customer(&self, headers: &HeaderMap) -> Option<String> {
        let c = cookie(headers, HELP_COOKIE)?;
        let (id, token) = c.split_once('.')?;
        let ttl = self.hub().config().help_session_ttl;
        let sessions = self.inner.sessions.lock();
        sessions
            .map
            .get(id)
            .filter(|s| s.is_customer(token) && s.created.elapsed() < ttl)
            .map(|s| s.id.clone())
    }

    /// Who may speak in a session: the customer by cookie, or a joined agent
    /// naming the session.
    fn participant(
        &self,
        headers: &HeaderMap,
        named: Option<&str>,
    ) -> Result<(String, Who), Error> {
        if let Some(id) = self.customer(headers) {
            if named.map_or(true, |n| n == id) {
                return Ok((id, Who::Customer));
            }
        }
        let agent = match self.agent(headers) {
            Ok(a) => a,
            Err(_) if cookie(headers, HELP_COOKIE).is_some() => {
                return Err(err(
                    StatusCode::FORBIDDEN,
                    "not a participant of this help session (it may have ended)",
                ))
            }
            Err(_) => {
                return Err(err(
                    StatusCode::UNAUTHORIZED,
                    "ask for help first, or sign in as an agent",
                ))
            }
        };
        let id = named.ok_or_else(|| Error::bad_request("session is required for agents"))?;
        let ttl = self.hub().config().help_session_ttl;
        let sessions = self.inner.sessions.lock();
        match sessions.map.get(id).filter(|s| s.created.elapsed() < ttl) {
            None => Err(err(
                StatusCode::NOT_FOUND,
                "no such help session (it may have ended)",
            )),
            Some(s) if s.agents.contains(&agent) => Ok((id.to_string(), Who::Agent(agent))),
            Some(_) => Err(err(StatusCode::FORBIDDEN, "join this help session first")),
        }
    }

    fn publish(&self, id: &str, kind: &str, who: &Who, data: Value) {
        let ev = NewEvent {
            kind: kind.to_string(),
            data: Bytes::from(data.to_string()),
            content_type: Some("application/json".into()),
            from: Some(who.client_id()),
        };
        if let Err(e) = self.hub().publish(&channel_of(id), ev) {
            log::warn!("co-browse event for {id} refused: {e}");
        }
    }

    /// Publishes the console list (after every change to it).
    fn publish_list(&self) {
        let list = self.inner.sessions.lock().list();
        let ev = NewEvent {
            kind: "sessions".into(),
            data: Bytes::from(json!({ "sessions": list }).to_string()),
            content_type: Some("application/json".into()),
            from: Some("server".into()),
        };
        if let Err(e) = self.hub().publish(CONSOLE_CHANNEL, ev) {
            log::warn!("console list refused: {e}");
        }
    }

    /// Ends sessions past their lifetime.
    fn expire(&self) {
        let ttl = self.hub().config().help_session_ttl;
        let old = self.inner.sessions.lock().expire(ttl);
        for s in &old {
            self.publish(&s.id, "end", &Who::Server, json!({"by": "timeout"}));
            self.hub().close(&channel_of(&s.id));
            self.inner.audit.record(
                "ended",
                &[("session", s.id.as_str().into()), ("by", "timeout".into())],
            );
        }
        if !old.is_empty() {
            self.publish_list();
        }
    }

    fn end(&self, id: &str, who: &Who) -> bool {
        let Some(_) = self.inner.sessions.lock().remove(id) else {
            return false;
        };
        self.publish(id, "end", who, json!({"by": who.name()}));
        // Close the session's channel: open streams deliver the `end` event
        // and then end, waiting long-polls answer at once.
        self.hub().close(&channel_of(id));
        self.inner.audit.record(
            "ended",
            &[("session", id.into()), ("by", who.name().into())],
        );
        self.publish_list();
        true
    }

    /// Answers one co-browsing request.
    async fn answer(self, path: String, req: Request<Bytes>) -> Result<Response<Body>, Error> {
        let method = req.method().clone();
        let allow = match path.as_str() {
            "/cobrowse/session" => "GET, POST",
            "/cobrowse/sessions" | "/cobrowse/canned" | "/agent/me" => "GET",
            "/cobrowse/session/code"
            | "/cobrowse/event"
            | "/cobrowse/join"
            | "/cobrowse/view"
            | "/agent/signin"
            | "/agent/signout" => "POST",
            _ => {
                return Err(err(
                    StatusCode::NOT_FOUND,
                    "no such route (see docs/cobrowse.md for the co-browsing routes)",
                ))
            }
        };
        if !allow.split(", ").any(|m| m == method.as_str()) {
            let mut resp = crate::http::error_response(&err(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed here (allowed: {allow})"),
            ));
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return Ok(resp);
        }
        let headers = req.headers().clone();
        let body = if method == Method::POST {
            post_body(self.hub(), &req)?
        } else {
            Map::new()
        };
        match (method.as_str(), path.as_str()) {
            ("POST", "/cobrowse/session") => self.create(&headers, &body),
            ("GET", "/cobrowse/session") => self.mine(&headers),
            ("POST", "/cobrowse/session/code") => self.code(&headers),
            ("POST", "/cobrowse/event") => self.event(&headers, &body),
            ("GET", "/cobrowse/sessions") => {
                self.agent(&headers)?;
                self.expire();
                let list = self.inner.sessions.lock().list();
                let last = self.hub().info(CONSOLE_CHANNEL).last_id;
                Ok(ok_json(
                    json!({"sessions": list, "channel": CONSOLE_CHANNEL, "since": last}),
                ))
            }
            ("GET", "/cobrowse/canned") => {
                self.agent(&headers)?;
                Ok(ok_json(json!({ "replies": self.inner.canned })))
            }
            ("POST", "/cobrowse/join") => self.join(&headers, &body),
            ("POST", "/cobrowse/view") => {
                let agent = self.agent(&headers)?;
                let id = field(&body, "session", 64, true)?;
                let joined = self
                    .inner
                    .sessions
                    .lock()
                    .map
                    .get(&id)
                    .is_some_and(|s| s.agents.contains(&agent));
                if !joined {
                    return Err(err(StatusCode::FORBIDDEN, "join this help session first"));
                }
                let mut resp = ok_json(json!({"session": id}));
                set_cookie(
                    &mut resp,
                    &headers,
                    VIEW_COOKIE,
                    &id,
                    Some(self.hub().config().agent_session_ttl.as_secs()),
                );
                Ok(resp)
            }
            ("POST", "/agent/signin") => self.sign_in(&headers, &body).await,
            ("POST", "/agent/signout") => {
                if let Some(t) = cookie(&headers, AGENT_COOKIE) {
                    self.inner.agents.sign_out(&t);
                }
                let mut resp = ok_json(json!({"signed_out": true}));
                set_cookie(&mut resp, &headers, AGENT_COOKIE, "", Some(0));
                Ok(resp)
            }
            ("GET", "/agent/me") => {
                let name = self.agent(&headers)?;
                Ok(ok_json(json!({"name": name})))
            }
            _ => unreachable!("methods were checked against `allow`"),
        }
    }

    fn create(
        &self,
        headers: &HeaderMap,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        self.expire();
        if let Some(id) = self.customer(headers) {
            // Asking twice (a double click, a second tab) gives the same session.
            return self.mine_by_id(&id);
        }
        let cfg = self.hub().config();
        let label = match field(body, "label", MAX_LABEL, false)? {
            l if l.trim().is_empty() => None,
            l => Some(l.trim().to_string()),
        };
        let ask = Ask {
            label,
            url: site_url(&field(body, "url", MAX_URL, true)?)?,
            title: field(body, "title", MAX_TITLE, false)?,
            message: field(body, "message", MAX_MESSAGE, false)?,
            shared: self.inner.share.get().and_then(|s| s.capture(headers)),
        };
        let shared = ask.shared.is_some();
        let (id, token) = {
            let mut sessions = self.inner.sessions.lock();
            if sessions.map.len() >= cfg.max_help_sessions {
                return Err(err(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many open help sessions (max {}): try again in a while",
                        cfg.max_help_sessions
                    ),
                ));
            }
            sessions.create(ask)
        };
        self.inner.audit.record(
            "created",
            &[
                ("session", id.as_str().into()),
                ("by", "customer".into()),
                ("shared_app_session", shared.into()),
            ],
        );
        self.publish_list();
        let mut resp = self.mine_by_id(&id)?;
        *resp.status_mut() = StatusCode::CREATED;
        set_cookie(
            &mut resp,
            headers,
            HELP_COOKIE,
            &format!("{id}.{token}"),
            Some(cfg.help_session_ttl.as_secs()),
        );
        Ok(resp)
    }

    fn mine(&self, headers: &HeaderMap) -> Result<Response<Body>, Error> {
        match self.customer(headers) {
            Some(id) => self.mine_by_id(&id),
            None => {
                let had = cookie(headers, HELP_COOKIE).is_some();
                let mut resp = crate::http::error_response(&err(
                    StatusCode::NOT_FOUND,
                    "no help session (ask for help first; an ended one is gone)",
                ));
                if had {
                    set_cookie(&mut resp, headers, HELP_COOKIE, "", Some(0));
                }
                Ok(resp)
            }
        }
    }

    fn mine_by_id(&self, id: &str) -> Result<Response<Body>, Error> {
        let sessions = self.inner.sessions.lock();
        let s = sessions
            .map
            .get(id)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "no help session (it has ended)"))?;
        let mut shared = vec![
            "the address and title of the pages of this site you open while the session lasts",
            "the links you click on this site",
            "the chat",
        ];
        if s.shared.is_some() {
            shared.push("your session on this site (for example your cart), for the agent to see");
        }
        let mut v = s.summary();
        v["channel"] = Value::from(s.channel());
        v["shared"] = json!(shared);
        v["not_shared"] = json!([
            "other tabs and other sites",
            "what you type into forms",
            "your cookies and passwords"
        ]);
        drop(sessions);
        v["since"] = Value::from(self.hub().info(&channel_of(id)).last_id);
        Ok(ok_json(v))
    }

    fn code(&self, headers: &HeaderMap) -> Result<Response<Body>, Error> {
        let id = self
            .customer(headers)
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "ask for help first"))?;
        let code = self
            .inner
            .sessions
            .lock()
            .new_code(&id)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "no help session (it has ended)"))?;
        self.inner
            .audit
            .record("code_issued", &[("session", id.into())]);
        Ok(ok_json(json!({
            "code": code,
            "expires_in": super::session::CODE_TTL.as_secs(),
        })))
    }

    fn join(
        &self,
        headers: &HeaderMap,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        let agent = self.agent(headers)?;
        let (id, via) = match (body.get("session"), body.get("code")) {
            (Some(_), _) => (field(body, "session", 64, true)?, "list"),
            (None, Some(_)) => {
                let code = field(body, "code", 16, true)?;
                let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
                (self.redeem(&agent, &code)?, "code")
            }
            (None, None) => return Err(Error::bad_request("session or code is required")),
        };
        let first = {
            let mut sessions = self.inner.sessions.lock();
            let s = sessions.map.get_mut(&id).ok_or_else(|| {
                err(
                    StatusCode::NOT_FOUND,
                    "no such help session (it may have ended)",
                )
            })?;
            if s.agents.contains(&agent) {
                false
            } else {
                s.agents.push(agent.clone());
                true
            }
        };
        if first {
            let who = Who::Agent(agent.clone());
            self.publish(&id, "joined", &who, json!({"agent": agent}));
            self.inner.audit.record(
                "joined",
                &[
                    ("session", id.as_str().into()),
                    ("agent", agent.as_str().into()),
                    ("via", via.into()),
                ],
            );
            self.publish_list();
        }
        let sessions = self.inner.sessions.lock();
        let mut v = sessions
            .map
            .get(&id)
            .map(|s| s.summary())
            .unwrap_or_default();
        drop(sessions);
        v["channel"] = Value::from(channel_of(&id));
        v["since"] = Value::from(self.hub().info(&channel_of(&id)).last_id);
        let mut resp = ok_json(v);
        // The agent's view of the application now uses this session.
        set_cookie(
            &mut resp,
            headers,
            VIEW_COOKIE,
            &id,
            Some(self.hub().config().agent_session_ttl.as_secs()),
        );
        Ok(resp)
    }

    fn redeem(&self, agent: &str, code: &str) -> Result<String, Error> {
        {
            let mut fails = self.inner.code_fails.lock();
            fails.retain(|_, (t, _)| t.elapsed() < CODE_WINDOW);
            if fails.get(agent).is_some_and(|(_, n)| *n >= CODE_FAILS) {
                return Err(err(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many wrong codes (max {CODE_FAILS} in {} minutes): find the session in the list",
                        CODE_WINDOW.as_secs() / 60
                    ),
                ));
            }
        }
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(id) = self.inner.sessions.lock().redeem(code) {
                return Ok(id);
            }
        }
        self.inner
            .code_fails
            .lock()
            .entry(agent.to_string())
            .or_insert((Instant::now(), 0))
            .1 += 1;
        self.inner
            .audit
            .record("code_failed", &[("agent", agent.into())]);
        Err(err(
            StatusCode::NOT_FOUND,
            "no help session has this code (6 digits, valid 10 minutes)",
        ))
    }

    fn event(
        &self,
        headers: &HeaderMap,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        let named = match body.get("session") {
            Some(_) => Some(field(body, "session", 64, true)?),
            None => None,
        };
        let (id, who) = self.participant(headers, named.as_deref())?;
        let kind = field(body, "type", 16, true)?;
        let agent = matches!(who, Who::Agent(_));
        let audit = &self.inner.audit;
        let sid = || ("session", Value::from(id.as_str()));
        let by = || ("by", Value::from(who.name()));
        let data = match kind.as_str() {
            "push" if agent => {
                let url = site_url(&field(body, "url", MAX_URL, true)?)?;
                audit.record("pushed", &[sid(), by(), ("url", url.as_str().into())]);
                json!({"by": who.name(), "url": url})
            }
            "pull" if agent => {
                audit.record("pull_asked", &[sid(), by()]);
                json!({"by": who.name()})
            }
            "pulled" if !agent => {
                let url = site_url(&field(body, "url", MAX_URL, true)?)?;
                let title = field(body, "title", MAX_TITLE, false)?;
                audit.record("pulled", &[sid(), by(), ("url", url.as_str().into())]);
                json!({"by": who.name(), "url": url, "title": title})
            }
            "nav" | "click" => {
                let url = site_url(&field(body, "url", MAX_URL, true)?)?;
                let title = field(body, "title", MAX_TITLE, false)?;
                let text = field(body, "text", MAX_TITLE, false)?;
                if !agent && kind == "nav" {
                    let mut sessions = self.inner.sessions.lock();
                    if let Some(s) = sessions.map.get_mut(&id) {
                        s.url = url.clone();
                        s.title = title.clone();
                    }
                }
                if kind == "click" {
                    audit.record("clicked", &[sid(), by(), ("url", url.as_str().into())]);
                }
                json!({"by": who.name(), "url": url, "title": title, "text": text})
            }
            "chat" => {
                let text = field(body, "text", MAX_CHAT, true)?;
                if text.trim().is_empty() {
                    return Err(Error::bad_request("chat text is empty"));
                }
                let mut fields = vec![sid(), by(), ("length", Value::from(text.chars().count()))];
                if self.hub().config().audit_chat_text {
                    fields.push(("text", Value::from(text.as_str())));
                }
                audit.record("chat", &fields);
                json!({"by": who.name(), "text": text})
            }
            "end" => {
                self.end(&id, &who);
                let mut resp = ok_json(json!({"ended": true}));
                if !agent {
                    set_cookie(&mut resp, headers, HELP_COOKIE, "", Some(0));
                }
                return Ok(resp);
            }
            "push" | "pull" | "pulled" => {
                return Err(err(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{kind} is sent by the {}",
                        if agent { "customer" } else { "agent" }
                    ),
                ))
            }
            _ => {
                return Err(Error::bad_request(
                    "unknown event type (push, pull, pulled, nav, click, chat, end)",
                ))
            }
        };
        if kind == "nav" && !agent {
            self.publish_list();
        }
        self.publish(&id, &kind, &who, data);
        Ok(ok_json(json!({"ok": true})))
    }

    async fn sign_in(
        &self,
        headers: &HeaderMap,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        let name = match field(body, "name", 64, false)? {
            n if n.is_empty() => "agent".to_string(),
            n => n,
        };
        // One secret field: the method this server uses decides what it is,
        // so the sign-in form needs not know (`key` and `password` are aliases).
        let secret = match body.get("key") {
            Some(_) => field(body, "key", 1024, true)?,
            None => field(body, "password", 1024, true)?,
        };
        let creds = if self.inner.agents.uses_key() {
            Credentials::Key { key: secret, name }
        } else {
            Credentials::Password {
                name,
                password: secret,
            }
        };
        let this = self.clone();
        // argon2 is tens of milliseconds of CPU: keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || this.inner.agents.sign_in(&creds))
            .await
            .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "sign-in failed"))?;
        let (name, token) = match result {
            Ok(v) => v,
            Err(e) => {
                self.inner.audit.record(
                    "signin_failed",
                    &[("status", crate::http::status_of(&e).as_u16().into())],
                );
                return Err(e);
            }
        };
        self.inner
            .audit
            .record("signed_in", &[("agent", name.as_str().into())]);
        let mut resp = ok_json(json!({"name": name}));
        set_cookie(
            &mut resp,
            headers,
            AGENT_COOKIE,
            &token,
            Some(self.inner.agents.ttl().as_secs()),
        );
        Ok(resp)
    }

    /// The gate on `cb.` channels (see the module docs).
    fn check_gate(&self, channel: &str, access: Access, headers: &HeaderMap) -> Result<(), Error> {
        let Some(rest) = channel.strip_prefix("cb.") else {
            return Ok(());
        };
        if access == Access::Write {
            return Err(err(
                StatusCode::FORBIDDEN,
                "co-browsing channels are written by the server only (POST /cobrowse/event)",
            ));
        }
        if channel == CONSOLE_CHANNEL {
            return self.agent(headers).map(|_| ());
        }
        if self.customer(headers).is_some_and(|id| id == rest) {
            return Ok(());
        }
        let agent = cookie(headers, AGENT_COOKIE).and_then(|t| self.inner.agents.who(&t));
        if agent.is_none() && cookie(headers, HELP_COOKIE).is_none() {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                "co-browsing channel: ask for help first, or sign in as an agent",
            ));
        }
        let ttl = self.hub().config().help_session_ttl;
        let sessions = self.inner.sessions.lock();
        let session = sessions.map.get(rest).filter(|s| s.created.elapsed() < ttl);
        match (session, agent) {
            (Some(s), Some(a)) if s.agents.contains(&a) => Ok(()),
            (Some(_), Some(_)) => Err(err(StatusCode::FORBIDDEN, "join this help session first")),
            _ => Err(err(
                StatusCode::FORBIDDEN,
                "not a participant of this help session (it may have ended)",
            )),
        }
    }
}

/// The co-browsing app and the demo portal, mounted together.
pub(crate) struct Apps(pub(crate) Cobrowse, pub(crate) Portal);

impl App for Apps {
    fn claims(&self, path: &str) -> bool {
        self.0.claims(path) || self.1.claims(path)
    }

    fn serve(&self, path: &str, req: Request<Bytes>) -> AppFuture {
        if self.1.claims(path) {
            self.1.serve(path, req)
        } else {
            self.0.serve(path, req)
        }
    }

    fn gate(&self, channel: &str, access: Access, headers: &HeaderMap) -> Result<(), Error> {
        self.0.gate(channel, access, headers)
    }
}

impl App for Cobrowse {
    fn claims(&self, path: &str) -> bool {
        path.starts_with("/cobrowse/") || path.starts_with("/agent/")
    }

    fn serve(&self, path: &str, req: Request<Bytes>) -> AppFuture {
        let cb = self.clone();
        let path = path.to_string();
        Box::pin(async move {
            match cb.answer(path, req).await {
                Ok(r) => r,
                Err(e) => crate::http::error_response(&e),
            }
        })
    }

    fn gate(&self, channel: &str, access: Access, headers: &HeaderMap) -> Result<(), Error> {
        self.check_gate(channel, access, headers)
    }
}

/// The canned replies: from the file (one a line, `#` comments), or built in.
pub(crate) fn load_canned(path: Option<&std::path::Path>) -> Result<Vec<String>, String> {
    let Some(p) = path else {
        return Ok(DEFAULT_CANNED.iter().map(|s| s.to_string()).collect());
    };
    let text = std::fs::read_to_string(p).map_err(|e| format!("--canned {}: {e}", p.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if let Some(l) = lines.iter().find(|l| l.chars().count() > MAX_CHAT) {
        return Err(format!(
            "--canned {}: a reply is too long (max {MAX_CHAT} characters): {:.40}...",
            p.display(),
            l
        ));
    }
    Ok(lines)
}

/// A POST body: JSON object, from an allowed origin.
fn post_body(_hub: &Hub, req: &Request<Bytes>) -> Result<Map<String, Value>, Error> {
    if crate::http::origin_denied(req) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "origin not allowed (see --allow-origin)",
        ));
    }
    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json",
        ));
    }
    let body = req.body();
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::bad_request("body must be a JSON object")),
    }
}

/// A string field: at most `max` characters; "" when absent and not required.
fn field(
    body: &Map<String, Value>,
    name: &str,
    max: usize,
    required: bool,
) -> Result<String, Error> {
    match body.get(name) {
        Some(Value::String(s)) if s.chars().count() > max => Err(Error::bad_request(format!(
            "{name} too long (max {max} characters)"
        ))),
        Some(Value::String(s)) if required && s.is_empty() => {
            Err(Error::bad_request(format!("{name} is empty")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(Error::bad_request(format!("{name} is required"))),
        Some(_) => Err(Error::bad_request(format!("{name} must be a string"))),
    }
}

/// A URL within the site: a path (`/...`, not `//host`), no control characters.
/// Pushing a customer to another site, or to `javascript:`, is never possible.
fn site_url(url: &str) -> Result<String, Error> {
    if url.starts_with('/')
        && !url.starts_with("//")
        && !url.contains('\\')
        && !url.chars().any(|c| c.is_control() || c == ' ')
    {
        Ok(url.to_string())
    } else {
        Err(Error::bad_request(
            "url must be a path within this site (starting with one /, no spaces)",
        ))
    }
}

fn ok_json(v: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(v.to_string()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    crate::http::no_store(&mut resp);
    resp
}

/// Sets a cookie: `HttpOnly`, `SameSite=Strict`, `Path=/`, with `Max-Age`,
/// and `Secure` when the request came over https (directly or via a proxy
/// that says so), so it is never sent back in clear.
fn set_cookie(
    resp: &mut Response<Body>,
    req: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) {
    let secure = req
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    resp.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_str(&c).expect("cookie is ascii"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_on_the_site() {
        assert!(site_url("/portal/cart?x=1#y").is_ok());
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a b",
            "/a\\b",
            "",
            "/\n",
        ] {
            assert!(site_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_name_their_limit() {
        let body: Map<String, Value> = serde_json::from_str(r#"{"a":"xyz","n":1}"#).unwrap();
        assert_eq!(field(&body, "a", 3, true).unwrap(), "xyz");
        assert_eq!(
            field(&body, "a", 2, true).unwrap_err().message(),
            "a too long (max 2 characters)"
        );
        assert_eq!(field(&body, "b", 2, false).unwrap(), "");
        assert!(field(&body, "b", 2, true).is_err());
        assert!(field(&body, "n", 2, false).is_err());
    }
}
