//! The hub: the map from channel names to channels, and the public router API.
//!
//! The map is split into shards, each a `parking_lot::Mutex<HashMap>`, so that
//! lookups on different channels rarely meet on one lock. Lock order is always
//! shard, then channel; nothing holds a channel lock while taking a shard lock.
//!
//! Idle channels (no subscribers, every event expired) are swept out of a shard
//! when a new channel is created in it and the shard's last sweep is older than
//! `sweep_interval`: creation is the only way the map grows, so sweeping there
//! bounds memory without a background task, and [`Hub::sweep`] does the whole
//! map on demand. A swept channel is marked `removed` under its own lock, so a
//! publisher or subscriber that looked it up just before simply looks again.
//! A channel made again under the same name is a new incarnation: ids from 1,
//! and a new random epoch, so cursors of the old one get a reset gap.
//!
//! Clients make channels by naming them, so their number is capped
//! (`max_channels`): a count kept beside the map, read (one relaxed load)
//! by every publish and subscribe, and only when it is at the cap is the
//! name looked up (an existing channel is always served) and the shard
//! swept before a new name is refused. Events from other nodes (Redis)
//! make their channels regardless: the cap is on what this node's clients
//! ask for.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::backplane::{Append, Backplane};
use super::channel::Channel;
use super::subscription::{SubscribeOptions, Subscription};
use super::Transport;
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::event::{
    check_channel, check_client, check_content_type, check_type, Cursor, Epoch, Event, NewEvent,
};
use crate::metrics::Metrics;

const SHARDS: usize = 16;

struct Shard {
    channels: HashMap<Box<str>, Arc<Channel>>,
    last_sweep: Instant,
}

pub(crate) struct Inner {
    pub(crate) config: Arc<Config>,
    shards: [Mutex<Shard>; SHARDS],
    /// How many channels the shards hold (for `max_channels`).
    count: AtomicUsize,
    pub(crate) metrics: Metrics,
    /// Orders, keeps and announces the events (`backplane.rs`).
    pub(crate) backplane: Backplane,
}

/// A handle to the router; cheap to clone, shared by every connection.
///
/// ```
/// # tokio_test_block_on(async {
/// use tandem::{Config, Delivery, Hub, NewEvent, SubscribeOptions};
/// let hub = Hub::new(Config::default()).unwrap();
/// let mut sub = hub.subscribe("demo", SubscribeOptions::default()).unwrap();
/// let id = hub.publish("demo", NewEvent::message("hello")).await.unwrap().id();
/// match sub.next().await {
///     Delivery::Event(e) => assert_eq!((e.id(), &e.data()[..]), (id, &b"hello"[..])),
///     Delivery::Gap(g) => panic!("unexpected {g:?}"),
/// }
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.channel_count())
            .finish()
    }
}

/// A snapshot of one channel, as `GET /ch/{c}/info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelInfo {
    /// The channel's current incarnation (`None` if it does not exist).
    pub epoch: Option<Epoch>,
    /// Id of the newest event (0 if none).
    pub last_id: u64,
    /// Events still in the ring.
    pub buffered: usize,
    /// Live subscribers per transport, in [`Transport::ALL`] order.
    pub subscribers: [usize; Transport::COUNT],
}

impl ChannelInfo {
    /// The cursor of the newest event (`EPOCH:LAST_ID`; a bare `0` if the
    /// channel does not exist): subscribing from it delivers only what is
    /// published next, and a reset if the channel starts over meanwhile.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            id: self.last_id,
        }
    }
}

impl Hub {
    /// Makes a router with the given settings (validated here), every
    /// channel in this process's memory.
    pub fn new(config: Config) -> Result<Hub, ConfigError> {
        config.validate()?;
        Ok(Hub::with_backplane(config, Backplane::Memory))
    }

    /// Makes a router whose channels are shared through the Redis at `url`
    /// (`redis://host:port/db`, `rediss://` for TLS) with every other node
    /// made so: ids come from Redis, events are kept there for resume, and
    /// each node keeps a copy of every channel for its own subscribers.
    /// Resolves once every channel is loaded; refused (unavailable) when
    /// Redis cannot be reached. `docs/scaling.md`.
    pub async fn with_redis(config: Config, url: &str) -> Result<Hub, Error> {
        Hub::with_redis_options(config, super::RedisOptions::new(url)).await
    }

    /// [`Hub::with_redis`] with every setting: a Redis Cluster (channels
    /// spread over its shards, announcements on sharded pub/sub), a
    /// password, the CA of a `rediss://` server ([`super::RedisOptions`]).
    /// A refused password or certificate is an error here, at once.
    pub async fn with_redis_options(
        config: Config,
        options: super::RedisOptions,
    ) -> Result<Hub, Error> {
        config
            .validate()
            .map_err(|e| Error::bad_request(e.to_string()))?;
        let engine = super::redis::Redis::connect(&options).await?;
        let hub = Hub::with_backplane(config, Backplane::Redis(Arc::clone(&engine)));
        super::redis::start(&hub, engine).await?;
        Ok(hub)
    }

    fn with_backplane(config: Config, backplane: Backplane) -> Hub {
        let now = Instant::now();
        Hub {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                shards: std::array::from_fn(|_| {
                    Mutex::new(Shard {
                        channels: HashMap::new(),
                        last_sweep: now,
                    })
                }),
                count: AtomicUsize::new(0),
                metrics: Metrics::default(),
                backplane,
            }),
        }
    }

    /// With `--redis`, what every node reported (`docs/scaling.md`): the
    /// nodes and their subscribers, of one channel or of all; `None` in
    /// memory. Refused (unavailable) while Redis is unreachable.
    pub async fn cluster(&self, channel: Option<&str>) -> Option<Result<super::Cluster, Error>> {
        match &self.inner.backplane {
            Backplane::Memory => None,
            Backplane::Redis(r) => Some(r.cluster(channel).await),
        }
    }

    /// With `--redis`, the backplane's Redis (co-browsing keeps its state
    /// there); `None` in memory.
    pub(crate) fn redis(&self) -> Option<Arc<super::redis::Redis>> {
        match &self.inner.backplane {
            Backplane::Memory => None,
            Backplane::Redis(r) => Some(Arc::clone(r)),
        }
    }

    /// With `--redis`, this node's name in the cluster's figures (random,
    /// per run); `None` in memory.
    pub fn node(&self) -> Option<&str> {
        match &self.inner.backplane {
            Backplane::Memory => None,
            Backplane::Redis(r) => Some(r.node()),
        }
    }

    /// The channels with subscribers here, and how many each has.
    pub(crate) fn subscriber_counts(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in &self.inner.shards {
            let shard = shard.lock();
            for (name, ch) in &shard.channels {
                let n = ch.state.lock().subscriber_total();
                if n > 0 {
                    out.push((name.to_string(), n));
                }
            }
        }
        out
    }

    /// Whether the backplane can store events now: always in memory; with
    /// Redis, while this node hears it (`/healthz` answers 503 otherwise).
    pub fn backplane_up(&self) -> bool {
        self.inner.backplane.is_up()
    }

    /// An event a shared engine stored (id `id` of incarnation `epoch`),
    /// into this node's copy of `channel`. True if the copy took it or had
    /// it; false for a hole (not the next id, or another incarnation not
    /// starting at 1): the caller reads the log from where the copy ends.
    /// From the log (`from_log`) a hole is accepted: what is not there any
    /// more is lost, and the copy starts over from this id.
    pub(crate) fn apply_remote(
        &self,
        channel: &str,
        epoch: Epoch,
        id: u64,
        event: NewEvent,
        from_log: bool,
    ) -> bool {
        let cfg = self.config();
        loop {
            let ch = self.channel(channel);
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            let mut woken = Vec::new();
            let mut dropped = Vec::new();
            if st.epoch != epoch {
                if st.provisional {
                    // The channel's first event: the copy takes its real
                    // epoch (no cursor was pinned to the placeholder).
                    st.provisional = false;
                    st.epoch = epoch;
                } else if id == 1 || from_log {
                    (woken, dropped) = st.restart(epoch, id);
                } else {
                    return false;
                }
            }
            if id < st.next_id {
                return true;
            }
            if id > st.next_id {
                if !from_log {
                    return false;
                }
                let (w, d) = st.restart(epoch, id);
                woken.extend(w);
                dropped.extend(d);
            }
            let event = Arc::new(Event::new(epoch, id, event));
            let (wakers, evicted) =
                st.push(event, Instant::now(), cfg.buffer_events, cfg.buffer_age);
            drop(st);
            drop((evicted, dropped));
            for w in wakers.into_iter().chain(woken) {
                w.wake();
            }
            return true;
        }
    }

    /// The settings this hub runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn shard(&self, name: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        &self.inner.shards[h.finish() as usize % SHARDS]
    }

    /// The channel, made on first use.
    pub(crate) fn channel(&self, name: &str) -> Arc<Channel> {
        let mut shard = self.shard(name).lock();
        if let Some(ch) = shard.channels.get(name) {
            return ch.clone();
        }
        let now = Instant::now();
        if now.saturating_duration_since(shard.last_sweep) >= self.inner.config.sweep_interval {
            shard.last_sweep = now;
            self.sweep_shard(&mut shard, now);
        }
        let ch = Arc::new(Channel::new(
            self.inner.backplane.new_epoch(name),
            self.inner.backplane.is_shared(),
        ));
        shard.channels.insert(name.into(), ch.clone());
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        ch
    }

    /// Refuses a channel name that is not there yet when clients have made
    /// `max_channels` already (after sweeping its shard of idle ones).
    fn admit(&self, name: &str) -> Result<(), Error> {
        let max = self.inner.config.max_channels;
        if self.inner.count.load(Ordering::Relaxed) < max {
            return Ok(());
        }
        let mut shard = self.shard(name).lock();
        if shard.channels.contains_key(name) {
            return Ok(());
        }
        // Idle channels may have made room; a flood of new names at the cap
        // sweeps a shard at most every 100 ms, not once per request.
        let now = Instant::now();
        if now.saturating_duration_since(shard.last_sweep) >= Duration::from_millis(100) {
            shard.last_sweep = now;
            self.sweep_shard(&mut shard, now);
            if self.inner.count.load(Ordering::Relaxed) < max {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!(
            "too many channels (max {max}): a new one cannot be made now"
        )))
    }

    fn sweep_shard(&self, shard: &mut Shard, now: Instant) {
        let cfg = &self.inner.config;
        let before = shard.channels.len();
        self.sweep_idle(shard, now, cfg);
        let removed = before - shard.channels.len();
        self.inner.count.fetch_sub(removed, Ordering::Relaxed);
    }

    fn sweep_idle(&self, shard: &mut Shard, now: Instant, cfg: &Config) {
        shard.channels.retain(|_, ch| {
            let mut st = ch.state.lock();
            let evicted = st.expire(now, cfg.buffer_events, cfg.buffer_age);
            let idle = st.subscriber_total() == 0 && st.internal == 0 && st.buffered() == 0;
            st.removed |= idle;
            drop(st);
            drop(evicted);
            !idle
        });
    }

    /// Removes every idle channel (no subscribers and nothing buffered) now.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.inner.shards {
            let mut shard = shard.lock();
            shard.last_sweep = now;
            self.sweep_shard(&mut shard, now);
        }
    }

    /// How many channels exist.
    pub fn channel_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().channels.len())
            .sum()
    }

    /// Publishes one event; resolves with it, id and epoch set, once the
    /// backplane has stored it and every waiting subscriber has been woken.
    /// In memory (the default) that is at once: the future is ready when
    /// first polled.
    pub async fn publish(&self, channel: &str, event: NewEvent) -> Result<Arc<Event>, Error> {
        self.validate(channel, &event)?;
        self.inner.backplane.append(self, channel, event).await
    }

    /// `publish` for an event that `validate` has already accepted (the HTTP
    /// layer checks every event of a request before publishing any).
    pub(crate) fn publish_checked(&self, channel: &str, event: NewEvent) -> Append {
        self.inner.backplane.append(self, channel, event)
    }

    /// Checks what `publish` would refuse, without publishing.
    pub(crate) fn validate(&self, channel: &str, event: &NewEvent) -> Result<(), Error> {
        check_channel(channel)?;
        self.admit(channel)?;
        check_type(&event.kind)?;
        if let Some(ct) = &event.content_type {
            check_content_type(ct)?;
        }
        if let Some(from) = &event.from {
            check_client(from)?;
        }
        let max = self.inner.config.max_event_bytes;
        if event.data.len() > max {
            return Err(Error::too_large(format!(
                "event too large (max {max} bytes)"
            )));
        }
        Ok(())
    }

    /// Subscribes to a channel from a cursor (see [`SubscribeOptions`]).
    pub fn subscribe(&self, channel: &str, opts: SubscribeOptions) -> Result<Subscription, Error> {
        self.subscribe_as(channel, opts, false)
    }

    fn subscribe_as(
        &self,
        channel: &str,
        opts: SubscribeOptions,
        internal: bool,
    ) -> Result<Subscription, Error> {
        check_channel(channel)?;
        if let Some(c) = &opts.client {
            check_client(c)?;
        }
        if !internal {
            self.admit(channel)?;
        }
        loop {
            let ch = self.channel(channel);
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            if internal {
                st.internal += 1;
            } else {
                st.subscribers[opts.transport as usize] += 1;
            }
            let last = st.last_id();
            let first = st.first_id();
            let epoch = st.epoch;
            let provisional = st.provisional;
            drop(st);
            let cursor = match (opts.since, opts.backlog) {
                // A shared engine's copy before its first event: no epoch
                // to pin to yet; from the start of whichever comes.
                (since, _) if provisional => Cursor {
                    epoch: since.and_then(|s| s.epoch),
                    id: since.map_or(0, |s| s.id),
                },
                // A bare id is in the current incarnation; another epoch gets
                // its reset gap on the first read.
                (Some(since), _) => Cursor {
                    epoch: Some(since.epoch.unwrap_or(epoch)),
                    id: since.id,
                },
                // "The last N buffered events": never reach behind the ring,
                // which would report the unbuffered ids as a gap.
                (None, Some(n)) => Cursor::new(epoch, last.saturating_sub(n).max(first - 1)),
                (None, None) => Cursor::new(epoch, last),
            };
            let mut sub = Subscription::new(self.clone(), ch, cursor, opts);
            sub.internal = internal;
            return Ok(sub);
        }
    }

    /// A subscription of tandem's own (co-browsing's notices between nodes,
    /// `cb.sync`), from now on: it keeps the channel but is counted in no
    /// figure (`/info`, `/metrics`, the cluster's reports).
    pub(crate) fn follow(&self, channel: &str) -> Result<Subscription, Error> {
        self.subscribe_as(channel, SubscribeOptions::default(), true)
    }

    /// Closes a channel: its subscribers get every event published before,
    /// then their streams end (long-polls answer at once); the name is free
    /// again, and a later subscribe or publish starts a new incarnation of
    /// the channel, at id 1 with a new epoch (so old cursors get a reset gap).
    /// Returns whether the channel existed.
    pub fn close(&self, channel: &str) -> bool {
        let Some(ch) = self.shard(channel).lock().channels.remove(channel) else {
            return false;
        };
        self.inner.count.fetch_sub(1, Ordering::Relaxed);
        let mut st = ch.state.lock();
        st.closed = true;
        st.removed = true;
        let wakers = st.take_wakers();
        drop(st);
        for w in wakers {
            w.wake();
        }
        true
    }

    /// Epoch, last id, buffered count and subscribers of a channel (none and
    /// zeros if it does not exist).
    pub fn info(&self, channel: &str) -> ChannelInfo {
        let Some(ch) = self.shard(channel).lock().channels.get(channel).cloned() else {
            return ChannelInfo::default();
        };
        let st = ch.state.lock();
        ChannelInfo {
            // A shared engine's copy before its first event has none yet.
            epoch: (!st.provisional).then_some(st.epoch),
            last_id: st.last_id(),
            buffered: st.buffered(),
            subscribers: st.subscribers,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{Delivery, Gap};

    fn ids(sub: &mut Subscription) -> Vec<Result<u64, Gap>> {
        std::iter::from_fn(|| sub.try_next())
            .map(|d| match d {
                Delivery::Event(e) => Ok(e.id()),
                Delivery::Gap(g) => Err(g),
            })
            .collect()
    }

    fn since(hub: &Hub, cursor: Cursor) -> Subscription {
        let opts = SubscribeOptions {
            since: Some(cursor),
            ..SubscribeOptions::default()
        };
        hub.subscribe("c", opts).unwrap()
    }

    /// The router's clock is tokio's: with time paused, events age out as
    /// the test advances it, with no real sleep.
    #[tokio::test(start_paused = true)]
    async fn events_expire_by_age_on_the_paused_clock() {
        let hub = Hub::new(Config {
            buffer_age: Duration::from_secs(10),
            ..Config::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..3 {
            hub.publish("c", NewEvent::message("old")).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        for _ in 0..2 {
            hub.publish("c", NewEvent::message("young")).await.unwrap();
        }
        let epoch = hub.info("c").epoch.unwrap();
        let gap = |from, to| Gap {
            from,
            to,
            epoch,
            reset: false,
        };
        assert_eq!(
            ids(&mut since(&hub, Cursor::bare(0))),
            [Ok(1), Ok(2), Ok(3), Ok(4), Ok(5)]
        );
        // 11 s after the first three: they are gone, the last two are 5 s old.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            ids(&mut since(&hub, Cursor::bare(0))),
            [Err(gap(1, 3)), Ok(4), Ok(5)]
        );
        assert_eq!(hub.info("c").buffered, 2);
        // Past 10 s for all: a read alone expires them (nobody published).
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            ids(&mut since(&hub, Cursor::new(epoch, 2))),
            [Err(gap(3, 5))]
        );
        assert_eq!(hub.info("c").buffered, 0);
        assert!(started.elapsed() < Duration::from_secs(5), "no real sleep");
    }

    /// A cursor of an earlier incarnation (the channel was closed and made
    /// again) gets one reset gap, then the whole new incarnation; a bare
    /// cursor is taken to be in the current one.
    #[tokio::test]
    async fn a_cursor_of_another_incarnation_gets_a_reset() {
        let hub = Hub::new(Config::default()).unwrap();
        for _ in 0..3 {
            hub.publish("c", NewEvent::message("old")).await.unwrap();
        }
        let old = hub.info("c").cursor();
        assert_eq!(old.id, 3);
        assert!(hub.close("c"));
        for _ in 0..5 {
            hub.publish("c", NewEvent::message("new")).await.unwrap();
        }
        let new = hub.info("c").epoch.unwrap();
        assert_ne!(Some(new), old.epoch, "a new incarnation, a new epoch");

        let mut sub = since(&hub, old);
        assert_eq!(sub.cursor(), old, "nothing taken yet");
        let reset = Gap {
            from: 1,
            to: 0,
            epoch: new,
            reset: true,
        };
        assert_eq!(
            sub.try_next()
                .map(|d| matches!(d, Delivery::Gap(g) if g == reset)),
            Some(true)
        );
        assert_eq!(sub.cursor(), Cursor::new(new, 0));
        assert_eq!(ids(&mut sub), [Ok(1), Ok(2), Ok(3), Ok(4), Ok(5)]);
        assert_eq!(sub.cursor(), Cursor::new(new, 5));

        // Bare ids: the current incarnation, as before epochs.
        assert_eq!(ids(&mut since(&hub, Cursor::bare(3))), [Ok(4), Ok(5)]);
        assert_eq!(since(&hub, Cursor::bare(3)).cursor(), Cursor::new(new, 3));
        // Ahead of the channel: a reset too.
        let ahead = ids(&mut since(&hub, Cursor::new(new, 9)));
        assert_eq!(ahead.len(), 6);
        assert_eq!(ahead[0], Err(reset));
        // The cursor of the newest event: only what comes next.
        let mut sub = since(&hub, hub.info("c").cursor());
        assert!(sub.try_next().is_none());
        let e = hub.publish("c", NewEvent::message("next")).await.unwrap();
        assert_eq!((e.epoch(), e.id()), (new, 6));
        assert_eq!(ids(&mut sub), [Ok(6)]);
    }
}
