//! The body of a streamed subscription (multipart, mixed, SSE, iframe).
//!
//! hyper pulls chunks from `poll_chunk` whenever the socket can take more, so
//! a slow reader is naturally paced: nothing queues in the server beyond the
//! subscription's small read batch, and a reader that falls behind the ring
//! gets a gap. Each chunk is a shared per-event frame (`transport::frame`),
//! never a per-subscriber copy of the payload.
//!
//! The stream also owns its heartbeat timer (reset by every write, so a busy
//! stream sends none) and listens for shutdown, when it writes the format's
//! closing words (SSE: when to retry) and ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::event::Delivery;
use crate::metrics::Metrics;
use crate::router::{Hub, Subscription, Transport};
use crate::transport::{self, iframe, json, multipart, sse, Format};

/// A future that completes when the server starts shutting down.
pub(crate) type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Format-specific bytes of a stream.
pub(crate) enum Style {
    /// `image`: the request came from an `<img>` (its `Accept` starts with
    /// `image/`). Chromium shows an image part only once the header block
    /// of the *next* part is complete, so a stream that waits in the next
    /// header block (for heartbeats) would show each image one event late.
    /// For such requests the last part of each burst is written a second
    /// time, which shows it at once and changes nothing on screen when the
    /// copy itself is shown; gap parts are left out, since an `<img>` cannot
    /// show them (a JSON part would break it). Other readers of
    /// `/multipart` get the stream unchanged.
    Multipart {
        image: bool,
    },
    Sse {
        retry_ms: u64,
        envelope: bool,
    },
    Iframe {
        open: Bytes,
    },
}

/// Decrements a transport's open gauge when the response is dropped.
pub(crate) struct OpenGuard {
    hub: Hub,
    transport: Transport,
}

impl OpenGuard {
    pub(crate) fn new(hub: &Hub, transport: Transport) -> OpenGuard {
        hub.metrics().open[transport as usize].inc();
        OpenGuard {
            hub: hub.clone(),
            transport,
        }
    }
    pub(crate) fn metrics(&self) -> &Metrics {
        self.hub.metrics()
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.hub.metrics().open[self.transport as usize].dec();
    }
}

/// An endless response body fed by a subscription.
pub(crate) struct EventStream {
    sub: Subscription,
    style: Style,
    queue: VecDeque<Bytes>,
    heartbeat: Pin<Box<Sleep>>,
    /// When the last chunk was handed out; the heartbeat is due one interval later.
    last_write: Instant,
    interval: Duration,
    shutdown: Option<ShutdownSignal>,
    done: bool,
    guard: OpenGuard,
    /// In image mode: the last part written, to repeat when the burst ends.
    repeat: Option<Bytes>,
}

/// Most deliveries turned into chunks per poll, so one busy stream cannot
/// starve the others on its worker thread.
const CHUNKS_PER_POLL: usize = 64;

impl EventStream {
    pub(crate) fn new(
        sub: Subscription,
        style: Style,
        prelude: Bytes,
        interval: Duration,
        shutdown: Option<ShutdownSignal>,
        guard: OpenGuard,
    ) -> EventStream {
        EventStream {
            sub,
            style,
            queue: VecDeque::from([prelude]),
            heartbeat: Box::pin(tokio::time::sleep(interval)),
            last_write: Instant::now(),
            interval,
            shutdown,
            done: false,
            guard,
            repeat: None,
        }
    }

    fn push(&mut self, d: Delivery) {
        match (&self.style, d) {
            (Style::Multipart { image }, Delivery::Event(e)) => {
                let frame = transport::frame(&e, Format::Multipart);
                if *image {
                    self.repeat = Some(frame.clone());
                }
                self.queue.push_back(frame)
            }
            (Style::Multipart { image: true }, Delivery::Gap(_)) => {}
            (Style::Multipart { image: false }, Delivery::Gap(g)) => {
                self.queue.push_back(multipart::encode_gap(&g))
            }
            (Style::Sse { envelope: true, .. }, Delivery::Event(e)) => {
                self.queue.push_back(transport::frame(&e, Format::SseJson))
            }
            (Style::Sse { envelope: true, .. }, Delivery::Gap(g)) => self
                .queue
                .push_back(sse::encode_envelope_gap(&json::encode_gap(&g))),
            (Style::Sse { .. }, Delivery::Event(e)) => {
                self.queue.push_back(transport::frame(&e, Format::Sse))
            }
            (Style::Sse { .. }, Delivery::Gap(g)) => self.queue.push_back(sse::encode_gap(&g)),
            (Style::Iframe { open }, d) => {
                let body = match d {
                    Delivery::Event(e) => transport::frame(&e, Format::Json),
                    Delivery::Gap(g) => json::encode_gap(&g),
                };
                let open = open.clone();
                self.queue
                    .extend([open, body, Bytes::from_static(iframe::SCRIPT_CLOSE)]);
            }
        }
    }

    fn heartbeat_bytes(&self) -> &'static [u8] {
        match self.style {
            Style::Multipart { .. } => multipart::HEARTBEAT,
            Style::Sse { envelope: true, .. } => sse::ENVELOPE_HEARTBEAT,
            Style::Sse { .. } => sse::HEARTBEAT,
            Style::Iframe { .. } => iframe::HEARTBEAT,
        }
    }

    fn closing(&self) -> Option<Bytes> {
        match self.style {
            Style::Multipart { .. } => None,
            Style::Sse { retry_ms, .. } => Some(sse::closing(retry_ms)),
            Style::Iframe { .. } => Some(Bytes::from_static(iframe::CLOSING)),
        }
    }

    /// The next chunk to write, `None` at the end of the stream.
    ///
    /// Deliveries are looked at first; the shutdown signal and the heartbeat
    /// timer only when there is nothing to deliver, which is when the stream
    /// is about to wait anyway (polling them on every chunk was a large part
    /// of a delivery's cost). A stream under constant load still reaches that
    /// point after each batch, so shutdown is never starved.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.queue.is_empty() && !self.done {
            let mut n = 0;
            while n < CHUNKS_PER_POLL {
                match self.sub.poll_delivery(cx) {
                    Poll::Ready(d) => self.push(d),
                    Poll::Pending => break,
                }
                n += 1;
            }
            if n < CHUNKS_PER_POLL {
                // The burst is over: in image mode, show its last image now.
                self.queue.extend(self.repeat.take());
            }
            if self.queue.is_empty() && self.sub.is_closed() {
                // The channel was closed (`Hub::close`): end the stream the
                // way shutdown does, so clients see a clean end.
                self.done = true;
                self.queue.extend(self.closing());
            }
            if !self.done && (self.queue.is_empty() || n == CHUNKS_PER_POLL) {
                if let Some(sig) = &mut self.shutdown {
                    if sig.as_mut().poll(cx).is_ready() {
                        self.shutdown = None;
                        self.done = true;
                        self.queue.extend(self.closing());
                    }
                }
            }
            if self.queue.is_empty() && !self.done && self.heartbeat.as_mut().poll(cx).is_ready() {
                // The timer is re-armed lazily: writes only note the time, and
                // a timer that fires early (the stream wrote since it was set)
                // is moved to one interval after the last write. Resetting the
                // timer on every write cost more than the write itself.
                let now = Instant::now();
                let due = self.last_write + self.interval;
                if now >= due {
                    self.queue
                        .push_back(Bytes::from_static(self.heartbeat_bytes()));
                    self.heartbeat.as_mut().reset(now + self.interval);
                } else {
                    self.heartbeat.as_mut().reset(due);
                    let _ = self.heartbeat.as_mut().poll(cx);
                }
            }
        }
        match self.queue.pop_front() {
            Some(chunk) => {
                if self.queue.is_empty() {
                    // Any write proves the line alive: the next heartbeat is due
                    // one full interval after the last byte, not on a fixed beat.
                    self.last_write = Instant::now();
                }
                self.guard.metrics().bytes_written.add(chunk.len() as u64);
                Poll::Ready(Some(chunk))
            }
            None if self.done => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}
