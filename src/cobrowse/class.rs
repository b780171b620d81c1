//! Classroom mode: one presenter, many followers, every browser in step.
//!
//! A presenter (a customer who invites from any page with `/cobrowse.js`,
//! or a signed-in agent, who then presents under the agent's name) opens a
//! class; followers join it with a short code or a link. Every page the
//! presenter loads and every link the presenter clicks goes on the class's
//! channel, `cb.class.{id}`, as `nav` and `click` (the same vocabulary and
//! checks as help sessions: `Say`, paths within the site); the followers'
//! pages follow (a clicked link blinks first). A follower's own navigation
//! steers nobody, and a follower who loads a page (a join, a reload, a link
//! of their own) is sent to the class's current page, so nobody drifts.
//! The presenter may hand control to one follower: that follower's pages and
//! clicks then lead everyone, the presenter included, until the presenter
//! takes control back; whoever does not hold control is refused (403).
//!
//! **Joining.** A class has two ways in, both valid while it lasts:
//!
//! * a **code** of 9 digits, shown `123 456 789`, to read out or type.
//!   A billion codes, and wrong ones are limited for the whole server
//!   ([`CODE_FAILS`] in [`CODE_WINDOW`], then 429 for everyone until the
//!   window passes): walking them is hopeless. The limit is global because
//!   followers are anonymous (no account, no address to count by); a flood
//!   of wrong codes can delay typed joins by a minute at most, and never the
//!   link;
//! * a **link**: a page of the class with `#tandem-class=KEY` (22 random
//!   characters, unguessable, so not counted against the limit). The key is
//!   in the fragment, which browsers never send to a server nor put in a
//!   Referer; the widget joins with it and removes it from the address bar.
//!
//! **Credentials.** The presenter's cookie `tandem_present` is
//! `{class id}.{token}`, a follower's `tandem_follow` is
//! `{class id}.{follower id}.{token}`: `HttpOnly`, `SameSite=Strict`, the
//! server keeping only the tokens' SHA-256. The class id names the channel
//! and is not a secret; follower ids are small (`f1`, `f2`, ...), shown to
//! the presenter to hand control.
//!
//! **Limits.** At most `--max-class-followers` (100) followers in a class,
//! at most `--max-help-sessions` classes open at once, and a class ends by
//! itself after `--help-session-ttl`, like a help session.
//!
//! `Classes` is plain data behind the caller's lock; the operations on
//! [`Cobrowse`] below change it under the lock, let it go, then publish and
//! write the audit lines (never holding the lock across an `.await`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::secret::{digest, random_below, random_token, Digest32};
use super::state::{Cobrowse, Cookies, Say};
use super::store::{now_ms, StoredClass, CLASS_FAILS};
use crate::error::Error;
use crate::NewEvent;

/// Wrong class codes the whole server accepts in [`CODE_WINDOW`].
pub(crate) const CODE_FAILS: u32 = 10;
/// The window of [`CODE_FAILS`].
pub(crate) const CODE_WINDOW: Duration = Duration::from_secs(60);
/// The start of a class channel's name, after `cb.`.
pub(crate) const CLASS_PREFIX: &str = "class.";

/// The channel of class `id`.
pub(crate) fn class_channel(id: &str) -> String {
    format!("cb.{CLASS_PREFIX}{id}")
}

/// Who is someone in a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    Presenter,
    /// A follower, by id (`f1`, `f2`, ...).
    Follower(String),
}

impl Member {
    /// The `from` of its events (clients subscribe with it as `client`).
    fn client_id(&self) -> String {
        match self {
            Member::Presenter => "presenter".into(),
            Member::Follower(f) => format!("follower:{f}"),
        }
    }
}

#[derive(Debug)]
struct Follower {
    id: String,
    name: String,
    token: Digest32,
}

/// One class.
#[derive(Debug)]
pub(crate) struct Class {
    id: String,
    code: String,
    link: String,
    presenter: Digest32,
    presenter_name: String,
    url: String,
    title: String,
    created: Instant,
    created_ms: u64,
    /// When this node last had it from Redis (or made it), with `--redis`.
    checked: Instant,
    followers: Vec<Follower>,
    counter: u64,
    /// The follower who holds control; `None`: the presenter.
    control: Option<String>,
}

impl Class {
    /// What Redis keeps of it (`store.rs`).
    fn stored(&self) -> StoredClass {
        StoredClass {
            id: self.id.clone(),
            presenter: self.presenter.hex(),
            name: self.presenter_name.clone(),
            url: self.url.clone(),
            title: self.title.clone(),
            created_ms: self.created_ms,
            code: self.code.clone(),
            link: self.link.clone(),
            control: self.control.clone(),
            followers: self
                .followers
                .iter()
                .map(|f| (f.id.clone(), f.name.clone(), f.token.hex()))
                .collect(),
            counter: self.counter,
        }
    }

    /// A class as Redis has it (made on another node, or before a restart).
    fn restore(st: StoredClass) -> Option<Class> {
        let age = Duration::from_millis(now_ms().saturating_sub(st.created_ms));
        let now = Instant::now();
        let mut followers = Vec::with_capacity(st.followers.len());
        for (id, name, t) in st.followers {
            followers.push(Follower {
                id,
                name,
                token: Digest32::from_hex(&t)?,
            });
        }
        Some(Class {
            id: st.id,
            code: st.code,
            link: st.link,
            presenter: Digest32::from_hex(&st.presenter)?,
            presenter_name: st.name,
            url: st.url,
            title: st.title,
            created: now.checked_sub(age).unwrap_or(now),
            created_ms: st.created_ms,
            checked: now,
            followers,
            counter: st.counter,
            control: st.control,
        })
    }

    fn follower(&self, id: &str) -> Option<&Follower> {
        self.followers.iter().find(|f| f.id == id)
    }

    /// Who steers now: its id and name.
    fn controller(&self) -> (Value, String) {
        match self.control.as_deref().and_then(|f| self.follower(f)) {
            Some(f) => (Value::from(f.id.as_str()), f.name.clone()),
            None => (Value::Null, self.presenter_name.clone()),
        }
    }

    fn roster(&self) -> Value {
        self.followers
            .iter()
            .map(|f| json!({"id": f.id, "name": f.name}))
            .collect()
    }

    /// What a member sees of the class (a presenter: the code, the link
    /// key and the followers too).
    fn view(&self, member: &Member) -> Value {
        let (to, name) = self.controller();
        let mut v = json!({
            "id": self.id,
            "channel": class_channel(&self.id),
            "presenter": self.presenter_name,
            "url": self.url,
            "title": self.title,
            "control": {"to": to, "name": name},
            "count": self.followers.len(),
        });
        match member {
            Member::Presenter => {
                v["role"] = "presenter".into();
                v["me"] = "presenter".into();
                v["name"] = self.presenter_name.as_str().into();
                v["code"] = shown_code(&self.code).into();
                v["link"] =
                    format!("{}#tandem-class={}", strip_fragment(&self.url), self.link).into();
                v["followers"] = self.roster();
            }
            Member::Follower(f) => {
                v["role"] = "follower".into();
                v["me"] = f.as_str().into();
                v["name"] = self
                    .follower(f)
                    .map(|x| x.name.as_str())
                    .unwrap_or("")
                    .into();
            }
        }
        v
    }
}

/// A code as it is shown: `123 456 789`.
fn shown_code(code: &str) -> String {
    format!("{} {} {}", &code[..3], &code[3..6], &code[6..])
}

fn strip_fragment(url: &str) -> &str {
    url.split('#').next().unwrap_or(url)
}

/// Every open class, and the codes and link keys that point at them.
#[derive(Default)]
pub(crate) struct Classes {
    map: HashMap<String, Class>,
    codes: HashMap<String, String>,
    links: HashMap<String, String>,
    /// Wrong codes: when the window began, how many in it.
    fails: Option<(Instant, u32)>,
}

/// How a follower comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// The 9 digits (spaces and dashes already removed).
    Code(String),
    /// The link's key.
    Link(String),
}

impl Key {
    /// A typed code (`123 456 789`, `123-456-789`) or a link's key.
    pub(crate) fn parse(s: &str) -> Key {
        let digits: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Key::Code(digits)
        } else {
            Key::Link(s.trim().to_string())
        }
    }

    fn via(&self) -> &'static str {
        match self {
            Key::Code(_) => "code",
            Key::Link(_) => "link",
        }
    }
}

impl Classes {
    /// Opens a class; returns its id and the presenter's token.
    fn open(&mut self, name: String, url: String, title: String) -> (String, String) {
        let id = random_token(18);
        let token = random_token(32);
        let code = loop {
            let c = format!("{:09}", random_below(1_000_000_000));
            if !self.codes.contains_key(&c) {
                break c;
            }
        };
        let link = random_token(16);
        self.codes.insert(code.clone(), id.clone());
        self.links.insert(link.clone(), id.clone());
        self.map.insert(
            id.clone(),
            Class {
                id: id.clone(),
                code,
                link,
                presenter: digest(&token),
                presenter_name: name,
                url,
                title,
                created: Instant::now(),
                created_ms: now_ms(),
                checked: Instant::now(),
                followers: Vec::new(),
                counter: 0,
                control: None,
            },
        );
        (id, token)
    }

    /// Takes a class as Redis has it into this node's cache.
    fn upsert(&mut self, st: StoredClass) {
        let Some(c) = Class::restore(st) else {
            return;
        };
        self.remove(&c.id);
        self.codes.insert(c.code.clone(), c.id.clone());
        self.links.insert(c.link.clone(), c.id.clone());
        self.map.insert(c.id.clone(), c);
    }

    fn remove(&mut self, id: &str) -> Option<Class> {
        let c = self.map.remove(id)?;
        self.codes.remove(&c.code);
        self.links.remove(&c.link);
        Some(c)
    }

    fn expire(&mut self, ttl: Duration) -> Vec<String> {
        let old: Vec<String> = self
            .map
            .values()
            .filter(|c| c.created.elapsed() >= ttl)
            .map(|c| c.id.clone())
            .collect();
        old.into_iter()
            .filter_map(|id| self.remove(&id).map(|c| c.id))
            .collect()
    }

    /// The class a key opens, counting wrong codes (not wrong link keys:
    /// those are unguessable). 429 while the window's wrong codes are used up.
    fn find(&mut self, key: &Key) -> Result<String, Error> {
        let now = Instant::now();
        if self.fails.is_some_and(|(t, _)| now - t >= CODE_WINDOW) {
            self.fails = None;
        }
        let found = match key {
            Key::Code(c) => {
                if self.fails.is_some_and(|(_, n)| n >= CODE_FAILS) {
                    return Err(Error::rate_limited(format!(
                        "too many wrong class codes on this server (max {CODE_FAILS} a minute): \
                         try again in a minute, or use the class's link"
                    )));
                }
                let found = self.codes.get(c).cloned();
                if found.is_none() {
                    self.fails.get_or_insert((now, 0)).1 += 1;
                }
                found
            }
            Key::Link(k) => self.links.get(k).cloned(),
        };
        found.ok_or_else(|| {
            Error::not_found("no class has this code (9 digits, valid while the class lasts)")
        })
    }
}

/// The value of a class cookie split into its parts.
fn split_presenter(v: &str) -> Option<(&str, &str)> {
    v.split_once('.')
}

fn split_follower(v: &str) -> Option<(&str, &str, &str)> {
    let (id, rest) = v.split_once('.')?;
    let (f, token) = rest.split_once('.')?;
    Some((id, f, token))
}

impl Cobrowse {
    fn class_ttl(&self) -> Duration {
        self.settings().help_session_ttl
    }

    /// The class a request's cookies make it a member of, and as whom: the
    /// presenter's cookie first, then the follower's. `want` picks a class
    /// when given.
    pub(crate) fn member(&self, cookies: &Cookies, want: Option<&str>) -> Option<(String, Member)> {
        let ttl = self.class_ttl();
        let classes = self.classes().lock();
        let open = |id: &str| {
            classes
                .map
                .get(id)
                .filter(|c| c.created.elapsed() < ttl && want.is_none_or(|w| w == id))
        };
        if let Some((id, token)) = cookies.present.as_deref().and_then(split_presenter) {
            if open(id).is_some_and(|c| c.presenter == digest(token)) {
                return Some((id.to_string(), Member::Presenter));
            }
        }
        if let Some((id, f, token)) = cookies.follow.as_deref().and_then(split_follower) {
            if open(id)
                .and_then(|c| c.follower(f))
                .is_some_and(|x| x.token == digest(token))
            {
                return Some((id.to_string(), Member::Follower(f.to_string())));
            }
        }
        None
    }

    /// A follower joined (in memory or in Redis): the audit line, then the
    /// event on the class's channel.
    async fn announce_joined(&self, id: &str, fid: &str, name: &str, via: &str, count: usize) {
        self.audit().record(
            "class_joined",
            &[
                ("class", id.into()),
                ("follower", fid.into()),
                ("name", name.into()),
                ("via", via.into()),
            ],
        );
        self.class_publish(
            id,
            "joined",
            &format!("follower:{fid}"),
            json!({"id": fid, "name": name, "count": count}),
        )
        .await;
    }

    async fn class_publish(&self, id: &str, kind: &str, from: &str, data: Value) {
        if let Err(e) = self.try_class_publish(id, kind, from, data).await {
            log::warn!("class event for {id} refused: {e}");
        }
    }

    /// `class_publish`, refused when the event could not be stored (503
    /// with `--redis` and Redis unreachable), for a steering event.
    async fn try_class_publish(
        &self,
        id: &str,
        kind: &str,
        from: &str,
        data: Value,
    ) -> Result<(), Error> {
        let ev = NewEvent {
            kind: kind.to_string(),
            data: Bytes::from(data.to_string()),
            content_type: Some("application/json".into()),
            from: Some(from.to_string()),
        };
        self.hub().publish(&class_channel(id), ev).await.map(|_| ())
    }

    /// Ends classes past their lifetime.
    pub(crate) async fn expire_classes(&self) {
        let mut old = self.classes().lock().expire(self.class_ttl());
        if let Some(store) = self.store() {
            // The one node that takes a class off the list announces its end.
            old.clear();
            let before = now_ms().saturating_sub(self.class_ttl().as_millis() as u64);
            for id in store.classes_older_than(before).await.unwrap_or_default() {
                if store.end_class(&id).await.unwrap_or(false) {
                    old.push(id);
                }
            }
        }
        for id in old {
            self.closed(&id, "timeout").await;
        }
    }

    /// With `--redis`, reloads class `id` into this node's cache (or drops
    /// it there); whether it is open.
    pub(crate) async fn refresh_class(&self, id: &str) -> Result<bool, Error> {
        let Some(store) = self.store() else {
            return Ok(self.classes().lock().map.contains_key(id));
        };
        let ttl = self.class_ttl().as_millis() as u64;
        match store.fetch_class(id).await? {
            Some(st) if now_ms().saturating_sub(st.created_ms) < ttl => {
                self.classes().lock().upsert(st);
                Ok(true)
            }
            _ => {
                self.classes().lock().remove(id);
                Ok(false)
            }
        }
    }

    /// With `--redis`, loads the classes the class cookies name that this
    /// node does not show them a member of (`sync.rs`).
    pub(crate) async fn ensure_classes(&self, cookies: &Cookies) -> Result<(), Error> {
        let present = cookies
            .present
            .as_deref()
            .and_then(split_presenter)
            .map(|(id, _)| id);
        let follow = cookies
            .follow
            .as_deref()
            .and_then(split_follower)
            .map(|(id, ..)| id);
        for id in [present, follow].into_iter().flatten() {
            let stale = self
                .classes()
                .lock()
                .map
                .get(id)
                .is_none_or(|c| c.checked.elapsed() >= super::sync::CACHE_FOR);
            if stale || self.member(cookies, Some(id)).is_none() {
                self.refresh_class(id).await?;
            }
        }
        Ok(())
    }

    /// Another node's notice about a class (`sync.rs`).
    pub(crate) fn class_notice(&self, op: &str, data: &Value) {
        let id = data["id"].as_str().unwrap_or_default();
        match op {
            "class_end" => {
                self.classes().lock().remove(id);
                self.hub().close(&class_channel(id));
            }
            "class_left" => {
                let f = data["follower"].as_str().unwrap_or_default();
                if let Some(c) = self.classes().lock().map.get_mut(id) {
                    c.followers.retain(|x| x.id != f);
                    if c.control.as_deref() == Some(f) {
                        c.control = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// The ids of the classes this node holds.
    pub(crate) fn cached_classes(&self) -> Vec<String> {
        self.classes().lock().map.keys().cloned().collect()
    }

    /// Tells a removed class's channel it ended, closes it, audits.
    async fn closed(&self, id: &str, by: &str) {
        self.class_publish(id, "end", "server", json!({"by": by}))
            .await;
        self.close_after_end(&class_channel(id), "class_end", id)
            .await;
        self.audit()
            .record("class_ended", &[("class", id.into()), ("by", by.into())]);
    }

    /// A member's view of its class, with the channel's cursor to resume from.
    pub(crate) async fn class_view(&self, id: &str, member: &Member) -> Result<Value, Error> {
        if self.store().is_some() {
            self.refresh_class(id).await?;
        }
        let since = self.hub().info(&class_channel(id)).cursor().to_string();
        let classes = self.classes().lock();
        let c = classes
            .map
            .get(id)
            .ok_or_else(|| Error::not_found("no class (it has ended)"))?;
        let mut v = c.view(member);
        drop(classes);
        v["since"] = Value::from(since);
        Ok(v)
    }

    /// Opens a class presented by `name` (`agent`: a signed-in agent) at
    /// `url`; returns its id and the presenter's token.
    pub(crate) async fn open_class(
        &self,
        name: String,
        agent: bool,
        url: String,
        title: String,
    ) -> Result<(String, String), Error> {
        self.expire_classes().await;
        let max = self.settings().max_help_sessions;
        let full = || {
            Error::rate_limited(format!(
                "too many open classes (max {max}): try again in a while"
            ))
        };
        if let Some(store) = self.store() {
            if store.class_count().await? >= max {
                return Err(full());
            }
        }
        let (id, token) = loop {
            let (id, token) = {
                let mut classes = self.classes().lock();
                if classes.map.len() >= max {
                    return Err(full());
                }
                classes.open(name.clone(), url.clone(), title.clone())
            };
            let Some(store) = self.store() else {
                break (id, token);
            };
            let stored = self.classes().lock().map.get(&id).map(Class::stored);
            let Some(st) = stored else {
                continue;
            };
            let ends = st.created_ms + self.class_ttl().as_millis() as u64;
            match store.create_class(&st, ends).await {
                Ok(true) => break (id, token),
                // Its code is another node's class's: draw again.
                Ok(false) => {
                    self.classes().lock().remove(&id);
                }
                Err(e) => {
                    self.classes().lock().remove(&id);
                    let _ = store.end_class(&id).await;
                    return Err(e);
                }
            }
        };
        self.audit().record(
            "class_opened",
            &[
                ("class", id.as_str().into()),
                ("by", name.as_str().into()),
                ("agent", agent.into()),
            ],
        );
        Ok((id, token))
    }

    /// A follower joins with a code or link key; returns the class id and
    /// the follower's id and token.
    pub(crate) async fn join_class(
        &self,
        key: &Key,
        name: Option<String>,
    ) -> Result<(String, String, String), Error> {
        self.expire_classes().await;
        let max = self.settings().max_class_followers;
        if self.store().is_some() {
            return self.join_shared_class(key, name).await;
        }
        let result = {
            let mut classes = self.classes().lock();
            classes.find(key).and_then(|id| {
                let c = classes
                    .map
                    .get_mut(&id)
                    .expect("codes point at open classes");
                if c.followers.len() >= max {
                    return Err(Error::rate_limited(format!(
                        "this class is full (max {max} followers)"
                    )));
                }
                c.counter += 1;
                let fid = format!("f{}", c.counter);
                let token = random_token(32);
                let name = name.unwrap_or_else(|| format!("learner {}", c.counter));
                c.followers.push(Follower {
                    id: fid.clone(),
                    name: name.clone(),
                    token: digest(&token),
                });
                Ok((id, fid, token, name, c.followers.len()))
            })
        };
        let (id, fid, token, name, count) = match result {
            Ok(v) => v,
            Err(e) => {
                if e.is_not_found() {
                    self.audit()
                        .record("class_code_failed", &[("via", key.via().into())]);
                }
                return Err(e);
            }
        };
        self.announce_joined(&id, &fid, &name, key.via(), count)
            .await;
        Ok((id, fid, token))
    }

    /// `join_class` with `--redis`: the code, the limit on wrong codes and
    /// the followers in Redis, for every node.
    async fn join_shared_class(
        &self,
        key: &Key,
        name: Option<String>,
    ) -> Result<(String, String, String), Error> {
        let store = self.store().expect("called with --redis");
        let max = self.settings().max_class_followers;
        let not_found = || {
            self.audit()
                .record("class_code_failed", &[("via", key.via().into())]);
            Error::not_found("no class has this code (9 digits, valid while the class lasts)")
        };
        let found = match key {
            Key::Code(c) => {
                if store.count_of(CLASS_FAILS).await? >= u64::from(CODE_FAILS) {
                    return Err(Error::rate_limited(format!(
                        "too many wrong class codes on this server (max {CODE_FAILS} a minute): \
                         try again in a minute, or use the class's link"
                    )));
                }
                let found = store.find_class(Some(c), None).await?;
                if found.is_none() {
                    store.bump(CLASS_FAILS, CODE_WINDOW).await?;
                }
                found
            }
            Key::Link(k) => store.find_class(None, Some(k)).await?,
        };
        let id = found.ok_or_else(not_found)?;
        let token = random_token(32);
        let n = store
            .join_class(&id, name.as_deref(), &digest(&token).hex(), max)
            .await?
            .ok_or_else(not_found)?;
        let fid = format!("f{n}");
        self.refresh_class(&id).await?;
        let (name, count) = {
            let classes = self.classes().lock();
            let c = classes.map.get(&id);
            (
                c.and_then(|c| c.follower(&fid))
                    .map_or_else(|| format!("learner {n}"), |f| f.name.clone()),
                c.map_or(0, |c| c.followers.len()),
            )
        };
        self.announce_joined(&id, &fid, &name, key.via(), count)
            .await;
        Ok((id, fid, token))
    }

    /// A page load or a clicked link of whoever holds control: published
    /// for everyone else to follow; the class's current page changes. 403
    /// for anyone else.
    pub(crate) async fn class_say(&self, id: &str, member: &Member, say: Say) -> Result<(), Error> {
        let (kind, url, title, text) = match say {
            Say::Nav { url, title, text } => ("nav", url, title, text),
            Say::Click { url, title, text } => ("click", url, title, text),
            _ => return Err(Error::bad_request("a class carries nav and click only")),
        };
        if self.store().is_some() {
            // Control may have changed hands on another node.
            self.refresh_class(id).await?;
        }
        let by = {
            let mut classes = self.classes().lock();
            let c = classes
                .map
                .get_mut(id)
                .ok_or_else(|| Error::not_found("no class (it has ended)"))?;
            let steers = match member {
                Member::Presenter => c.control.is_none(),
                Member::Follower(f) => c.control.as_deref() == Some(f.as_str()),
            };
            if !steers {
                let (_, holder) = c.controller();
                return Err(Error::forbidden(format!(
                    "only the presenter (or who holds control) steers: {holder} does now"
                )));
            }
            c.url = url.clone();
            c.title = title.clone();
            c.controller().1
        };
        if let Some(store) = self.store() {
            store
                .set_class(id, &[("url", url.as_str()), ("title", title.as_str())])
                .await?;
        }
        if kind == "click" {
            self.audit().record(
                "class_clicked",
                &[
                    ("class", id.into()),
                    ("by", by.as_str().into()),
                    ("url", url.as_str().into()),
                ],
            );
        }
        self.try_class_publish(
            id,
            kind,
            &member.client_id(),
            json!({"by": by, "url": url, "title": title, "text": text}),
        )
        .await
    }

    /// The presenter hands control to follower `to`, or takes it back (`None`).
    pub(crate) async fn hand_control(
        &self,
        id: &str,
        member: &Member,
        to: Option<String>,
    ) -> Result<Value, Error> {
        if *member != Member::Presenter {
            return Err(Error::forbidden("only the presenter hands control"));
        }
        if self.store().is_some() {
            self.refresh_class(id).await?;
        }
        let (to, name) = {
            let mut classes = self.classes().lock();
            let c = classes
                .map
                .get_mut(id)
                .ok_or_else(|| Error::not_found("no class (it has ended)"))?;
            if let Some(f) = &to {
                if c.follower(f).is_none() {
                    return Err(Error::not_found(
                        "no such follower in this class (they may have left)",
                    ));
                }
            }
            c.control = to;
            c.controller()
        };
        if let Some(store) = self.store() {
            let to = to.as_str().unwrap_or("");
            store.set_class(id, &[("control", to)]).await?;
        }
        self.audit().record(
            "control_handed",
            &[
                ("class", id.into()),
                ("to", to.clone()),
                ("name", name.as_str().into()),
            ],
        );
        let data = json!({"to": to, "name": name});
        self.class_publish(id, "control", "presenter", data.clone())
            .await;
        Ok(data)
    }

    /// A follower leaves (control, if they held it, goes back to the presenter).
    pub(crate) async fn leave_class(&self, id: &str, f: &str) {
        if let Some(store) = self.store() {
            let presenter = self
                .classes()
                .lock()
                .map
                .get(id)
                .map(|c| c.presenter_name.clone())
                .unwrap_or_default();
            match store.leave_class(id, f).await {
                Ok(Some((count, back))) => {
                    let data = json!({"id": id, "follower": f});
                    self.class_notice("class_left", &data);
                    self.notify("class_left", data).await;
                    return self.left(id, f, count, back, presenter).await;
                }
                Ok(None) => return,
                Err(e) => {
                    log::warn!("class {id}: leaving not stored: {e}");
                    return;
                }
            }
        }
        let left = {
            let mut classes = self.classes().lock();
            classes.map.get_mut(id).and_then(|c| {
                let at = c.followers.iter().position(|x| x.id == f)?;
                c.followers.remove(at);
                let back = c.control.as_deref() == Some(f);
                if back {
                    c.control = None;
                }
                Some((c.followers.len(), back, c.presenter_name.clone()))
            })
        };
        let Some((count, back, presenter)) = left else {
            return;
        };
        self.left(id, f, count, back, presenter).await;
    }

    /// What follows a follower leaving: the audit, and the events.
    async fn left(&self, id: &str, f: &str, count: usize, back: bool, presenter: String) {
        self.audit().record(
            "class_left",
            &[("class", id.into()), ("follower", f.into())],
        );
        let from = format!("follower:{f}");
        if back {
            self.class_publish(id, "control", &from, json!({"to": null, "name": presenter}))
                .await;
        }
        self.class_publish(id, "left", &from, json!({"id": f, "count": count}))
            .await;
    }

    /// The presenter ends the class: everyone hears `end`, the channel closes.
    pub(crate) async fn end_class(&self, id: &str) -> Result<bool, Error> {
        let Some(c) = self.classes().lock().remove(id) else {
            return Ok(false);
        };
        if let Some(store) = self.store() {
            // The one node that takes it off the list announces the end.
            if !store.end_class(id).await? {
                return Ok(false);
            }
        }
        self.closed(id, &c.presenter_name).await;
        Ok(true)
    }

    /// Whether the cookies make a request a member of class `id` (the gate).
    pub(crate) fn class_member(&self, id: &str, cookies: &Cookies) -> bool {
        self.member(cookies, Some(id)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_links_and_the_limit_on_wrong_codes() {
        let mut c = Classes::default();
        let (id, token) = c.open("ann".into(), "/portal/#x".into(), "Shop".into());
        let class = &c.map[&id];
        assert_eq!(class.code.len(), 9);
        assert_eq!(class.presenter, digest(&token));
        let shown = shown_code(&class.code);
        assert_eq!(Key::parse(&shown), Key::Code(class.code.clone()));
        let link = class.view(&Member::Presenter)["link"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(link.starts_with("/portal/#tandem-class="), "{link}");
        let key = Key::parse(link.split('=').nth(1).unwrap());
        assert!(matches!(key, Key::Link(_)));
        // A follower sees no code, link nor roster.
        let v = class.view(&Member::Follower("f1".into()));
        assert!(v.get("code").is_none() && v.get("link").is_none() && v.get("followers").is_none());
        assert_eq!(c.find(&key).unwrap(), id);

        let code = c.map[&id].code.clone();
        let wrong = if code == "000000000" {
            "000000001"
        } else {
            "000000000"
        };
        for _ in 0..CODE_FAILS {
            assert!(c.find(&Key::Code(wrong.into())).unwrap_err().is_not_found());
        }
        let e = c.find(&Key::Code(code)).unwrap_err();
        assert!(
            e.is_rate_limited() && e.message().contains("max 10 a minute"),
            "{e:?}"
        );
        // The link is not held back by wrong codes.
        assert_eq!(c.find(&key).unwrap(), id);
        c.remove(&id);
        assert!(c.codes.is_empty() && c.links.is_empty());
    }
}
