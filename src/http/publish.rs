//! Publish bodies: raw, `application/x-www-form-urlencoded`, `multipart/form-data`.
//!
//! Every parser turns a whole body into events *before* anything is published,
//! so a bad part refuses the request and publishes nothing: bad input loses
//! nothing and half a form never reaches subscribers.
//!
//! * raw: the body is the data, its `Content-Type` is kept, the type comes
//!   from `?type=` or an `Event-Type` header.
//! * urlencoded: fields `type` (optional) and `data`, so a plain HTML form
//!   can publish; a body with neither field is taken whole as the data, so
//!   `curl -d hello` publishes `hello`.
//! * multipart: each part is one event; its field name is its type (a form
//!   `<input type=file name=image>` publishes an `image` event) and a file
//!   part keeps its content type, so a form can push a picture.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::route::{parse_pairs, percent_decode};
use crate::config::Config;
use crate::error::Error;
use crate::event::{check_type, NewEvent};

/// How a body is to be read, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// Anything else: the body is one event's data.
    Raw(Option<String>),
    /// `application/x-www-form-urlencoded`
    Form,
    /// `multipart/form-data` with this boundary.
    Multipart(String),
}

impl BodyKind {
    /// Classifies a request by its `Content-Type` header.
    pub fn from_content_type(ct: Option<&str>) -> Result<BodyKind, Error> {
        let Some(ct) = ct.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(BodyKind::Raw(None));
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Ok(BodyKind::Form)
        } else if essence.eq_ignore_ascii_case("multipart/form-data") {
            multer::parse_boundary(ct)
                .map(BodyKind::Multipart)
                .map_err(|_| Error::bad_request("multipart/form-data without a boundary"))
        } else {
            Ok(BodyKind::Raw(Some(ct.to_string())))
        }
    }

    /// The most body bytes this kind may send: an encoded form can be three
    /// times its data, a multipart body holds up to `max_parts` events.
    pub fn max_body(&self, cfg: &Config) -> usize {
        match self {
            BodyKind::Raw(_) => cfg.max_event_bytes,
            BodyKind::Form => cfg.max_event_bytes * 3 + 1024,
            BodyKind::Multipart(_) => cfg.max_body_bytes(),
        }
    }
}

/// Parses a form body into one event.
pub fn parse_form(body: &[u8], default_type: &str, cfg: &Config) -> Result<NewEvent, Error> {
    let body =
        std::str::from_utf8(body).map_err(|_| Error::bad_request("form body must be utf-8"))?;
    let mut kind = None;
    let mut data = None;
    // Only a body that names a field is decoded as a form: `curl -d "50% off"`
    // has no field, and its `%` is no escape but part of the data (below).
    let is_field = |p: &str| {
        let k = p.split_once('=').map_or(p, |(k, _)| k);
        matches!(percent_decode(k, true).as_deref(), Ok(b"type" | b"data"))
    };
    let pairs = if body.split('&').any(is_field) {
        parse_pairs(body)?
    } else {
        Vec::new()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "type" => {
                kind = Some(
                    String::from_utf8(v).map_err(|_| Error::bad_request("type must be utf-8"))?,
                )
            }
            "data" => data = Some(v),
            _ => {}
        }
    }
    // `curl -d hello` sends a form body that is not a form: with no `data`
    // field, the whole body is the data.
    let data = match data {
        Some(d) => d,
        None if kind.is_none() => body.as_bytes().to_vec(),
        None => {
            return Err(Error::bad_request(
                "form has a type field but no data field",
            ))
        }
    };
    check_size(data.len(), cfg)?;
    let kind = kind.unwrap_or_else(|| default_type.to_string());
    check_type(&kind)?;
    Ok(NewEvent {
        kind,
        data: data.into(),
        content_type: Some("text/plain; charset=utf-8".into()),
        from: None,
    })
}

fn check_size(len: usize, cfg: &Config) -> Result<(), Error> {
    if len > cfg.max_event_bytes {
        return Err(Error::too_large(format!(
            "event too large (max {} bytes)",
            cfg.max_event_bytes
        )));
    }
    Ok(())
}

struct Once(Option<Bytes>);

impl futures_core::Stream for Once {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.get_mut().0.take().map(Ok))
    }
}

/// Parses a `multipart/form-data` body into one event per part.
pub async fn parse_multipart(
    body: Bytes,
    boundary: &str,
    default_type: &str,
    cfg: &Config,
) -> Result<Vec<NewEvent>, Error> {
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(cfg.max_event_bytes as u64)
            .whole_stream(cfg.max_body_bytes() as u64),
    );
    let mut mp = multer::Multipart::with_constraints(Once(Some(body)), boundary, limits);
    let mut events = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, cfg)),
        };
        if events.len() == cfg.max_parts {
            return Err(Error::too_large(format!(
                "too many parts (max {})",
                cfg.max_parts
            )));
        }
        let kind = field
            .name()
            .filter(|n| !n.is_empty())
            .unwrap_or(default_type)
            .to_string();
        check_type(&kind)?;
        let content_type = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.map_err(|e| multipart_error(e, cfg))?;
        check_size(data.len(), cfg)?;
        events.push(NewEvent {
            kind,
            data,
            content_type: content_type.or_else(|| Some("text/plain; charset=utf-8".into())),
            from: None,
        });
    }
    if events.is_empty() {
        return Err(Error::bad_request("multipart body has no parts"));
    }
    Ok(events)
}

fn multipart_error(e: multer::Error, cfg: &Config) -> Error {
    match e {
        multer::Error::FieldSizeExceeded { .. } => Error::too_large(format!(
            "event too large (max {} bytes)",
            cfg.max_event_bytes
        )),
        multer::Error::StreamSizeExceeded { .. } => Error::too_large(format!(
            "body too large (max {} bytes)",
            cfg.max_body_bytes()
        )),
        e => Error::bad_request(format!(
            "malformed multipart body: {}",
            e.to_string().to_lowercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(
            BodyKind::from_content_type(None).unwrap(),
            BodyKind::Raw(None)
        );
        assert_eq!(
            BodyKind::from_content_type(Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"))
                .unwrap(),
            BodyKind::Form
        );
        assert_eq!(
            BodyKind::from_content_type(Some("multipart/form-data; boundary=xyz")).unwrap(),
            BodyKind::Multipart("xyz".into())
        );
        assert!(BodyKind::from_content_type(Some("multipart/form-data")).is_err());
    }

    #[test]
    fn form() {
        let cfg = Config::default();
        let e = parse_form(b"type=chat&data=hi+there%21", "message", &cfg).unwrap();
        assert_eq!((e.kind.as_str(), &e.data[..]), ("chat", &b"hi there!"[..]));
        assert!(parse_form(b"type=chat", "message", &cfg).is_err());
        let e = parse_form(b"hello world", "message", &cfg).unwrap();
        assert_eq!(&e.data[..], b"hello world");
        assert!(parse_form(b"type=a%20b&data=x", "message", &cfg).is_err());
    }
}
