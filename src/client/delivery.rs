//! What a subscription yields: an event, or notice of events it will never
//! see. The client's own copies of [`crate::Delivery`], read off the wire.

use bytes::Bytes;
use serde_json::Value;

use crate::wire::WireEvent;

use super::cursor::{self, Cursor, Epoch};
use super::error::Error;

/// One item of a [`Subscription`](super::Subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event after the cursor.
    Event(Event),
    /// Events the subscription will never see, or a channel that started over.
    Gap(Gap),
}

/// An event as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The id, per channel incarnation, strictly increasing from 1.
    pub id: u64,
    /// The channel's incarnation, where the server says.
    pub epoch: Option<Epoch>,
    /// The type (`message` unless the publisher chose one).
    pub kind: String,
    /// The payload, base64 already undone.
    pub data: Bytes,
    /// The payload's media type, where the transport carries it (not SSE).
    pub content_type: Option<String>,
    /// The publisher's client id, where it gave one and the transport
    /// carries it (not SSE).
    pub from: Option<String>,
}

impl Event {
    /// Where a subscriber that has seen this event stands.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            id: self.id,
        }
    }

    /// The payload as text, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// Ids `from..=to` that the subscription will never see: they left the
/// server's buffer before it read them (it resumed late, or read slowly).
///
/// With `reset`, the channel started over (the server restarted, or the
/// channel was closed or swept and made again): ids count from 1 again and
/// the ones seen before mean nothing now; `from..=to` are the new
/// incarnation's ids that are lost (`to < from` when none are).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// First lost id.
    pub from: u64,
    /// Last lost id.
    pub to: u64,
    /// Whether the channel started over.
    pub reset: bool,
    /// The incarnation the ids are in, where the server says.
    pub epoch: Option<Epoch>,
}

impl Gap {
    /// Where a subscriber stands after the gap.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            id: self.to,
        }
    }

    /// How many events were lost.
    pub fn lost(&self) -> u64 {
        (self.to + 1).saturating_sub(self.from)
    }
}

/// Where a subscriber stands after a wire event; `None` for a gap notice.
/// The one place that reads an event's incarnation off the wire.
pub(crate) fn cursor_of(w: &WireEvent) -> Result<Option<Cursor>, Error> {
    let epoch = w.epoch.as_deref().map(cursor::parse_epoch).transpose()?;
    Ok(w.id.map(|id| Cursor { epoch, id }))
}

impl Delivery {
    /// A wire event as a delivery: a gap notice is an event of type `gap`
    /// with no id, whose data is `{"from":A,"to":B}` (`"reset":true`,
    /// `"epoch":"E"` where set).
    pub(crate) fn from_wire(w: WireEvent) -> Result<Delivery, Error> {
        if let Some(cursor) = cursor_of(&w)? {
            return Ok(Delivery::Event(Event {
                id: cursor.id,
                epoch: cursor.epoch,
                kind: w.kind,
                data: Bytes::from(w.data),
                content_type: w.content_type,
                from: w.from,
            }));
        }
        if w.kind != "gap" {
            return Err(Error::protocol(format!(
                "a {:?} event without an id",
                w.kind
            )));
        }
        let bad = || {
            Error::protocol(format!(
                "bad gap notice {:?}",
                String::from_utf8_lossy(&w.data)
            ))
        };
        let v: Value = serde_json::from_slice(&w.data).map_err(|_| bad())?;
        let from = v["from"].as_u64().ok_or_else(bad)?;
        let to = v["to"].as_u64().ok_or_else(bad)?;
        let epoch = match &v["epoch"] {
            Value::Null => None,
            Value::String(e) => Some(cursor::parse_epoch(e)?),
            _ => return Err(bad()),
        };
        Ok(Delivery::Gap(Gap {
            from,
            to,
            reset: v["reset"].as_bool().unwrap_or(false),
            epoch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(data: &str) -> Result<Delivery, Error> {
        Delivery::from_wire(WireEvent {
            kind: "gap".into(),
            data: data.as_bytes().to_vec(),
            ..WireEvent::default()
        })
    }

    #[test]
    fn reads_gap_notices() {
        let Delivery::Gap(g) = gap(r#"{"from":3,"to":9}"#).unwrap() else {
            panic!("not a gap")
        };
        assert_eq!((g.from, g.to, g.reset, g.lost()), (3, 9, false, 7));
        assert_eq!(g.cursor(), Cursor::bare(9));
        let Delivery::Gap(g) = gap(r#"{"from":1,"to":0,"reset":true,"epoch":"k3"}"#).unwrap()
        else {
            panic!("not a gap")
        };
        assert_eq!((g.reset, g.lost()), (true, 0));
        assert_eq!(g.cursor().to_string(), "k3:0");
        for bad in [
            "",
            "{}",
            r#"{"from":1}"#,
            r#"{"from":1,"to":2,"epoch":"UP"}"#,
            r#"{"from":1,"to":2,"epoch":7}"#,
        ] {
            assert!(gap(bad).unwrap_err().is_protocol(), "{bad}");
        }
    }

    #[test]
    fn reads_events() {
        let w = WireEvent {
            id: Some(7),
            kind: "chat".into(),
            data: b"hi".to_vec(),
            from: Some("ann".into()),
            ..WireEvent::default()
        };
        let Delivery::Event(e) = Delivery::from_wire(w).unwrap() else {
            panic!("not an event")
        };
        assert_eq!((e.id, e.kind.as_str(), e.text()), (7, "chat", Some("hi")));
        assert_eq!(e.cursor(), Cursor::bare(7));
        let no_id = WireEvent {
            kind: "chat".into(),
            ..WireEvent::default()
        };
        assert!(Delivery::from_wire(no_id).unwrap_err().is_protocol());
    }
}
