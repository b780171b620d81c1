//! One channel: its id counter, its ring of recent events, its parked wakers.
//!
//! Everything lives behind one `parking_lot::Mutex`, held for a handful of
//! instructions: publishing pushes one `Arc<Event>` and takes the wakers out,
//! reading clones a few `Arc`s. Wakers are woken only after the lock is
//! released, so a woken task never contends with the publisher that woke it.
//!
//! Why a sync mutex and not an async one: no critical section awaits, and a
//! `parking_lot` lock that is never held across `.await` is both faster and
//! impossible to deadlock through the runtime.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use parking_lot::Mutex;
use slab::Slab;
use tokio::time::Instant;

use super::Transport;
use crate::event::{Cursor, Delivery, Epoch, Event, Gap};

/// A channel; shared as `Arc<Channel>` by the hub's map and its subscriptions.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) state: Mutex<State>,
}

/// Where a parked subscriber's waker sits: its slab key in a given waker generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parked {
    key: usize,
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    /// This incarnation of the channel: every event published here carries it.
    pub(crate) epoch: Epoch,
    /// Id the next published event gets (ids start at 1).
    pub(crate) next_id: u64,
    /// The most recent events, ids consecutive, with the instant each arrived.
    ring: VecDeque<(Instant, Arc<Event>)>,
    /// Wakers of subscribers that found nothing new.
    waiters: Slab<Waker>,
    /// Bumped each time `waiters` is emptied, so stale slab keys are recognised.
    generation: u64,
    /// Live subscriptions per transport.
    pub(crate) subscribers: [usize; Transport::COUNT],
    /// Live subscriptions of tandem itself (`Hub::follow`): they keep the
    /// channel from being swept but are not counted as subscribers.
    pub(crate) internal: usize,
    /// Set when the hub has dropped this channel from its map; users must look it up again.
    pub(crate) removed: bool,
    /// Set by `Hub::close`: readers get what was published, then the end.
    pub(crate) closed: bool,
    /// A shared engine's copy made before its channel has any event: its
    /// epoch is a placeholder until the first event brings the real one
    /// (`Hub::apply_remote`), so no cursor is pinned to it (cursors stay a
    /// bare 0, "from the start of whichever incarnation comes"). Never set
    /// in memory.
    pub(crate) provisional: bool,
    /// A copy of a channel a shared engine keeps (Redis): other nodes may
    /// have delivered events this copy has not received yet, so a cursor of
    /// this incarnation ahead of the copy (or any cursor with an epoch, while
    /// the copy is provisional) is events on their way, not a stale cursor:
    /// the reader waits for them instead of getting a reset. Never set in
    /// memory, where such a cursor can only be from an earlier run.
    shared: bool,
}

/// Events taken out of the ring by a publish, dropped after the lock is released.
pub(crate) struct Evicted(
    #[allow(dead_code)] Option<Arc<Event>>,
    #[allow(dead_code)] Vec<Arc<Event>>,
);

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Deliveries were appended to the output.
    Ready,
    /// Nothing new; the waker is parked.
    Parked,
    /// Nothing new, and the channel is closed: nothing will ever come.
    Closed,
}

impl Channel {
    /// A channel in memory, or (`shared`) a shared engine's copy, which
    /// starts provisional.
    pub(crate) fn new(epoch: Epoch, shared: bool) -> Channel {
        Channel {
            state: Mutex::new(State {
                epoch,
                next_id: 1,
                ring: VecDeque::new(),
                waiters: Slab::new(),
                generation: 0,
                subscribers: [0; Transport::COUNT],
                internal: 0,
                removed: false,
                closed: false,
                provisional: shared,
                shared,
            }),
        }
    }
}

impl State {
    /// Id of the newest event ever published here (0 if none).
    pub(crate) fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Id of the oldest buffered event (`last_id + 1` when the ring is empty).
    pub(crate) fn first_id(&self) -> u64 {
        self.ring.front().map_or(self.next_id, |(_, e)| e.id)
    }

    pub(crate) fn buffered(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn subscriber_total(&self) -> usize {
        self.subscribers.iter().sum()
    }

    /// Appends an event (already carrying id `next_id`) and returns the wakers to
    /// wake once the lock is released, plus evicted events to drop outside it.
    ///
    /// A full ring evicts exactly one event per publish: that one comes back
    /// on its own, so the common case allocates nothing; only expiry by age
    /// (several at once) needs the `Vec`.
    pub(crate) fn push(
        &mut self,
        event: Arc<Event>,
        now: Instant,
        capacity: usize,
        max_age: Duration,
    ) -> (Vec<Waker>, Evicted) {
        debug_assert_eq!((event.id, event.epoch), (self.next_id, self.epoch));
        self.next_id += 1;
        self.ring.push_back((now, event));
        let over = if self.ring.len() > capacity {
            self.ring.pop_front().map(|(_, e)| e)
        } else {
            None
        };
        let aged = if self.front_is_stale(now, max_age) {
            self.expire(now, capacity, max_age)
        } else {
            Vec::new()
        };
        let evicted = Evicted(over, aged);
        (self.take_wakers(), evicted)
    }

    /// Starts this copy over as incarnation `epoch` from id `first` (a shared
    /// engine's channel began again, or its log lost what came before):
    /// the ring is emptied; subscribers find out on their next read (a reset
    /// gap for another epoch, a plain one for lost ids). Returns the wakers
    /// and the events dropped, for after the lock.
    pub(crate) fn restart(&mut self, epoch: Epoch, first: u64) -> (Vec<Waker>, Vec<Arc<Event>>) {
        self.epoch = epoch;
        self.next_id = first;
        self.provisional = false;
        let dropped = self.ring.drain(..).map(|(_, e)| e).collect();
        (self.take_wakers(), dropped)
    }

    /// Takes every parked waker out (to wake after unlocking).
    pub(crate) fn take_wakers(&mut self) -> Vec<Waker> {
        if self.waiters.is_empty() {
            Vec::new()
        } else {
            self.generation += 1;
            self.waiters.drain().collect()
        }
    }

    /// Whether the oldest buffered event is older than `max_age` (a cheap
    /// check readers make before calling `expire`).
    #[inline]
    pub(crate) fn front_is_stale(&self, now: Instant, max_age: Duration) -> bool {
        self.ring
            .front()
            .is_some_and(|(born, _)| now.saturating_duration_since(*born) > max_age)
    }

    /// Drops events beyond the capacity or older than `max_age`.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        capacity: usize,
        max_age: Duration,
    ) -> Vec<Arc<Event>> {
        let mut evicted = Vec::new();
        while let Some((born, _)) = self.ring.front() {
            if self.ring.len() > capacity || now.saturating_duration_since(*born) > max_age {
                evicted.extend(self.ring.pop_front().map(|(_, e)| e));
            } else {
                break;
            }
        }
        evicted
    }

    /// Reads what follows `cursor` into `out` (at most `max` deliveries), skipping
    /// events published by `skip_from`. Parks `waker` when there is nothing.
    ///
    /// The cursor always ends on the last id the subscriber has accounted for,
    /// whether it was delivered, skipped as its own echo, or reported in a gap,
    /// and in this incarnation of the channel.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read(
        &mut self,
        cursor: &mut Cursor,
        out: &mut VecDeque<Delivery>,
        max: usize,
        skip_from: Option<&str>,
        waker: Option<&Waker>,
        parked: &mut Option<Parked>,
    ) -> Read {
        let last = self.last_id();
        let first = self.first_id();
        let before = out.len();
        let elsewhere = cursor.epoch.is_some_and(|e| e != self.epoch);
        // A copy behind the node that served the cursor: wait for the rest
        // (a round-robin long-poll reaching a node whose copy lags by an
        // announcement would otherwise be told to start over, and get its
        // events twice).
        let on_its_way = self.shared
            && cursor.epoch.is_some()
            && (self.provisional || (!elsewhere && cursor.id > last));
        if on_its_way {
            // Nothing to read yet; park below (`start` is past the ring).
        } else if elsewhere || cursor.id > last {
            // The cursor belongs to another incarnation of the channel (an
            // earlier run of the server, or this name before a sweep or a
            // close), or is ahead of this one: its ids mean nothing here.
            // Say so, then start this incarnation from its beginning.
            out.push_back(Delivery::Gap(Gap {
                from: 1,
                to: first - 1,
                epoch: self.epoch,
                reset: true,
            }));
            cursor.id = first - 1;
        }
        if !self.provisional {
            cursor.epoch = Some(self.epoch);
        }
        if cursor.id.saturating_add(1) < first {
            out.push_back(Delivery::Gap(Gap {
                from: cursor.id + 1,
                to: first - 1,
                epoch: self.epoch,
                reset: false,
            }));
            cursor.id = first - 1;
        }
        let start = cursor.id.saturating_add(1).saturating_sub(first) as usize;
        for (_, event) in self.ring.iter().skip(start) {
            if out.len() - before >= max {
                break;
            }
            cursor.id = event.id;
            if skip_from.is_some() && event.from.as_deref() == skip_from {
                continue;
            }
            out.push_back(Delivery::Event(event.clone()));
        }
        if out.len() > before {
            return Read::Ready;
        }
        if self.closed {
            return Read::Closed;
        }
        if let Some(waker) = waker {
            match parked {
                Some(p) if p.generation == self.generation => {
                    let slot = &mut self.waiters[p.key];
                    if !slot.will_wake(waker) {
                        slot.clone_from(waker);
                    }
                }
                _ => {
                    let key = self.waiters.insert(waker.clone());
                    *parked = Some(Parked {
                        key,
                        generation: self.generation,
                    });
                }
            }
        }
        Read::Parked
    }

    /// Removes a parked waker, if it is still in the current generation.
    pub(crate) fn unpark(&mut self, parked: &mut Option<Parked>) {
        if let Some(p) = parked.take() {
            if p.generation == self.generation {
                self.waiters.try_remove(p.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cursor, Delivery, NewEvent};

    fn push(st: &mut State, text: &str) {
        let ev = Arc::new(Event::new(
            st.epoch,
            st.next_id,
            NewEvent::message(text.to_string()),
        ));
        let _ = st.push(ev, Instant::now(), 64, Duration::from_secs(60));
    }

    fn read(st: &mut State, cursor: &mut Cursor) -> (Read, Vec<String>) {
        let mut out = VecDeque::new();
        let r = st.read(cursor, &mut out, 100, None, None, &mut None);
        let shown = out
            .iter()
            .map(|d| match d {
                Delivery::Event(e) => format!("{}", e.id()),
                Delivery::Gap(g) if g.reset => "reset".to_string(),
                Delivery::Gap(g) => format!("gap {}-{}", g.from, g.to),
            })
            .collect();
        (r, shown)
    }

    /// A shared engine's copy that lags behind the node which served a
    /// cursor: the reader waits for the events on their way, then gets the
    /// ones after its cursor, once. In memory the same cursor is from an
    /// earlier run, and gets its reset.
    #[test]
    fn a_cursor_ahead_of_a_shared_copy_waits_for_it() {
        let epoch = Epoch::random();
        for shared in [true, false] {
            let ch = Channel::new(epoch, shared);
            let mut st = ch.state.lock();
            st.provisional = false;
            for t in ["a", "b", "c"] {
                push(&mut st, t);
            }
            let mut cursor = Cursor::new(epoch, 5);
            let (r, got) = read(&mut st, &mut cursor);
            if !shared {
                assert_eq!(got, ["reset", "1", "2", "3"]);
                continue;
            }
            assert_eq!((r, got.len()), (Read::Parked, 0), "{got:?}");
            for t in ["d", "e", "f"] {
                push(&mut st, t);
            }
            let (_, got) = read(&mut st, &mut cursor);
            assert_eq!(got, ["6"]);
            // Another incarnation's cursor still gets its reset.
            let mut old = Cursor::new(Epoch::random(), 2);
            assert_eq!(read(&mut st, &mut old).1[0], "reset");
        }
    }

    /// A provisional copy (no event yet) has no epoch to judge a cursor by:
    /// one with an epoch waits for the first event, which tells.
    #[test]
    fn a_provisional_copy_holds_cursors_until_its_first_event() {
        let ch = Channel::new(Epoch::random(), true);
        let mut st = ch.state.lock();
        let real = Epoch::random();
        let mut cursor = Cursor::new(real, 1);
        assert_eq!(read(&mut st, &mut cursor).0, Read::Parked);
        // The first events arrive: the real epoch, ids 1 and 2.
        st.provisional = false;
        st.epoch = real;
        push(&mut st, "a");
        push(&mut st, "b");
        assert_eq!(read(&mut st, &mut cursor).1, ["2"]);
        let mut other = Cursor::new(Epoch::random(), 1);
        assert_eq!(read(&mut st, &mut other).1, ["reset", "1", "2"]);
    }
}
