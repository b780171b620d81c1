//! Events out of a streamed body: the parsers of `tandem::__private::wire` fed with
//! what a [`BodyReader`] decodes, and waits for events bounded by
//! `IO_TIMEOUT` or a deadline.

use std::collections::VecDeque;

use tandem::__private::wire::{MultipartParser, SseParser, WireEvent};
use tokio::time::Instant;

use crate::conn::{BodyReader, Stop, IO_TIMEOUT};
use crate::http1::Head;

/// The multipart stream delimiter line.
pub fn delimiter() -> String {
    format!("--{}", tandem::__private::BOUNDARY)
}

/// Turns stream bytes into events.
pub trait Feed {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String>;
}

impl Feed for SseParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.feed(bytes)
    }
}

impl Feed for MultipartParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.feed(bytes)
    }
}

/// The forever iframe has no incremental parser in `tandem::__private::wire`: this one
/// hands `parse_iframe` each complete `<script>` element as it arrives.
pub struct IframeParser {
    callback: String,
    buf: Vec<u8>,
}

impl IframeParser {
    pub fn new(callback: &str) -> IframeParser {
        IframeParser {
            callback: callback.into(),
            buf: Vec::new(),
        }
    }
}

impl Feed for IframeParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let close = b");</script>";
        let Some(last) = self.buf.windows(close.len()).rposition(|w| w == close) else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.buf.drain(..last + close.len()).collect();
        tandem::__private::wire::parse_iframe(&complete, &self.callback)
    }
}

/// The parser a stream's content type calls for (for code that opens
/// streams of any transport alike).
pub enum AnyParser {
    Sse(SseParser),
    Multipart(MultipartParser),
    Iframe(IframeParser),
}

impl AnyParser {
    /// By the head's `Content-Type`: SSE, multipart (with the boundary it
    /// names) or the forever iframe calling `callback`.
    pub fn for_head(head: &Head, callback: &str) -> AnyParser {
        let ct = head.header("content-type").unwrap_or("");
        if ct.starts_with("text/event-stream") {
            AnyParser::Sse(SseParser::new())
        } else if ct.starts_with("multipart/") {
            let boundary = ct
                .split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
                .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
            AnyParser::Multipart(MultipartParser::new(boundary.trim_matches('"')))
        } else if ct.starts_with("text/html") {
            AnyParser::Iframe(IframeParser::new(callback))
        } else {
            panic!("not a stream's content type: {ct:?}\n{}", head.raw)
        }
    }
}

impl Feed for AnyParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        match self {
            AnyParser::Sse(p) => p.feed(bytes),
            AnyParser::Multipart(p) => p.feed(bytes),
            AnyParser::Iframe(p) => p.feed_bytes(bytes),
        }
    }
}

/// A streamed subscription: its head, its body and a parser over it.
pub struct Events<P> {
    pub head: Head,
    pub body: BodyReader,
    pub parser: P,
    pub pending: VecDeque<WireEvent>,
}

impl<P: Feed> Events<P> {
    pub fn new(head: Head, body: BodyReader, parser: P) -> Events<P> {
        Events {
            head,
            body,
            parser,
            pending: VecDeque::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let evs = self
            .parser
            .feed_bytes(bytes)
            .unwrap_or_else(|e| panic!("stream does not parse: {e}"));
        self.pending.extend(evs);
    }

    /// Reads more of the body into the parser; false at the end of the body.
    pub async fn pump(&mut self) -> bool {
        match self.body.next().await {
            Some(bytes) => {
                self.feed(&bytes);
                true
            }
            None => false,
        }
    }

    /// Reads more of the body into the parser by `deadline`, or says why not.
    pub async fn pump_by(&mut self, deadline: Instant) -> Result<(), Stop> {
        let bytes = self.body.next_by(deadline).await?;
        self.feed(&bytes);
        Ok(())
    }

    /// Reads (feeding the parser) until the body so far satisfies `pred`.
    pub async fn read_until(&mut self, what: &str, mut pred: impl FnMut(&[u8]) -> bool) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while !pred(self.body.raw()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                String::from_utf8_lossy(self.body.raw())
            );
            if !self.pump().await {
                panic!(
                    "body ended before {what}: {:?}",
                    String::from_utf8_lossy(self.body.raw())
                );
            }
        }
    }

    /// The next event (panics if the stream ends or none comes within
    /// `IO_TIMEOUT`, heartbeats or not).
    pub async fn next_event(&mut self) -> WireEvent {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for an event: {:?}",
                String::from_utf8_lossy(self.body.raw())
            );
            if !self.pump().await {
                panic!(
                    "stream ended while waiting for an event: {:?}",
                    String::from_utf8_lossy(self.body.raw())
                );
            }
        }
    }

    /// The next event, if one arrives by `deadline`.
    pub async fn event_by(&mut self, deadline: Instant) -> Result<WireEvent, Stop> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            self.pump_by(deadline).await?;
        }
    }

    /// Reads (and parses) until `deadline`; Err if the stream ends first.
    pub async fn hold_until(&mut self, deadline: Instant) -> Result<(), Stop> {
        loop {
            match self.pump_by(deadline).await {
                Ok(()) => {}
                Err(Stop::Deadline) => return Ok(()),
                Err(stop) => return Err(stop),
            }
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<WireEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_event().await);
        }
        out
    }

    /// Events parsed but not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads to the end of the body; returns the events that were still to come.
    pub async fn finish(&mut self) -> Vec<WireEvent> {
        while self.pump().await {}
        self.pending.drain(..).collect()
    }
}

/// The ids of events (gaps have none).
pub fn ids(events: &[WireEvent]) -> Vec<Option<u64>> {
    events.iter().map(|e| e.id).collect()
}

/// Ids `a..=b` as delivered ids.
pub fn some_ids(r: std::ops::RangeInclusive<u64>) -> Vec<Option<u64>> {
    r.map(Some).collect()
}

/// The text of an event's data.
pub fn text(e: &WireEvent) -> &str {
    std::str::from_utf8(&e.data).expect("utf-8 data")
}
