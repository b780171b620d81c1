//! The transports a client can subscribe on, and how each one's bytes
//! become wire events (with the parsers of [`crate::wire`]).

use std::fmt;
use std::str::FromStr;

use crate::wire::{self, MultipartParser, SseParser, WireEvent};

use super::cursor::{self, Cursor};
use super::error::Error;

/// How a subscription receives events: one long streamed answer, or one
/// answer per batch (long-poll). Every transport delivers the same events;
/// pick a polling one when a proxy on the way buffers whole answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Server-Sent Events, `/ch/NAME/sse` (the default).
    #[default]
    Sse,
    /// `multipart/x-mixed-replace`, `/ch/NAME/multipart`.
    Multipart,
    /// `multipart/mixed`, `/ch/NAME/mixed`.
    Mixed,
    /// Long-poll JSON, `/ch/NAME/poll`.
    Poll,
    /// Long-poll JSONP, `/ch/NAME/jsonp`.
    Jsonp,
    /// The forever-iframe HTML page, `/ch/NAME/iframe`.
    Iframe,
}

/// The callback asked for on JSONP and iframe, so the parser knows it.
pub(crate) const CALLBACK: &str = "tandemEvent";

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 6] = [
        Transport::Sse,
        Transport::Multipart,
        Transport::Mixed,
        Transport::Poll,
        Transport::Jsonp,
        Transport::Iframe,
    ];

    /// The name in the route, `/ch/NAME/{name}`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Multipart => "multipart",
            Transport::Mixed => "mixed",
            Transport::Poll => "poll",
            Transport::Jsonp => "jsonp",
            Transport::Iframe => "iframe",
        }
    }

    /// Whether events arrive on one long answer (rather than one per poll).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Poll | Transport::Jsonp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = Error;

    fn from_str(s: &str) -> Result<Transport, Error> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                Error::input(format!(
                    "unknown transport {s:?} (sse, multipart, mixed, poll, jsonp or iframe)"
                ))
            })
    }
}

/// Turns a streamed answer's bytes into wire events, as they arrive.
#[derive(Debug)]
pub(crate) enum Decoder {
    Sse(SseParser),
    Multipart(MultipartParser),
    Iframe(IframeReader),
}

impl Decoder {
    /// The decoder for a stream answered with `content_type`, checked
    /// against what `transport` should get (a proxy's own page is not an
    /// event stream).
    pub(crate) fn new(transport: Transport, content_type: &str) -> Result<Decoder, Error> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let want = match transport {
            Transport::Sse => "text/event-stream",
            Transport::Multipart => "multipart/x-mixed-replace",
            Transport::Mixed => "multipart/mixed",
            Transport::Iframe => "text/html",
            Transport::Poll | Transport::Jsonp => unreachable!("not a stream"),
        };
        if essence != want {
            return Err(Error::protocol(format!(
                "the {transport} stream came as {content_type:?} (want {want})"
            )));
        }
        Ok(match transport {
            Transport::Sse => Decoder::Sse(SseParser::new()),
            Transport::Iframe => Decoder::Iframe(IframeReader::new(CALLBACK)),
            _ => {
                let boundary = param(content_type, "boundary").ok_or_else(|| {
                    Error::protocol(format!(
                        "multipart stream without a boundary: {content_type:?}"
                    ))
                })?;
                Decoder::Multipart(MultipartParser::new(&boundary))
            }
        })
    }

    /// Feeds bytes; returns the events they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, Error> {
        let r = match self {
            Decoder::Sse(p) => p.feed(bytes),
            Decoder::Multipart(p) => p.feed(bytes),
            Decoder::Iframe(p) => p.feed(bytes),
        };
        r.map_err(|e| Error::protocol(format!("the stream does not parse: {e}")))
    }
}

/// A parameter of a header value such as `multipart/mixed; boundary=x`.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A forever-iframe page read as it arrives: each complete
/// `<script>parent.CALLBACK(...);</script>` is one JSON event.
#[derive(Debug)]
pub(crate) struct IframeReader {
    open: Vec<u8>,
    buf: Vec<u8>,
}

const SCRIPT_CLOSE: &[u8] = b");</script>";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl IframeReader {
    pub(crate) fn new(callback: &str) -> IframeReader {
        IframeReader {
            open: format!("<script>parent.{callback}(").into_bytes(),
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(start) = find(&self.buf, &self.open) else {
                // Padding and heartbeat comments: keep only what could be
                // the start of a script tag cut in two.
                let keep = self.buf.len().min(self.open.len() - 1);
                self.buf.drain(..self.buf.len() - keep);
                return Ok(out);
            };
            let body = start + self.open.len();
            let Some(len) = find(&self.buf[body..], SCRIPT_CLOSE) else {
                self.buf.drain(..start);
                return Ok(out);
            };
            out.push(wire::parse_json_event(&self.buf[body..body + len])?);
            self.buf.drain(..body + len + SCRIPT_CLOSE.len());
        }
    }
}

/// A long-poll (or JSONP) answer: its events and the cursor to poll from next.
pub(crate) fn parse_answer(
    transport: Transport,
    body: &[u8],
) -> Result<(Vec<WireEvent>, Cursor), Error> {
    let bad = |e: String| Error::protocol(format!("the {transport} answer does not parse: {e}"));
    let (events, next) = match transport {
        Transport::Jsonp => {
            let (_, events, next) = wire::parse_jsonp(body).map_err(bad)?;
            (events, next)
        }
        _ => wire::parse_poll(body).map_err(bad)?,
    };
    // `next` is a number today and an `EPOCH:ID` string once cursors carry
    // the channel's incarnation; both print as a cursor.
    let next = next.to_string();
    let next = cursor::parse(&next).map_err(|_| bad(format!("bad next cursor {next:?}")))?;
    Ok((events, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>().unwrap(), t);
        }
        assert!("ws".parse::<Transport>().unwrap_err().is_input());
    }

    #[test]
    fn checks_the_content_type_and_finds_the_boundary() {
        let d = Decoder::new(Transport::Mixed, "multipart/mixed; boundary=\"b-1\"").unwrap();
        assert!(matches!(d, Decoder::Multipart(_)));
        let e = Decoder::new(Transport::Sse, "text/html").unwrap_err();
        assert!(e.is_protocol(), "{e}");
        assert!(Decoder::new(Transport::Multipart, "multipart/x-mixed-replace").is_err());
    }

    #[test]
    fn iframe_scripts_cut_anywhere() {
        let page = b"<html><!--      --><script>parent.cb({\"id\":1,\"type\":\"m\",\"data\":\"a);\"});</script><!-- hb --><script>parent.cb({\"type\":\"gap\",\"data\":\"{}\"});</script>";
        for cut in 0..page.len() {
            let mut r = IframeReader::new("cb");
            let mut got = r.feed(&page[..cut]).unwrap();
            got.extend(r.feed(&page[cut..]).unwrap());
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!((got[0].id, got[0].data.as_slice()), (Some(1), &b"a);"[..]));
            assert_eq!((got[1].id, got[1].kind.as_str()), (None, "gap"));
        }
    }

    #[test]
    fn a_poll_answer_gives_its_next_cursor() {
        let (events, next) = parse_answer(
            Transport::Poll,
            br#"{"events":[{"id":4,"type":"m","data":"x"}],"next":4}"#,
        )
        .unwrap();
        assert_eq!((events.len(), next), (1, Cursor::bare(4)));
        let (_, next) =
            parse_answer(Transport::Jsonp, br#"/**/f({"events":[],"next":0});"#).unwrap();
        assert_eq!(next, Cursor::bare(0));
        assert!(parse_answer(Transport::Poll, b"<html>")
            .unwrap_err()
            .is_protocol());
    }
}
