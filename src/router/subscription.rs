//! A subscription: a cursor into one channel, and an async stream of deliveries.
//!
//! A subscriber owns no queue in the router. It is a cursor: each read takes
//! the channel lock, clones the `Arc`s of up to `READ_BATCH` events after the
//! cursor into a small local buffer, and lets go. A subscriber that falls
//! behind the ring simply finds its cursor older than the oldest event and gets
//! a `Gap`, so its memory stays bounded whatever the publish rate.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::time::Instant;

use super::channel::{Channel, Parked, Read};
use super::{Hub, Transport};
use crate::event::{Cursor, Delivery};

/// Most deliveries taken from the ring per lock.
const READ_BATCH: usize = 64;

/// Where a subscription starts and what it is labelled with.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// Resume after this cursor (`?since=`, `Last-Event-ID`). Takes precedence
    /// over `backlog`. A cursor of another incarnation of the channel (its
    /// epoch is not the current one) starts with a reset [`crate::Gap`] and
    /// then every buffered event of this incarnation; a bare id is taken to be
    /// in the current one.
    pub since: Option<Cursor>,
    /// Without `since`: replay the last N buffered events first.
    pub backlog: Option<u64>,
    /// The subscriber's client id: events it published itself are skipped.
    pub client: Option<String>,
    /// Which transport this subscriber is counted under.
    pub transport: Transport,
}

/// An open subscription; dropping it unregisters it from the channel.
pub struct Subscription {
    hub: Hub,
    channel: Arc<Channel>,
    cursor: Cursor,
    client: Option<Box<str>>,
    transport: Transport,
    parked: Option<Parked>,
    ready: VecDeque<Delivery>,
    closed: bool,
    /// Counted as tandem's own (`Hub::follow`), not as a subscriber.
    pub(crate) internal: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor)
            .field("transport", &self.transport)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        hub: Hub,
        channel: Arc<Channel>,
        cursor: Cursor,
        opts: SubscribeOptions,
    ) -> Subscription {
        Subscription {
            hub,
            channel,
            cursor,
            client: opts.client.map(String::into_boxed_str),
            transport: opts.transport,
            parked: None,
            ready: VecDeque::new(),
            closed: false,
            internal: false,
        }
    }

    /// The place of the last event this subscription has accounted for, with
    /// the channel's epoch: pass it as `since` to resume without loss or
    /// duplicates. Deliveries already read from the ring but not yet taken
    /// are not counted. (A gap is only ever the first of a read, and taken
    /// at once, so it is never left waiting here.)
    pub fn cursor(&self) -> Cursor {
        match self.ready.front() {
            Some(Delivery::Event(e)) => Cursor::new(e.epoch, e.id - 1),
            Some(Delivery::Gap(g)) => Cursor::new(g.epoch, g.from - 1),
            None => self.cursor,
        }
    }

    fn fill(&mut self, waker: Option<&std::task::Waker>) -> bool {
        if !self.ready.is_empty() {
            return true;
        }
        let cfg = &self.hub.inner.config;
        let mut st = self.channel.state.lock();
        // Expire by age here too, so an idle channel never hands out events
        // older than `buffer_age` (publishing is the other place it happens).
        let now = Instant::now();
        let expired = if st.front_is_stale(now, cfg.buffer_age) {
            st.expire(now, cfg.buffer_events, cfg.buffer_age)
        } else {
            Vec::new()
        };
        let read = st.read(
            &mut self.cursor,
            &mut self.ready,
            READ_BATCH,
            self.client.as_deref(),
            waker,
            &mut self.parked,
        );
        drop(st);
        drop(expired);
        let metrics = &self.hub.inner.metrics;
        for d in &self.ready {
            match d {
                Delivery::Event(_) => metrics.deliveries.inc(),
                Delivery::Gap(_) => metrics.gaps.inc(),
            }
        }
        self.closed |= matches!(read, Read::Closed);
        matches!(read, Read::Ready)
    }

    /// Whether the channel was closed (`Hub::close`) and everything published
    /// before has been taken: nothing will ever come. A closed subscription's
    /// `poll_delivery` stays pending; its `Stream` ends.
    pub fn is_closed(&self) -> bool {
        self.closed && self.ready.is_empty()
    }

    /// The next delivery, if one is ready now.
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.fill(None);
        self.ready.pop_front()
    }

    /// Polls for the next delivery, parking the task's waker when there is none.
    pub fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Delivery> {
        if self.fill(Some(cx.waker())) {
            Poll::Ready(self.ready.pop_front().expect("fill reported ready"))
        } else {
            Poll::Pending
        }
    }

    /// Waits for the next delivery.
    pub async fn next(&mut self) -> Delivery {
        poll_fn(|cx| self.poll_delivery(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Delivery;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        match this.poll_delivery(cx) {
            Poll::Ready(d) => Poll::Ready(Some(d)),
            Poll::Pending if this.is_closed() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.channel.state.lock();
        st.unpark(&mut self.parked);
        if self.internal {
            st.internal -= 1;
        } else {
            st.subscribers[self.transport as usize] -= 1;
        }
    }
}
