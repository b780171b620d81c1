//! The HTTP face of co-browsing: its routes, its cookies, its answers.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /cobrowse/session` | anyone | ask for help: `{url,title,message?,label?}`; sets the customer cookie |
//! | `GET /cobrowse/session` | customer | the customer's session (after a navigation) |
//! | `POST /cobrowse/session/code` | customer | a 6-digit phone code |
//! | `POST /cobrowse/session/ping` | customer | the customer's page is still open (presence) |
//! | `POST /cobrowse/control` | customer | `{granted}`: let joined agents act for them (proxy mode), or stop |
//! | `POST /cobrowse/event` | participant | `{type, session?, url?, title?, text?}` into the session |
//! | `GET /cobrowse/sessions` | agent | the list the console shows (then live on `cb.console`) |
//! | `POST /cobrowse/join` | agent | `{session}` or `{code}` |
//! | `GET /cobrowse/canned` | agent | the canned chat replies |
//! | `POST /cobrowse/class` | anyone (an agent presents under its name) | open a class: `{url,title?,name?}`; sets the presenter cookie; `{id, code, link, ...}` |
//! | `GET /cobrowse/class` | class member | the class (its current page, who steers; the presenter: code, link, followers) |
//! | `POST /cobrowse/class/join` | anyone | `{code, name?}` (a code or a link's key); sets the follower cookie |
//! | `POST /cobrowse/class/event` | who holds control | `{type: nav or click, url, title?, text?}` |
//! | `POST /cobrowse/class/control` | presenter | `{to: FOLLOWER_ID or null}` |
//! | `POST /cobrowse/class/end` | class member | the presenter ends the class; a follower leaves it |
//! | `POST /agent/signin`, `/agent/signout`, `GET /agent/me` | agent | sign-in cookie |
//! | `GET, POST /portal/...` | anyone | the demo portal, when mounted ([`Cobrowse::with_portal`]) |
//!
//! Each handler reads the request (cookies, a JSON body checked field by
//! field), calls the operations of `state.rs`, and writes the answer. Every
//! POST must be `application/json` (a cross-site HTML form cannot send that
//! without a CORS preflight) and, when it has an `Origin`, come from an
//! allowed one; the cookies are also `SameSite=Strict`. No token is ever in
//! a URL or a response body: the cookies are `HttpOnly`. An answer leaves
//! only once the audit lines of its request are written.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};

use super::agents::Credentials;
use super::class::CLASS_PREFIX;
use super::class::{Key, Member};
use super::console::CONSOLE_CHANNEL;
use super::gate::CHANNEL_PREFIX;
use super::helpers::{field, site_url, MAX_CHAT, MAX_LABEL, MAX_MESSAGE, MAX_TITLE, MAX_URL};
use super::portal::{Portal, COOKIE as PORTAL_COOKIE};
use super::session::Ask;
use super::share::{cookie, CookieShare};
use super::state::{Cobrowse, Cookies, Say, Who};
use super::sync::SYNC_CHANNEL;
use crate::error::Error;
use crate::http::{Access, App, AppFuture, Body, GateFuture};

/// The customer's cookie: `{session id}.{token}`.
const HELP_COOKIE: &str = "tandem_help";
/// The agent's sign-in cookie.
const AGENT_COOKIE: &str = "tandem_agent";
/// A class presenter's cookie: `{class id}.{token}`.
const PRESENT_COOKIE: &str = "tandem_present";
/// A class follower's cookie: `{class id}.{follower id}.{token}`.
const FOLLOW_COOKIE: &str = "tandem_follow";
/// The query parameter of the agent's view of the customer's pages: which
/// help session this page of the view shows (not a secret: it only picks
/// among the sessions the agent joined). A parameter of each page, not a
/// cookie, so that two tabs of one agent can show two customers.
pub const VIEW_PARAM: &str = "tandem_view";

impl Cookies {
    pub(crate) fn of(headers: &HeaderMap) -> Cookies {
        Cookies {
            help: cookie(headers, HELP_COOKIE),
            agent: cookie(headers, AGENT_COOKIE),
            present: cookie(headers, PRESENT_COOKIE),
            follow: cookie(headers, FOLLOW_COOKIE),
        }
    }
}

/// The value of the [`VIEW_PARAM`] parameter of a request's query.
fn view_of(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == VIEW_PARAM)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

impl Cobrowse {
    /// Serves the demo portal (`/portal/...`, a shop with a cart in a
    /// server-side session) beside co-browsing, and shares its session with
    /// joined agents. Set once, like [`Cobrowse::with_share`].
    pub fn with_portal(self) -> Cobrowse {
        if !self.set_portal(Portal::new()) {
            log::warn!("Cobrowse::with_portal called twice; the first one stays");
            return self;
        }
        self.with_share(Arc::new(CookieShare::new(PORTAL_COOKIE)))
    }

    /// For the application's own requests: the application session handle
    /// captured when the customer asked for help, if this request is a page
    /// of an agent's view (its query names the help session,
    /// `tandem_view=ID`) and comes from a signed-in agent who joined that
    /// help session. The session is named by each request rather than by a
    /// cookie, so two tabs of one agent can each show their own customer.
    pub fn shared_session(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        self.shared_of(&Cookies::of(headers), view_of(uri)?)
    }

    /// A request of the demo portal with `--redis`: what it names (the
    /// agent's sign-in, the session viewed, the portal session) comes from
    /// Redis first, and the portal session a POST changed goes back there,
    /// so any node serves the customer's cart to the customer and to the
    /// agents viewing it.
    async fn portal_shared(
        &self,
        path: &str,
        req: Request<Bytes>,
    ) -> Result<Response<Body>, Error> {
        let store = self
            .store()
            .ok_or_else(|| Error::internal("the portal's shared path needs redis"))?;
        let cookies = Cookies::of(req.headers());
        self.ensure(&cookies, view_of(req.uri())).await?;
        let shared = self.shared_session(req.uri(), req.headers());
        let portal = self
            .portal(path)
            .ok_or_else(|| Error::not_found("no such page"))?;
        let sid = shared
            .clone()
            .or_else(|| cookie(req.headers(), PORTAL_COOKIE));
        if let Some(sid) = &sid {
            if let Some(json) = store.portal(&Cobrowse::token_digest(sid)).await? {
                portal.import(sid, &json);
            }
        }
        let resp = portal.answer(path, &req, shared);
        if req.method() == Method::POST {
            // A new portal session is named by the cookie the answer sets.
            let set = resp
                .headers()
                .get(SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix(&format!("{PORTAL_COOKIE}=")))
                .and_then(|v| v.split(';').next())
                .map(str::to_string);
            if let Some(sid) = sid.or(set) {
                if let Some(json) = portal.export(&sid) {
                    store
                        .set_portal(&Cobrowse::token_digest(&sid), &json)
                        .await?;
                }
            }
        }
        Ok(resp)
    }

    /// Answers one co-browsing request.
    async fn answer(&self, path: &str, req: Request<Bytes>) -> Result<Response<Body>, Error> {
        let method = req.method().clone();
        let allow = match path {
            "/cobrowse/session" | "/cobrowse/class" => "GET, POST",
            "/cobrowse/sessions" | "/cobrowse/canned" | "/agent/me" => "GET",
            "/cobrowse/session/code"
            | "/cobrowse/session/ping"
            | "/cobrowse/control"
            | "/cobrowse/event"
            | "/cobrowse/join"
            | "/cobrowse/class/join"
            | "/cobrowse/class/event"
            | "/cobrowse/class/control"
            | "/cobrowse/class/end"
            | "/agent/signin"
            | "/agent/signout" => "POST",
            _ => {
                return Err(Error::not_found(
                    "no such route (see docs/cobrowse.md for the co-browsing routes)",
                ))
            }
        };
        if !allow.split(", ").any(|m| m == method.as_str()) {
            let mut resp = crate::http::error_response(&Error::method_not_allowed(format!(
                "method {method} not allowed here (allowed: {allow})"
            )));
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return Ok(resp);
        }
        let headers = req.headers();
        let cookies = Cookies::of(headers);
        let body = if method == Method::POST {
            post_body(&req)?
        } else {
            Map::new()
        };
        // With `--redis`, what this request names and this node lacks
        // comes from Redis first (`sync.rs`).
        let named = body.get("session").and_then(Value::as_str);
        self.ensure(&cookies, named).await?;
        match (method.as_str(), path) {
            ("POST", "/cobrowse/session") => self.create(headers, &cookies, &body).await,
            ("GET", "/cobrowse/session") => self.mine(headers, &cookies).await,
            ("POST", "/cobrowse/session/ping") => {
                let id = self
                    .customer(&cookies)
                    .ok_or_else(|| Error::not_found("no help session (it has ended)"))?;
                self.heard(&id).await?;
                Ok(ok_json(json!({"online": true})))
            }
            ("POST", "/cobrowse/session/code") => {
                let id = self
                    .customer(&cookies)
                    .ok_or_else(|| Error::unauthorized("ask for help first"))?;
                let (code, expires_in) = self.issue_code(&id).await?;
                Ok(ok_json(json!({"code": code, "expires_in": expires_in})))
            }
            ("POST", "/cobrowse/control") => {
                let id = self.customer(&cookies).ok_or_else(|| {
                    Error::forbidden("only the customer of a help session hands over control")
                })?;
                let granted = match body.get("granted") {
                    Some(Value::Bool(b)) => *b,
                    _ => return Err(Error::bad_request("granted (true or false) is required")),
                };
                self.set_control(&id, granted).await?;
                Ok(ok_json(json!({"control": granted})))
            }
            ("POST", "/cobrowse/event") => self.event(headers, &cookies, &body).await,
            ("GET", "/cobrowse/sessions") => {
                self.agent(&cookies)?;
                self.expire().await;
                self.check_presence().await;
                let (list, last) = self.list().await?;
                Ok(ok_json(
                    json!({"sessions": list, "channel": CONSOLE_CHANNEL, "since": last}),
                ))
            }
            ("GET", "/cobrowse/canned") => {
                self.agent(&cookies)?;
                Ok(ok_json(json!({ "replies": self.canned() })))
            }
            ("POST", "/cobrowse/join") => self.join_route(&cookies, &body).await,
            (_, p) if p.starts_with("/cobrowse/class") => {
                self.class_route(method.as_str(), p, headers, &cookies, &body)
                    .await
            }
            ("POST", "/agent/signin") => self.sign_in_route(headers, &body).await,
            ("POST", "/agent/signout") => {
                self.sign_out(&cookies).await?;
                let mut resp = ok_json(json!({"signed_out": true}));
                set_cookie(&mut resp, headers, AGENT_COOKIE, "", Some(0));
                Ok(resp)
            }
            ("GET", "/agent/me") => {
                let name = self.agent(&cookies)?;
                Ok(ok_json(json!({"name": name})))
            }
            _ => unreachable!("methods were checked against `allow`"),
        }
    }

    async fn create(
        &self,
        headers: &HeaderMap,
        cookies: &Cookies,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        self.expire().await;
        if let Some(id) = self.customer(cookies) {
            // Asking twice (a double click, a second tab) gives the same session.
            return Ok(ok_json(self.session_view(&id).await?));
        }
        let label = match field(body, "label", MAX_LABEL, false)? {
            l if l.trim().is_empty() => None,
            l => Some(l.trim().to_string()),
        };
        let ask = Ask {
            label,
            url: site_url(&field(body, "url", MAX_URL, true)?)?,
            title: field(body, "title", MAX_TITLE, false)?,
            message: field(body, "message", MAX_MESSAGE, false)?,
            shared: self.share().and_then(|s| s.capture(headers)),
            jar: self.jar_for("/", headers),
        };
        let (id, token) = self.open(ask).await?;
        // With --redis, the jar it was seeded with, for every node.
        self.persist_jar(&id).await;
        let mut resp = ok_json(self.session_view(&id).await?);
        *resp.status_mut() = StatusCode::CREATED;
        let ttl = self.settings().help_session_ttl.as_secs();
        set_cookie(
            &mut resp,
            headers,
            HELP_COOKIE,
            &format!("{id}.{token}"),
            Some(ttl),
        );
        Ok(resp)
    }

    async fn mine(&self, headers: &HeaderMap, cookies: &Cookies) -> Result<Response<Body>, Error> {
        if let Some(id) = self.customer(cookies) {
            self.heard(&id).await?;
            return Ok(ok_json(self.session_view(&id).await?));
        }
        let mut resp = crate::http::error_response(&Error::not_found(
            "no help session (ask for help first; an ended one is gone)",
        ));
        if cookies.help.is_some() {
            set_cookie(&mut resp, headers, HELP_COOKIE, "", Some(0));
        }
        Ok(resp)
    }

    async fn join_route(
        &self,
        cookies: &Cookies,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        let agent = self.agent(cookies)?;
        let (id, via) = match (body.get("session"), body.get("code")) {
            (Some(_), _) => (field(body, "session", 64, true)?, "list"),
            (None, Some(_)) => {
                let code = field(body, "code", 16, true)?;
                let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
                (self.redeem(&agent, &code).await?, "code")
            }
            (None, None) => return Err(Error::bad_request("session or code is required")),
        };
        let mut v = self.join(&agent, &id, via).await?;
        // The agent's view of the application names this session in its pages' queries.
        v["view_param"] = Value::from(VIEW_PARAM);
        Ok(ok_json(v))
    }

    async fn event(
        &self,
        headers: &HeaderMap,
        cookies: &Cookies,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        let named = match body.get("session") {
            Some(_) => Some(field(body, "session", 64, true)?),
            None => None,
        };
        let (id, who) = self.participant(cookies, named.as_deref())?;
        if who == Who::Customer {
            self.heard(&id).await?;
        }
        let kind = field(body, "type", 16, true)?;
        let Some(say) = say_of(&kind, who.is_agent(), body)? else {
            self.end(&id, &who).await?;
            let mut resp = ok_json(json!({"ended": true}));
            if !who.is_agent() {
                set_cookie(&mut resp, headers, HELP_COOKIE, "", Some(0));
            }
            return Ok(resp);
        };
        let mut answer = json!({"ok": true});
        if let Some(n) = self.say(&id, &who, say).await? {
            answer["n"] = Value::from(n);
        }
        Ok(ok_json(answer))
    }

    async fn sign_in_route(
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
        let creds = if self.uses_key() {
            Credentials::Key { key: secret, name }
        } else {
            Credentials::Password {
                name,
                password: secret,
            }
        };
        let (name, token) = self.sign_in(creds).await?;
        let mut resp = ok_json(json!({"name": name}));
        let ttl = self.settings().agent_session_ttl.as_secs();
        set_cookie(&mut resp, headers, AGENT_COOKIE, &token, Some(ttl));
        Ok(resp)
    }
}

impl Cobrowse {
    /// The classroom routes (`/cobrowse/class...`; see `class.rs`).
    async fn class_route(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        cookies: &Cookies,
        body: &Map<String, Value>,
    ) -> Result<Response<Body>, Error> {
        self.expire_classes().await;
        let member = self.member(cookies, None);
        let not_member = || {
            if cookies.present.is_none() && cookies.follow.is_none() {
                Error::unauthorized("open or join a class first")
            } else {
                Error::forbidden("not a member of a class (it may have ended)")
            }
        };
        match (method, path) {
            ("POST", "/cobrowse/class") => {
                if let Some((id, Member::Presenter)) = &member {
                    // Opening twice (a double click, a second tab) gives the same class.
                    return Ok(ok_json(self.class_view(id, &Member::Presenter).await?));
                }
                let url = site_url(&field(body, "url", MAX_URL, true)?)?;
                let title = field(body, "title", MAX_TITLE, false)?;
                let agent = self.agent_named(cookies);
                let name = match (&agent, field(body, "name", MAX_LABEL, false)?) {
                    (Some(a), _) => a.clone(),
                    (None, n) if n.trim().is_empty() => "the presenter".to_string(),
                    (None, n) => n.trim().to_string(),
                };
                if let Some((id, Member::Follower(f))) = &member {
                    self.leave_class(id, f).await;
                }
                let (id, token) = self.open_class(name, agent.is_some(), url, title).await?;
                let mut resp = ok_json(self.class_view(&id, &Member::Presenter).await?);
                *resp.status_mut() = StatusCode::CREATED;
                let ttl = self.settings().help_session_ttl.as_secs();
                set_cookie(
                    &mut resp,
                    headers,
                    PRESENT_COOKIE,
                    &format!("{id}.{token}"),
                    Some(ttl),
                );
                if cookies.follow.is_some() {
                    set_cookie(&mut resp, headers, FOLLOW_COOKIE, "", Some(0));
                }
                Ok(resp)
            }
            ("GET", "/cobrowse/class") => {
                if let Some((id, m)) = &member {
                    return Ok(ok_json(self.class_view(id, m).await?));
                }
                let mut resp = crate::http::error_response(&Error::not_found(
                    "no class (open or join one; an ended one is gone)",
                ));
                for (c, name) in [
                    (&cookies.present, PRESENT_COOKIE),
                    (&cookies.follow, FOLLOW_COOKIE),
                ] {
                    if c.is_some() {
                        set_cookie(&mut resp, headers, name, "", Some(0));
                    }
                }
                Ok(resp)
            }
            ("POST", "/cobrowse/class/join") => {
                if let Some((_, Member::Presenter)) = &member {
                    return Err(Error::bad_request(
                        "you present a class: end it before joining another",
                    ));
                }
                let key = Key::parse(&field(body, "code", 64, true)?);
                let name = match field(body, "name", MAX_LABEL, false)? {
                    n if n.trim().is_empty() => None,
                    n => Some(n.trim().to_string()),
                };
                let (id, f, token) = self.join_class(&key, name).await?;
                if let Some((old, Member::Follower(old_f))) = &member {
                    self.leave_class(old, old_f).await;
                }
                let mut resp = ok_json(self.class_view(&id, &Member::Follower(f.clone())).await?);
                let ttl = self.settings().help_session_ttl.as_secs();
                set_cookie(
                    &mut resp,
                    headers,
                    FOLLOW_COOKIE,
                    &format!("{id}.{f}.{token}"),
                    Some(ttl),
                );
                Ok(resp)
            }
            ("POST", "/cobrowse/class/event") => {
                let (id, m) = member.ok_or_else(not_member)?;
                let kind = field(body, "type", 16, true)?;
                if kind != "nav" && kind != "click" {
                    return Err(Error::bad_request("a class event is nav or click"));
                }
                let say = say_of(&kind, false, body)?.expect("nav and click are events");
                self.class_say(&id, &m, say).await?;
                Ok(ok_json(json!({"ok": true})))
            }
            ("POST", "/cobrowse/class/control") => {
                let (id, m) = member.ok_or_else(not_member)?;
                let to = match body.get("to") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(field(body, "to", 32, true)?),
                };
                Ok(ok_json(self.hand_control(&id, &m, to).await?))
            }
            ("POST", "/cobrowse/class/end") => {
                let (id, m) = member.ok_or_else(not_member)?;
                let (answer, cookie) = match &m {
                    Member::Presenter => {
                        self.end_class(&id).await?;
                        (json!({"ended": true}), PRESENT_COOKIE)
                    }
                    Member::Follower(f) => {
                        self.leave_class(&id, f).await;
                        (json!({"left": true}), FOLLOW_COOKIE)
                    }
                };
                let mut resp = ok_json(answer);
                set_cookie(&mut resp, headers, cookie, "", Some(0));
                Ok(resp)
            }
            _ => Err(Error::not_found(
                "no such route (see docs/cobrowse.md for the classroom routes)",
            )),
        }
    }
}

impl App for Cobrowse {
    fn claims(&self, path: &str) -> bool {
        path.starts_with("/cobrowse/") || path.starts_with("/agent/") || self.portal(path).is_some()
    }

    fn serve(&self, path: &str, req: Request<Bytes>) -> AppFuture {
        self.watch_presence();
        if let Some(portal) = self.portal(path) {
            if self.store().is_none() {
                let shared = self.shared_session(req.uri(), req.headers());
                let resp = portal.answer(path, &req, shared);
                return Box::pin(async move { resp });
            }
            // With `--redis`, an agent's view of a session may reach a node
            // that has not seen the agent or the session yet.
            let cb = self.clone();
            let path = path.to_string();
            return Box::pin(async move {
                match cb.portal_shared(&path, req).await {
                    Ok(resp) => resp,
                    Err(e) => crate::http::error_response(&e),
                }
            });
        }
        let cb = self.clone();
        let path = path.to_string();
        Box::pin(async move {
            let resp = match cb.answer(&path, req).await {
                Ok(r) => r,
                Err(e) => crate::http::error_response(&e),
            };
            // The answer follows the audit lines of what it did.
            cb.audited().await;
            resp
        })
    }

    fn opens_session(&self, method: &hyper::Method, path: &str) -> bool {
        // Asking for help, and an agent opening a class: each is a session
        // someone must attend to (serve limits them per client address).
        method == hyper::Method::POST && matches!(path, "/cobrowse/session" | "/cobrowse/class")
    }

    fn gate(&self, channel: &str, access: Access, headers: &HeaderMap) -> Result<(), Error> {
        // Asked on every publish and subscribe of every channel: only the
        // `cb.` ones are co-browsing's, and reading three cookies out of the
        // headers for the others was a measurable part of a publish.
        if !channel.starts_with(CHANNEL_PREFIX) {
            return Ok(());
        }
        self.check_gate(channel, access, &Cookies::of(headers))
    }

    fn gates_channel(&self, channel: &str) -> bool {
        channel.starts_with(CHANNEL_PREFIX)
    }

    fn before_gate<'a>(
        &'a self,
        channel: &'a str,
        headers: &'a HeaderMap,
    ) -> Option<GateFuture<'a>> {
        // Only with `--redis`, only for co-browsing channels: what the
        // cookies name and this node lacks is loaded before `gate` decides.
        self.store()?;
        let rest = channel.strip_prefix(CHANNEL_PREFIX)?;
        Some(Box::pin(async move {
            let cookies = Cookies::of(headers);
            let named = (channel != CONSOLE_CHANNEL
                && channel != SYNC_CHANNEL
                && !rest.starts_with(CLASS_PREFIX))
            .then_some(rest);
            self.ensure(&cookies, named).await
        }))
    }
}

/// The checked event of a `POST /cobrowse/event` of type `kind` (`None`
/// for `end`), by an agent or the customer. Who may send what is checked
/// before the fields, so a customer sending `push` hears that it may not.
fn say_of(kind: &str, agent: bool, body: &Map<String, Value>) -> Result<Option<Say>, Error> {
    let url = || site_url(&field(body, "url", MAX_URL, true)?);
    let title = || field(body, "title", MAX_TITLE, false);
    let say = match kind {
        "push" if agent => Say::Push { url: url()? },
        "pull" if agent => Say::Pull,
        "pulled" if !agent => Say::Pulled {
            url: url()?,
            title: title()?,
        },
        "nav" | "click" => {
            let (url, title) = (url()?, title()?);
            let text = field(body, "text", MAX_TITLE, false)?;
            if kind == "nav" {
                Say::Nav { url, title, text }
            } else {
                Say::Click { url, title, text }
            }
        }
        "chat" => {
            let text = field(body, "text", MAX_CHAT, true)?;
            if text.trim().is_empty() {
                return Err(Error::bad_request("chat text is empty"));
            }
            Say::Chat { text }
        }
        "end" => return Ok(None),
        "push" | "pull" | "pulled" => {
            return Err(Error::forbidden(format!(
                "{kind} is sent by the {}",
                if agent { "customer" } else { "agent" }
            )))
        }
        _ => {
            return Err(Error::bad_request(
                "unknown event type (push, pull, pulled, nav, click, chat, end)",
            ))
        }
    };
    Ok(Some(say))
}

/// A POST body: JSON object, from an allowed origin.
fn post_body(req: &Request<Bytes>) -> Result<Map<String, Value>, Error> {
    if crate::http::origin_denied(req) {
        return Err(Error::forbidden("origin not allowed (see --allow-origin)"));
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
        return Err(Error::unsupported_media_type(
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
