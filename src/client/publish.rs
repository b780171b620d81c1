//! Publishing: one raw POST per event.

use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::Method;

use crate::NewEvent;

use super::conn::{self, Req};
use super::error::Error;
use super::subscription::token_refused;
use super::target::Target;
use super::Client;

impl Client {
    /// Publishes one event to a channel URL (`http://host:port/ch/NAME`; a
    /// subscribe URL such as `.../ch/NAME/sse` names the same channel) and
    /// returns its id once the server has it.
    ///
    /// The data is the raw body, with the event's content type as
    /// `Content-Type` (none when it has none: the server takes UTF-8 as
    /// text), its type as `Event-Type` and its `from` as `?client=` (unless
    /// the URL has one). It is sent once: a publish that fails on the way is
    /// not repeated, since the server may have it. (A token the server
    /// refuses is asked of the token source again and the publish sent
    /// once more: the server took nothing.)
    pub async fn publish(&self, url: &str, event: NewEvent) -> Result<u64, Error> {
        let target = Target::parse(url)?;
        let mut extra = Vec::new();
        if let Some(from) = &event.from {
            if !target.has_param("client") {
                extra.push(("client", from.as_str()));
            }
        }
        let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), Error> {
            let v = HeaderValue::from_str(value)
                .map_err(|_| Error::input(format!("bad {name} {value:?}")))?;
            Ok((
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                v,
            ))
        };
        let mut headers = vec![header("event-type", &event.kind)?];
        if let Some(ct) = &event.content_type {
            headers.push(header(CONTENT_TYPE.as_str(), ct)?);
        }
        let req = || Req {
            method: Method::POST,
            path: target.publish_path(&extra),
            headers: headers.clone(),
            body: event.data.clone(),
        };
        let s = &self.settings;
        let send = || conn::fetch(s, &self.pool, &target.endpoint, req(), s.request_timeout);
        let renewable = s.token.as_ref().filter(|t| t.renewable());
        let body = match (send().await, renewable) {
            // A refused token from a source: a fresh one, once (the server
            // took nothing, so sending again cannot publish twice).
            (Err(e), Some(tokens)) if token_refused(&e) => {
                tokens.forget();
                send().await?
            }
            (result, _) => result?,
        };
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            Error::protocol(format!(
                "the publish answer is not json: {:?}",
                String::from_utf8_lossy(&body)
            ))
        })?;
        v["id"]
            .as_u64()
            .ok_or_else(|| Error::protocol(format!("the publish answer has no id: {v}")))
    }
}
