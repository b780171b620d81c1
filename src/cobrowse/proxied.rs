//! What the proxy asks of co-browsing when tandem stands in front of an
//! application (`src/proxy/`, turned on by [`crate::proxy::ProxyConfig::cobrowse`]).
//!
//! Every request the proxy forwards has a [`Role`]:
//!
//! * **a customer's**, in a help session (its `tandem_help` cookie is
//!   valid): the session's cookie jar (`jar.rs`) learns which cookies the
//!   browser holds and which the application sets, `HttpOnly` ones too;
//! * **a page of an agent's view**: `tandem_view=ID` in its query (or, for
//!   the page's images, scripts and requests, in its same-origin `Referer`),
//!   from a signed-in agent who joined help session `ID`. The proxy sends it
//!   with the jar's cookies instead of the agent's, takes every `Set-Cookie`
//!   out of the answer into the jar, and writes an audit line. Methods other
//!   than GET and HEAD reach the application only while the customer has
//!   handed over control ([`Cobrowse::set_control`]), which they can take
//!   back at any time;
//! * **anything else**: passed as it is.
//!
//! Cookies named `tandem_*` are tandem's own credentials: they never reach
//! the application, whoever sends them.
//!
//! With `--redis` the jars are shared: [`Cobrowse::prepare_proxied`] reads
//! a help session's jar from Redis before its request is forwarded, and
//! [`Cobrowse::persist_jar`] writes what the request and its answer changed,
//! cookie by cookie, so any node serves any help session.

use std::sync::atomic::Ordering;

use hyper::header::{HeaderMap, COOKIE, HOST, REFERER};
use hyper::{Method, Uri};
use serde_json::{json, Value};

use super::jar::{pairs, Jar};
use super::state::{Cobrowse, Cookies, Who};
use crate::error::Error;

/// What a forwarded request is to co-browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Nothing of co-browsing's: passed as it is.
    Plain,
    /// The customer of help session `.0`.
    Customer(String),
    /// A page of agent `agent`'s view of help session `id`.
    View { id: String, agent: String },
}

/// The start of the names of tandem's own cookies.
pub(crate) const OWN_COOKIES: &str = "tandem_";

/// The application's cookies of a request: every `name=value` it carried
/// but tandem's own.
pub(crate) fn app_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut all = pairs(
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    all.retain(|(k, _)| !k.starts_with(OWN_COOKIES));
    all
}

/// The view parameter of a query string.
fn view_in(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == super::VIEW_PARAM)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The view named by a same-origin `Referer` (a page of the view loading
/// its images, scripts and data).
fn view_of_referer(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(REFERER)?.to_str().ok()?;
    let host = headers.get(HOST)?.to_str().ok()?;
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let (authority, rest) = rest.split_at(rest.find('/')?);
    if !authority.eq_ignore_ascii_case(host) {
        return None;
    }
    let query = rest.split('#').next()?.split_once('?')?.1;
    view_in(query).map(str::to_string)
}

/// The request target without the view parameter (what the application sees).
pub(crate) fn without_view(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(super::VIEW_PARAM))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// `location` (a path on the proxy) with the view parameter for session
/// `id`, so a redirect in the view stays in the view; other URLs as they are.
pub(crate) fn keep_in_view(location: &str, id: &str) -> Option<String> {
    if !location.starts_with('/') || location.starts_with("//") {
        return None;
    }
    let (url, fragment) = match location.find('#') {
        Some(i) => location.split_at(i),
        None => (location, ""),
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}{}={id}{fragment}", super::VIEW_PARAM))
}

impl Cobrowse {
    /// With `--redis`, before [`Cobrowse::role`]: loads what the request
    /// names (`sync.rs`) and, for a customer's request or a page of an
    /// agent's view, the session's jar as Redis has it, so that any node
    /// serves a help session opened through the proxy on another.
    pub(crate) async fn prepare_proxied(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(), Error> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let cookies = Cookies::of(headers);
        if cookies.help.is_none() && cookies.agent.is_none() {
            return Ok(());
        }
        let view = match uri.query().and_then(view_in) {
            Some(v) => Some(v.to_string()),
            None => view_of_referer(headers),
        };
        self.ensure(&cookies, view.as_deref()).await?;
        let id = match self.role(uri, headers) {
            Ok(Role::Customer(id)) | Ok(Role::View { id, .. }) => id,
            _ => return Ok(()),
        };
        let shared = self
            .inner
            .sessions
            .lock()
            .map
            .get(&id)
            .is_some_and(|s| s.jar.is_some() || s.jar_elsewhere);
        if !shared {
            return Ok(());
        }
        let entries = store.jar(&id).await?;
        if let Some(s) = self.inner.sessions.lock().map.get_mut(&id) {
            s.jar = Some(Jar::from_entries(&entries));
            s.jar_saved = entries;
        }
        Ok(())
    }

    /// With `--redis`, writes what changed in session `id`'s jar since it
    /// was read (cookie by cookie). A failure is logged: the application's
    /// request goes on, and the next request on any node reads the jar as
    /// Redis has it.
    pub(crate) async fn persist_jar(&self, id: &str) {
        let Some(store) = self.store() else {
            return;
        };
        let diff = {
            let sessions = self.inner.sessions.lock();
            let Some(s) = sessions.map.get(id) else {
                return;
            };
            let Some(jar) = &s.jar else {
                return;
            };
            let now = jar.entries();
            let changed: Vec<(String, String)> = now
                .iter()
                .filter(|(k, v)| s.jar_saved.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let removed: Vec<String> = s
                .jar_saved
                .keys()
                .filter(|k| !now.contains_key(*k))
                .cloned()
                .collect();
            (changed, removed, now, s.created_ms)
        };
        let (changed, removed, now, created) = diff;
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        let ends = created + self.settings().help_session_ttl.as_millis() as u64;
        let pairs: Vec<(&String, &String)> = changed.iter().map(|(k, v)| (k, v)).collect();
        let gone: Vec<&String> = removed.iter().collect();
        match store.save_jar(id, &pairs, &gone, ends).await {
            Ok(()) => {
                if let Some(s) = self.inner.sessions.lock().map.get_mut(id) {
                    s.jar_saved = now;
                }
            }
            Err(e) => log::warn!("help session {id}: cookie jar not stored: {e}"),
        }
    }

    /// Help sessions opened from now on keep the customer's cookies on the
    /// application (the proxy calls this when it is given co-browsing).
    pub(crate) fn keep_jars(&self) {
        self.inner.jars.store(true, Ordering::Release);
    }

    /// A jar for a help session asked for with these request headers, when
    /// jars are kept.
    pub(crate) fn jar_for(&self, path: &str, headers: &HeaderMap) -> Option<Jar> {
        self.inner
            .jars
            .load(Ordering::Acquire)
            .then(|| Jar::seeded(path, &app_cookies(headers)))
    }

    /// What a request on its way to the application is to co-browsing.
    /// A request naming a view in its query that its sender may not see is
    /// refused (403); one whose `Referer` names such a view is plain.
    pub(crate) fn role(&self, uri: &Uri, headers: &HeaderMap) -> Result<Role, Error> {
        let cookies = Cookies::of(headers);
        let named = uri.query().and_then(view_in);
        let view = match named {
            Some(v) => Some(v.to_string()),
            None => view_of_referer(headers),
        };
        if let Some(id) = view {
            let agent = self.agent_named(&cookies);
            let joined = agent.as_ref().and_then(|a| self.joined_open(&id, a));
            match (agent, joined) {
                (Some(agent), Some(true)) => return Ok(Role::View { id, agent }),
                _ if named.is_none() => {}
                (None, _) => {
                    return Err(Error::forbidden(format!(
                    "{} names an agent's view of a help session: sign in as an agent who joined it",
                    super::VIEW_PARAM
                )))
                }
                (Some(_), Some(false)) => {
                    return Err(Error::forbidden("join this help session first"))
                }
                (Some(_), None) => {
                    return Err(Error::forbidden("no such help session (it may have ended)"))
                }
            }
        }
        Ok(match self.customer(&cookies) {
            Some(id) => Role::Customer(id),
            None => Role::Plain,
        })
    }

    /// A customer's request to `path` with these application cookies: the
    /// jar learns them. Returns the `Cookie` header to send instead, when
    /// the agent's view changed cookies the browser has not had yet, and
    /// those `Set-Cookie` lines for the answer.
    pub(crate) fn customer_request(
        &self,
        id: &str,
        path: &str,
        sent: &[(String, String)],
    ) -> (Option<String>, Vec<String>) {
        let mut sessions = self.inner.sessions.lock();
        let Some(jar) = sessions.map.get_mut(id).and_then(|s| s.jar.as_mut()) else {
            return (None, Vec::new());
        };
        jar.saw_request(path, sent);
        let lines = jar.hand_over(path);
        if lines.is_empty() {
            (None, lines)
        } else {
            (Some(jar.header(path).unwrap_or_default()), lines)
        }
    }

    /// The application's answer to a customer's request to `path` set
    /// these cookies (`Set-Cookie` values).
    pub(crate) fn customer_answer(&self, id: &str, path: &str, set: &[String]) {
        let mut sessions = self.inner.sessions.lock();
        if let Some(jar) = sessions.map.get_mut(id).and_then(|s| s.jar.as_mut()) {
            for line in set {
                jar.set(line, path, false);
            }
        }
    }

    /// A request of `agent`'s view of session `id`: the `Cookie` header to
    /// send it with (the customer's, from the jar), or a refusal: the
    /// session keeps no jar (not opened through the proxy), or the method
    /// changes things and the customer has not handed over control. A
    /// refusal is audited.
    pub(crate) fn view_request(
        &self,
        id: &str,
        agent: &str,
        method: &Method,
        target: &str,
        path: &str,
    ) -> Result<Option<String>, Error> {
        let safe = *method == Method::GET || *method == Method::HEAD;
        let refusal = {
            let sessions = self.inner.sessions.lock();
            match sessions.map.get(id) {
                None => Err(Error::not_found("no such help session (it may have ended)")),
                Some(s) if s.jar.is_none() && s.jar_elsewhere => Err(Error::forbidden(
                    "this help session's cookies on the application are kept by the node that opened it (with --redis, proxied co-browsing needs the agent's view to reach that node)",
                )),
                Some(s) if s.jar.is_none() => Err(Error::forbidden(
                    "this help session was not opened through tandem's proxy: it keeps no cookies to view the application with",
                )),
                Some(s) if !safe && !s.control => Err(Error::forbidden(format!(
                    "{method} refused: the customer has not handed control to agents (only GET and HEAD reach the application from an agent's view until they do)"
                ))),
                Some(s) => Ok(s.jar.as_ref().and_then(|j| j.header(path))),
            }
        };
        if let Err(e) = &refusal {
            self.inner.audit.record(
                "on_behalf_refused",
                &[
                    ("session", id.into()),
                    ("agent", agent.into()),
                    ("method", method.as_str().into()),
                    ("target", target.into()),
                    ("why", e.message().into()),
                ],
            );
        }
        refusal
    }

    /// The application answered `status` to a request of `agent`'s view,
    /// setting these cookies: they go into the jar (and to the customer's
    /// browser later), and the request is audited.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn view_answer(
        &self,
        id: &str,
        agent: &str,
        method: &Method,
        target: &str,
        path: &str,
        status: u16,
        set: &[String],
    ) {
        {
            let mut sessions = self.inner.sessions.lock();
            if let Some(jar) = sessions.map.get_mut(id).and_then(|s| s.jar.as_mut()) {
                for line in set {
                    jar.set(line, path, true);
                }
            }
        }
        self.inner.audit.record(
            "on_behalf",
            &[
                ("session", id.into()),
                ("agent", agent.into()),
                ("method", method.as_str().into()),
                ("target", target.into()),
                ("status", status.into()),
                ("cookies_set", Value::from(set.len())),
            ],
        );
    }

    /// The customer of session `id` hands control to the agents (`true`)
    /// or takes it back; everyone on the session's channel hears `control`.
    pub(crate) async fn set_control(&self, id: &str, granted: bool) -> Result<(), Error> {
        let (changed, label) = {
            let mut sessions = self.inner.sessions.lock();
            let s = sessions
                .map
                .get_mut(id)
                .ok_or_else(|| Error::not_found("no help session (it has ended)"))?;
            (
                std::mem::replace(&mut s.control, granted) != granted,
                s.label.clone(),
            )
        };
        if let Some(store) = self.store() {
            store
                .set(id, &[("control", if granted { "1" } else { "0" })])
                .await?;
        }
        if changed {
            self.notify("control", json!({"id": id, "granted": granted}))
                .await;
            self.inner.audit.record(
                if granted {
                    "control_granted"
                } else {
                    "control_revoked"
                },
                &[("session", id.into()), ("by", "customer".into())],
            );
            self.publish(
                id,
                "control",
                &Who::Customer,
                json!({"by": label, "granted": granted}),
            )
            .await;
            self.publish_list().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_locations() {
        let uri: Uri = "/a?x=1&tandem_view=abc&y=2".parse().unwrap();
        assert_eq!(without_view(&uri), "/a?x=1&y=2");
        let uri: Uri = "/a?tandem_view=abc".parse().unwrap();
        assert_eq!(without_view(&uri), "/a");
        assert_eq!(
            keep_in_view("/next", "s1").as_deref(),
            Some("/next?tandem_view=s1")
        );
        assert_eq!(
            keep_in_view("/n?q=1#f", "s1").as_deref(),
            Some("/n?q=1&tandem_view=s1#f")
        );
        assert_eq!(keep_in_view("http://other/", "s1"), None);
        assert_eq!(keep_in_view("//other/", "s1"), None);
    }

    #[test]
    fn own_cookies_stay_home_and_referers_name_views() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "sid=1; tandem_help=a.b".parse().unwrap());
        h.append(COOKIE, "tandem_agent=t; x=2".parse().unwrap());
        assert_eq!(
            app_cookies(&h),
            vec![("sid".into(), "1".into()), ("x".into(), "2".into())]
        );
        h.insert(HOST, "proxy:8080".parse().unwrap());
        h.insert(
            REFERER,
            "http://proxy:8080/page?tandem_view=s1#x".parse().unwrap(),
        );
        assert_eq!(view_of_referer(&h).as_deref(), Some("s1"));
        h.insert(
            REFERER,
            "http://evil:8080/page?tandem_view=s1".parse().unwrap(),
        );
        assert_eq!(view_of_referer(&h), None);
    }
}
