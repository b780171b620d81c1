//! The backplane: where a channel's events get their ids, are kept for
//! resume, and are announced to subscribers. The seam between the router's
//! local fan-out and the store that orders events.
//!
//! The router has two halves. The local half is what every subscriber of
//! this process reads: per channel a ring of recent events and the parked
//! wakers (`channel.rs`), shared by every transport. The backplane is the
//! other half: it decides each event's id and its channel's incarnation
//! (the epoch), keeps events for resume, and announces them to the local
//! half of every process that serves the channel.
//!
//! [`Backplane::Memory`], the embedded default, is one process with
//! everything in memory: the local ring *is* the store, the channel's
//! `next_id` the sequence, and announcing is waking the local wakers, all in
//! one short critical section. That is why a publish costs no more than a
//! lock and an `Arc` here, and nothing in this module may add to it.
//!
//! A shared engine (Redis, where Nchan and Centrifugo keep theirs) is
//! another variant of this enum. It takes the next id from the store and
//! keeps the event there (so [`Append`] is pending until the store has it:
//! `202 {"id":N}` means stored), and announces it through one subscription
//! per process that feeds [`crate::Hub`]'s local channels with events that
//! already carry their ids and epoch. Transports, the HTTP layer and every
//! other caller only see `Hub::publish(..).await` and a `Subscription`, so
//! they do not change when an engine is added.
//!
//! An enum rather than a trait object: the embedded engine must stay free
//! (no boxed future per publish on the hot path), and the engines are this
//! crate's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::hub::Hub;
use crate::error::Error;
use crate::event::{Epoch, Event, NewEvent};

/// Which engine orders and keeps a hub's events.
#[derive(Debug, Default)]
pub(crate) enum Backplane {
    /// One process, everything in memory (the embedded default).
    #[default]
    Memory,
    /// Every node shares the channels through Redis (`redis.rs`).
    Redis(Arc<super::redis::Redis>),
}

impl Backplane {
    /// The epoch of a channel incarnation being made in this process.
    /// In memory a fresh random one, so no cursor of an earlier run or an
    /// earlier incarnation matches it by accident.
    pub(crate) fn new_epoch(&self, _channel: &str) -> Epoch {
        match self {
            // In Redis a placeholder until the channel's first event, whose
            // epoch the copy takes (see `Hub::apply_remote`).
            Backplane::Memory | Backplane::Redis(_) => Epoch::random(),
        }
    }

    /// Gives `event` (already validated) the channel's next id, keeps it for
    /// resume and announces it; resolves with the event once it is stored.
    pub(crate) fn append(&self, hub: &Hub, channel: &str, event: NewEvent) -> Append {
        match self {
            Backplane::Memory => Append::Ready(Some(Ok(append_local(hub, channel, event)))),
            Backplane::Redis(r) => Append::Pending(Box::pin(Arc::clone(r).append(
                hub.clone(),
                channel.to_string(),
                event,
            ))),
        }
    }

    /// Whether the epochs come from a store shared with other nodes (a new
    /// channel's epoch here is then only a placeholder).
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, Backplane::Memory)
    }

    /// Whether the engine can store events now (`/healthz`): always in
    /// memory; in Redis, while this node hears the announcements.
    pub(crate) fn is_up(&self) -> bool {
        match self {
            Backplane::Memory => true,
            Backplane::Redis(r) => r.is_up(),
        }
    }
}

/// An append in progress: ready at once in memory; a shared engine adds a
/// variant that waits for its store.
#[must_use = "an append is a future: await it"]
pub(crate) enum Append {
    Ready(Option<Result<Arc<Event>, Error>>),
    /// A shared engine's store, answering later.
    Pending(Pin<Box<dyn Future<Output = Result<Arc<Event>, Error>> + Send>>),
}

impl Future for Append {
    type Output = Result<Arc<Event>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Append::Ready(r) => Poll::Ready(r.take().expect("Append polled after completion")),
            Append::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// The memory engine's append: id, store and announce in one critical
/// section of the channel's lock; the wakers are woken after it.
fn append_local(hub: &Hub, channel: &str, event: NewEvent) -> Arc<Event> {
    let mut event = Event::new(Epoch::PLACEHOLDER, 0, event);
    let cfg = hub.config();
    loop {
        let ch = hub.channel(channel);
        let mut st = ch.state.lock();
        if st.removed {
            continue;
        }
        event.id = st.next_id;
        event.epoch = st.epoch;
        let event = Arc::new(event);
        let (wakers, evicted) = st.push(
            event.clone(),
            Instant::now(),
            cfg.buffer_events,
            cfg.buffer_age,
        );
        drop(st);
        drop(evicted);
        for w in wakers {
            w.wake();
        }
        hub.metrics().published.inc();
        return event;
    }
}
