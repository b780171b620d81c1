//! A subscription: a state machine that connects, reads, resumes.
//!
//! All that outlives a connection is plain data here (the cursor, the
//! failure count, deliveries not yet taken); the I/O in flight is one boxed
//! future or one body at a time in `State`. So the cursor can be read at
//! any moment, and dropping the subscription drops its connection.
//!
//! Each answer's wire events go through `accept`, which keeps the promise of
//! the stream: an event at or before the cursor (in the same incarnation of
//! the channel) is a duplicate and skipped; a gap moves the cursor past the
//! ids it reports; an event of another incarnation that came without a
//! reset gap gets one made up for it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use hyper::body::Body as _;
use tokio::time::Sleep;

use super::conn::{self, Req};
use super::cursor::{Cursor, Epoch};
use super::delivery::{Delivery, Gap};
use super::error::Error;
use super::target::Target;
use super::transport::{self, Decoder, Transport};
use super::Client;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The events of one channel, as a `futures_core::Stream` of
/// `Result<Delivery, Error>` that resumes across disconnects. Made by
/// [`Client::subscribe`]; see [the module](super) for the promise it keeps.
///
/// Its first request goes out when it is first polled; events published
/// from the moment it was made are delivered all the same. After an error
/// the stream ends. Dropping it closes its connection.
pub struct Subscription {
    client: Client,
    target: Target,
    transport: Transport,
    cursor: Option<Cursor>,
    /// The URL asks for `backlog=N`: starting without a cursor is meant.
    backlog: bool,
    /// Whether the server has answered once (until then, an address that
    /// refuses connections is an error at once, not something to wait out).
    reached: bool,
    /// Failed attempts in a row.
    failures: u32,
    /// Whether a refused token was replaced since the server last answered
    /// (a second refusal in a row is the error).
    token_retried: bool,
    /// Deliveries read but not yet taken, each with the cursor after it.
    ready: VecDeque<(Delivery, Cursor)>,
    /// The cursor after the last delivery taken (what `cursor()` says
    /// while some read ones wait in `ready`).
    taken: Option<Cursor>,
    state: State,
}

/// A subscription being set up: [`Client::subscribe`] makes it, `.await`
/// makes the [`Subscription`].
///
/// Awaiting fixes where the subscription starts: after the cursor given
/// (`since`, or `?since=` in the URL), after the last N events
/// (`?backlog=N`), or else after the channel's newest event, which it asks
/// the server for, so an event published once the await is over is
/// delivered even if the first connection breaks. That request's failure
/// (a refused connection, a bad channel name) is the await's error.
#[must_use = "a subscription does nothing until awaited, then polled"]
pub struct Subscribe<'a> {
    client: &'a Client,
    url: &'a str,
    since: Option<Cursor>,
    transport: Option<Transport>,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn new(client: &'a Client, url: &'a str) -> Subscribe<'a> {
        Subscribe {
            client,
            url,
            since: None,
            transport: None,
        }
    }

    /// Starts after `cursor` (a stored [`Subscription::cursor`], or
    /// `Cursor::bare(0)` for every buffered event), over the URL's `since`.
    pub fn since(mut self, cursor: Cursor) -> Subscribe<'a> {
        self.since = Some(cursor);
        self
    }

    /// Uses `transport`, over the one the URL names (default SSE).
    pub fn transport(mut self, transport: Transport) -> Subscribe<'a> {
        self.transport = Some(transport);
        self
    }
}

impl<'a> std::future::IntoFuture for Subscribe<'a> {
    type Output = Result<Subscription, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut target = Target::parse(self.url)?;
            if let Some(t) = self.transport {
                target.transport = Some(t);
            }
            if let Some(c) = self.since {
                target.since = Some(c);
            }
            let mut sub = Subscription::new(self.client.clone(), target);
            sub.find_start().await?;
            Ok(sub)
        })
    }
}

enum State {
    /// Between requests: the next one is to be made.
    Idle,
    /// A stream's answer head is awaited.
    Opening(BoxFuture<Result<conn::Opened, Error>>),
    /// A stream is being read.
    Streaming(Box<Streaming>),
    /// A long-poll answer is awaited.
    Polling(Transport, BoxFuture<Result<Bytes, Error>>),
    /// Backing off before the next attempt.
    Waiting(Pin<Box<Sleep>>),
    /// Given up: the error is yielded next, then the end.
    Failed(Error),
    Done,
}

struct Streaming {
    opened: conn::Opened,
    decoder: Decoder,
    /// Reset by every byte; when it fires the stream is taken for dead.
    silence: Pin<Box<Sleep>>,
}

impl Subscription {
    pub(crate) fn new(client: Client, target: Target) -> Subscription {
        Subscription {
            transport: target.transport.unwrap_or_default(),
            cursor: target.since,
            backlog: target.has_param("backlog"),
            reached: false,
            failures: 0,
            token_retried: false,
            ready: VecDeque::new(),
            taken: None,
            state: State::Idle,
            client,
            target,
        }
    }

    /// Fixes where the subscription starts when neither a cursor nor a
    /// backlog says: a long-poll that holds for nothing answers with the
    /// channel's newest cursor (and creates the channel if need be).
    async fn find_start(&mut self) -> Result<(), Error> {
        if self.cursor.is_some() || self.backlog {
            return Ok(());
        }
        let s = &self.client.settings;
        let req = Req::get(
            self.target
                .subscribe_path(Transport::Poll, &[("timeout", "0")]),
        );
        let body = conn::fetch(
            s,
            &self.client.pool,
            &self.target.endpoint,
            req,
            s.request_timeout,
        )
        .await?;
        self.answered(Transport::Poll, &body);
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Where the subscription stands: the last id accounted for (taken
    /// from the stream, or reported lost in a gap taken from it), to resume
    /// from later with [`Subscribe::since`]. `None` only for a subscription
    /// that started with a backlog and has taken nothing yet.
    pub fn cursor(&self) -> Option<Cursor> {
        if self.ready.is_empty() {
            self.cursor
        } else {
            self.taken
        }
    }

    /// The next delivery; `None` once the stream has ended (after an error).
    pub async fn next(&mut self) -> Option<Result<Delivery, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Makes the next request: a stream or a long-poll from the cursor.
    fn start(&mut self) {
        let s = &self.client.settings;
        let since = self.cursor.map(|c| c.to_string());
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(since) = &since {
            params.push(("since", since));
        }
        if !self.transport.is_stream() {
            let secs = s.poll_timeout.as_secs_f64().to_string();
            params.push(("timeout", &secs));
            if self.transport == Transport::Jsonp {
                params.push(("callback", transport::CALLBACK));
            }
            let req = Req::get(self.target.subscribe_path(self.transport, &params));
            let (settings, pool) = (s.clone(), self.client.pool.clone());
            let ep = self.target.endpoint.clone();
            let deadline = s.poll_timeout + s.request_timeout;
            self.state = State::Polling(
                self.transport,
                Box::pin(async move { conn::fetch(&settings, &pool, &ep, req, deadline).await }),
            );
        } else {
            if self.transport == Transport::Iframe {
                params.push(("callback", transport::CALLBACK));
            }
            let req = Req::get(self.target.subscribe_path(self.transport, &params));
            let settings = s.clone();
            let ep = self.target.endpoint.clone();
            self.state = State::Opening(Box::pin(
                async move { conn::open(&settings, &ep, req).await },
            ));
        }
    }

    /// A stream's head arrived.
    fn opened(&mut self, opened: conn::Opened) {
        self.reached();
        let content_type = opened
            .resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match Decoder::new(self.transport, content_type) {
            Ok(decoder) => {
                log::debug!(
                    "{} stream of {} open from {}",
                    self.transport,
                    self.target.channel,
                    self.cursor_text()
                );
                self.state = State::Streaming(Box::new(Streaming {
                    opened,
                    decoder,
                    silence: Box::pin(tokio::time::sleep(self.client.settings.idle_timeout)),
                }))
            }
            Err(e) => self.failed(e),
        }
    }

    /// A long-poll answer arrived: its events, then its `next` cursor.
    fn answered(&mut self, transport: Transport, body: &[u8]) {
        self.reached();
        match transport::parse_answer(transport, body) {
            Ok((events, next)) => {
                for w in events {
                    match Delivery::from_wire(w) {
                        Ok(d) => self.accept(d),
                        Err(e) => return self.failed(e),
                    }
                }
                // `next` also moves past events the server skipped (echoes).
                self.cursor = Some(next);
                self.state = State::Idle;
            }
            Err(e) => self.failed(e),
        }
    }

    fn reached(&mut self) {
        self.reached = true;
        self.failures = 0;
        self.token_retried = false;
    }

    /// Takes one delivery in: skips duplicates, moves the cursor.
    fn accept(&mut self, d: Delivery) {
        if self.ready.is_empty() {
            self.taken = self.cursor;
        }
        match d {
            Delivery::Event(e) => {
                if let Some(c) = &self.cursor {
                    if same_incarnation(c.epoch, e.epoch) {
                        if e.id <= c.id {
                            log::debug!("skipping {} (at {c} already)", e.cursor());
                            return;
                        }
                    } else {
                        // Another incarnation with no word from the server:
                        // say the channel started over, as it should have.
                        let g = Gap {
                            from: 1,
                            to: e.id - 1,
                            reset: true,
                            epoch: e.epoch,
                        };
                        let after = g.cursor();
                        self.ready.push_back((Delivery::Gap(g), after));
                    }
                }
                let after = e.cursor();
                self.cursor = Some(after);
                self.ready.push_back((Delivery::Event(e), after));
            }
            Delivery::Gap(g) => {
                let epoch = match (g.epoch, g.reset) {
                    (Some(e), _) => Some(e),
                    (None, true) => None,
                    (None, false) => self.cursor.and_then(|c| c.epoch),
                };
                let after = Cursor { epoch, id: g.to };
                self.cursor = Some(after);
                self.ready.push_back((Delivery::Gap(g), after));
            }
        }
    }

    /// An attempt failed: back off and try again, or give up.
    fn failed(&mut self, e: Error) {
        // A refused token from a source: ask for a fresh one, once.
        if !self.token_retried && token_refused(&e) {
            if let Some(tokens) = self
                .client
                .settings
                .token
                .as_ref()
                .filter(|t| t.renewable())
            {
                tokens.forget();
                self.token_retried = true;
                log::info!("{e}; asking for a fresh token");
                self.wait(Duration::ZERO);
                return;
            }
        }
        let never_reached = e.is_connect() && !self.reached;
        self.failures += 1;
        let spent = self
            .client
            .settings
            .retries
            .is_some_and(|max| self.failures > max);
        if !e.is_transient() || never_reached || spent {
            self.state = State::Failed(e);
            return;
        }
        let delay = self.backoff();
        log::info!(
            "{e}; resuming {} from {} in {delay:.1?}",
            self.target.channel,
            self.cursor_text()
        );
        self.wait(delay);
    }

    /// The stream ended as streams do (server shutdown, channel closed):
    /// open it again after a short wait.
    fn ended(&mut self) {
        self.failures += 1;
        let delay = self.backoff();
        log::debug!(
            "the {} stream of {} ended; resuming from {} in {delay:.1?}",
            self.transport,
            self.target.channel,
            self.cursor_text()
        );
        self.wait(delay);
    }

    fn wait(&mut self, delay: Duration) {
        self.state = State::Waiting(Box::pin(tokio::time::sleep(delay)));
    }

    /// The wait before the next attempt: doubling per failure, capped,
    /// 50 to 100% of it at random so clients cut off together do not all
    /// come back at once.
    fn backoff(&self) -> Duration {
        let s = &self.client.settings;
        let doublings = self.failures.saturating_sub(1).min(20);
        let full = s
            .retry_delay
            .saturating_mul(1 << doublings)
            .min(s.max_retry_delay);
        full.mul_f64(0.5 + 0.5 * random_unit())
    }

    fn cursor_text(&self) -> String {
        self.cursor
            .as_ref()
            .map_or_else(|| "the newest event".into(), |c| format!("cursor {c}"))
    }

    /// Reads what the stream has; `Pending` when it has nothing yet.
    fn read(&mut self, cx: &mut Context<'_>, mut st: Box<Streaming>) -> Poll<()> {
        loop {
            match Pin::new(st.opened.resp.body_mut()).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let idle = self.client.settings.idle_timeout;
                    st.silence
                        .as_mut()
                        .reset(tokio::time::Instant::now() + idle);
                    match st.decoder.feed(&data) {
                        Ok(events) => {
                            for w in events {
                                match Delivery::from_wire(w) {
                                    Ok(d) => self.accept(d),
                                    Err(e) => {
                                        self.failed(e);
                                        return Poll::Ready(());
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            self.failed(e);
                            return Poll::Ready(());
                        }
                    }
                    if !self.ready.is_empty() {
                        self.state = State::Streaming(st);
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.failed(Error::io(&self.target.endpoint.addr, e));
                    return Poll::Ready(());
                }
                Poll::Ready(None) => {
                    self.ended();
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if st.silence.as_mut().poll(cx).is_ready() {
                        let idle = self.client.settings.idle_timeout;
                        self.failed(Error::timeout(
                            format!("waiting for bytes on the {} stream", self.transport),
                            idle,
                        ));
                        return Poll::Ready(());
                    }
                    self.state = State::Streaming(st);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Whether two epochs are of one incarnation, as far as anyone can tell:
/// an unknown epoch matches any.
fn same_incarnation(a: Option<Epoch>, b: Option<Epoch>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// A number in [0, 1) from the OS (jitter needs no more than that).
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

impl Stream for Subscription {
    type Item = Result<Delivery, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((d, after)) = this.ready.pop_front() {
                this.taken = Some(after);
                return Poll::Ready(Some(Ok(d)));
            }
            match std::mem::replace(&mut this.state, State::Idle) {
                State::Done => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                State::Failed(e) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                State::Idle => this.start(),
                State::Waiting(mut sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        this.state = State::Waiting(sleep);
                        return Poll::Pending;
                    }
                }
                State::Opening(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Opening(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(opened)) => this.opened(opened),
                    Poll::Ready(Err(e)) => this.failed(e),
                },
                State::Polling(transport, mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Polling(transport, fut);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(body)) => this.answered(transport, &body),
                    Poll::Ready(Err(e)) => this.failed(e),
                },
                State::Streaming(st) => ready!(this.read(cx, st)),
            }
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.target.channel)
            .field("transport", &self.transport)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// Whether the server refused the request's token (401 or 403).
pub(crate) fn token_refused(e: &Error) -> bool {
    e.status()
        .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Event;

    fn sub(url: &str) -> Subscription {
        Subscription::new(Client::new(), Target::parse(url).unwrap())
    }

    fn epoch(e: &str) -> Option<Epoch> {
        Some(Epoch::new(e).unwrap())
    }

    fn event(epoch: Option<Epoch>, id: u64) -> Delivery {
        Delivery::Event(Event {
            id,
            epoch,
            kind: "message".into(),
            data: Bytes::from_static(b"x"),
            content_type: None,
            from: None,
        })
    }

    fn taken(s: &mut Subscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((d, after)) = s.ready.pop_front() {
            s.taken = Some(after);
            let what = match d {
                Delivery::Event(e) => format!("event {}", e.cursor()),
                Delivery::Gap(g) => format!("gap {}..={} reset={}", g.from, g.to, g.reset),
            };
            out.push(format!("{what} -> {after}"));
        }
        out
    }

    #[test]
    fn skips_what_it_has_seen_and_follows_gaps() {
        let mut s = sub("http://h/ch/a/sse?since=e1:2");
        for id in [1, 2, 3, 3, 4] {
            s.accept(event(epoch("e1"), id));
        }
        s.accept(Delivery::Gap(Gap {
            from: 5,
            to: 7,
            reset: false,
            epoch: None,
        }));
        s.accept(event(epoch("e1"), 8));
        assert_eq!(
            taken(&mut s),
            [
                "event e1:3 -> e1:3",
                "event e1:4 -> e1:4",
                "gap 5..=7 reset=false -> e1:7",
                "event e1:8 -> e1:8",
            ]
        );
    }

    #[test]
    fn a_reset_forgets_the_ids_seen() {
        let mut s = sub("http://h/ch/a/sse?since=e1:9");
        s.accept(Delivery::Gap(Gap {
            from: 1,
            to: 0,
            reset: true,
            epoch: epoch("e2"),
        }));
        s.accept(event(epoch("e2"), 1));
        // A new incarnation the server did not announce gets a reset too.
        s.accept(event(epoch("e3"), 2));
        // Today's servers send no epoch: a reset still starts ids over.
        s.accept(Delivery::Gap(Gap {
            from: 1,
            to: 0,
            reset: true,
            epoch: None,
        }));
        s.accept(event(None, 1));
        assert_eq!(
            taken(&mut s),
            [
                "gap 1..=0 reset=true -> e2:0",
                "event e2:1 -> e2:1",
                "gap 1..=1 reset=true -> e3:1",
                "event e3:2 -> e3:2",
                "gap 1..=0 reset=true -> 0",
                "event 1 -> 1",
            ]
        );
    }

    #[test]
    fn the_cursor_is_that_of_the_last_delivery_taken() {
        let mut s = sub("http://h/ch/a/sse?since=4");
        assert_eq!(s.cursor(), Some(Cursor::bare(4)));
        s.accept(event(None, 5));
        s.accept(event(None, 6));
        assert_eq!(s.cursor(), Some(Cursor::bare(4)), "nothing taken yet");
        let (_, after) = s.ready.pop_front().unwrap();
        s.taken = Some(after);
        assert_eq!(s.cursor(), Some(Cursor::bare(5)));
        s.ready.clear();
        assert_eq!(s.cursor(), Some(Cursor::bare(6)));
    }

    #[test]
    fn a_subscription_can_move_between_tasks() {
        fn send_unpin<T: Send + Unpin>() {}
        send_unpin::<Subscription>();
        fn send<T: Send>(_: &T) {}
        send(&std::future::IntoFuture::into_future(
            Client::new().subscribe("x"),
        ));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let client =
            Client::new().with_retry_delay(Duration::from_millis(100), Duration::from_millis(800));
        let mut s = Subscription::new(client, Target::parse("http://h/ch/a").unwrap());
        for (failures, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (9, 800), (99, 800)] {
            s.failures = failures;
            let d = s.backoff();
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
    }
}
