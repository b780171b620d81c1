//! Several nodes, one co-browsing state (`--redis`): each node's memory is
//! a cache of what Redis keeps (`store.rs`).
//!
//! * **Before a request is decided** (a co-browsing route, or the gate of a
//!   `cb.` channel), [`Cobrowse::ensure`] loads from Redis what the
//!   request's cookies name and this node does not have: an agent's sign-in
//!   made on another node, the customer's session made on another node (or
//!   before a restart), the session an agent names. A negative local answer
//!   is so always checked against Redis before a refusal; the checks
//!   themselves (`gate.rs`, `state.rs`) stay synchronous.
//! * **Other nodes hear of changes** that would leave their cache saying
//!   yes where Redis says no (a session ended, a sign-out, control taken
//!   back) and of the agents who joined, on the internal channel
//!   [`SYNC_CHANNEL`], which the Redis backplane carries to every node in
//!   order (after the session's own `end` event); the gate refuses it to
//!   clients. Every node follows it with a subscription on its own hub; a
//!   gap in it (notices lost) makes the node reload every session it holds
//!   and forget its cached sign-ins.
//!
//! Without `--redis` none of this runs: `ensure` returns at once and no
//! subscription is made.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::secret::{digest, Digest32};
use super::session::channel_of;
use super::state::{Cobrowse, Cookies};
use super::store::{now_ms, KEY_RENEW};
use crate::error::Error;
use crate::event::Delivery;
use crate::NewEvent;

/// The internal channel of the nodes' notices to each other.
pub(crate) const SYNC_CHANNEL: &str = "cb.sync";

/// How long a node trusts what it loaded before asking Redis again: should
/// a notice be lost, a yes that Redis no longer gives lasts at most this.
pub(crate) const CACHE_FOR: Duration = Duration::from_secs(10);

impl Cobrowse {
    /// With `--redis`: loads what these cookies (and the session `named`)
    /// point at and this node lacks, so the synchronous checks that follow
    /// decide on what Redis holds. 503 if Redis cannot be asked.
    pub(crate) async fn ensure(&self, cookies: &Cookies, named: Option<&str>) -> Result<(), Error> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        self.start_sync();
        let stale = |at: Option<Instant>| at.is_none_or(|t| t.elapsed() >= CACHE_FOR);
        if let Some(t) = cookies.agent.as_deref() {
            if self.agent_named(cookies).is_none() || stale(self.inner.agents.checked(t)) {
                let d = digest(t);
                match store.signed_in(&d.hex()).await? {
                    Some((name, left)) => self.inner.agents.adopt(d, name, left),
                    None => self.inner.agents.forget(&d),
                }
            }
        }
        let checked = |id: &str| self.inner.sessions.lock().map.get(id).map(|s| s.checked);
        if let Some((id, _)) = cookies.help.as_deref().and_then(|h| h.split_once('.')) {
            if self.customer(cookies).is_none() || stale(checked(id)) {
                self.refresh(id).await?;
            }
        }
        if let (Some(id), Some(agent)) = (named, self.agent_named(cookies)) {
            if self.joined_open(id, &agent) != Some(true) || stale(checked(id)) {
                self.refresh(id).await?;
            }
        }
        if cookies.present.is_some() || cookies.follow.is_some() {
            self.ensure_classes(cookies).await?;
        }
        Ok(())
    }

    /// Reloads session `id` from Redis into this node's cache (or drops it
    /// there, if Redis has it no more); whether it is open.
    pub(crate) async fn refresh(&self, id: &str) -> Result<bool, Error> {
        let Some(store) = self.store() else {
            return Ok(self.inner.sessions.lock().map.contains_key(id));
        };
        let ttl = self.settings().help_session_ttl.as_millis() as u64;
        match store.fetch(id).await? {
            Some(st) if now_ms().saturating_sub(st.created_ms) < ttl => {
                self.inner.sessions.lock().upsert(st);
                Ok(true)
            }
            _ => {
                self.inner.sessions.lock().remove(id);
                Ok(false)
            }
        }
    }

    /// Tells every node (this one too) of a change on [`SYNC_CHANNEL`];
    /// whether the notice went out (never without `--redis`).
    pub(crate) async fn notify(&self, op: &str, data: Value) -> bool {
        if self.store().is_none() {
            return false;
        }
        let ev = NewEvent {
            kind: op.to_string(),
            data: Bytes::from(data.to_string()),
            content_type: Some("application/json".into()),
            from: Some("server".into()),
        };
        match self.hub().publish(SYNC_CHANNEL, ev).await {
            Ok(_) => true,
            Err(e) => {
                log::warn!("co-browsing notice {op} to the other nodes refused: {e}");
                false
            }
        }
    }

    /// Closes the channel of a session or class that ended, once its `end`
    /// event is in: with `--redis` when this node's own notice comes back
    /// (after the event, in the backplane's one order), on every node at
    /// once; in memory (or if the notice could not go out), now.
    pub(crate) async fn close_after_end(&self, channel: &str, op: &str, id: &str) {
        if !self.notify(op, json!({ "id": id })).await {
            self.hub().close(channel);
        }
    }

    /// Starts, once, the task that follows [`SYNC_CHANNEL`] (with `--redis`
    /// and on a tokio runtime). It stops when the last `Cobrowse` goes.
    pub(crate) fn start_sync(&self) {
        if self.store().is_none() || self.inner.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.syncing.store(false, Ordering::Release);
            return;
        };
        let mut sub = match self.hub().follow(SYNC_CHANNEL) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("co-browsing cannot follow {SYNC_CHANNEL}: {e}");
                self.inner.syncing.store(false, Ordering::Release);
                return;
            }
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        let mut stop = self.inner.stop.subscribe();
        // This node's per-run agent key, said to the others while it lives.
        let key = self.inner.agents.key_digest().map(|d| d.hex());
        let mut renew = tokio::time::interval(KEY_RENEW);
        rt.spawn(async move {
            loop {
                let d = tokio::select! {
                    d = sub.next() => d,
                    _ = stop.changed() => return,
                    _ = renew.tick(), if key.is_some() => {
                        let Some(inner) = weak.upgrade() else {
                            return;
                        };
                        if let (Some(store), Some(k)) = (&inner.store, &key) {
                            if let Err(e) = store.register_key(k).await {
                                log::warn!("agent key not shared with the other nodes: {e}");
                            }
                        }
                        continue;
                    }
                };
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let cb = Cobrowse { inner };
                match d {
                    Delivery::Event(e) => {
                        let data: Value = serde_json::from_slice(&e.data).unwrap_or_default();
                        cb.apply(&e.kind, &data);
                    }
                    Delivery::Gap(_) => cb.resync().await,
                }
            }
        });
    }

    /// Another node's (or this node's own) notice.
    fn apply(&self, op: &str, data: &Value) {
        let id = data["id"].as_str().unwrap_or_default();
        match op {
            "end" => {
                self.inner.sessions.lock().remove(id);
                // Streams open here deliver the `end` event (it came before
                // this notice) and end.
                self.hub().close(&channel_of(id));
            }
            "signout" => {
                if let Some(d) = data["digest"].as_str().and_then(Digest32::from_hex) {
                    self.inner.agents.forget(&d);
                }
            }
            "control" => {
                if let Some(s) = self.inner.sessions.lock().map.get_mut(id) {
                    s.control = data["granted"].as_bool().unwrap_or(false);
                }
            }
            "joined" => {
                let agent = data["agent"].as_str().unwrap_or_default();
                if let Some(s) = self.inner.sessions.lock().map.get_mut(id) {
                    if !agent.is_empty() && !s.agents.iter().any(|a| a == agent) {
                        s.agents.push(agent.to_string());
                    }
                }
            }
            other => self.class_notice(other, data),
        }
    }

    /// Notices were lost: reload every cached session, forget cached sign-ins.
    async fn resync(&self) {
        self.inner.agents.forget_all();
        let ids: Vec<String> = self.inner.sessions.lock().map.keys().cloned().collect();
        for id in ids {
            match self.refresh(&id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.hub().close(&channel_of(&id));
                }
                Err(e) => log::warn!("co-browsing resync of {id}: {e}"),
            }
        }
        for id in self.cached_classes() {
            if let Ok(false) = self.refresh_class(&id).await {
                self.hub().close(&super::class::class_channel(&id));
            }
        }
    }

    /// The digest of a sign-in token, as the notices and Redis name it.
    pub(crate) fn token_digest(token: &str) -> String {
        digest(token).hex()
    }

    /// Tells the other nodes that a sign-in ended.
    pub(crate) async fn notify_sign_out(&self, token: &str) {
        self.notify("signout", json!({"digest": Cobrowse::token_digest(token)}))
            .await;
    }
}
