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

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::channel::Channel;
use super::subscription::{SubscribeOptions, Subscription};
use super::Transport;
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::event::{check_channel, check_client, check_content_type, check_type, Event, NewEvent};
use crate::metrics::Metrics;

const SHARDS: usize = 16;

struct Shard {
    channels: HashMap<Box<str>, Arc<Channel>>,
    last_sweep: Instant,
}

pub(crate) struct Inner {
    pub(crate) config: Arc<Config>,
    shards: [Mutex<Shard>; SHARDS],
    pub(crate) metrics: Metrics,
}

/// A handle to the router; cheap to clone, shared by every connection.
///
/// ```
/// # tokio_test_block_on(async {
/// use tandem::{Config, Delivery, Hub, NewEvent, SubscribeOptions};
/// let hub = Hub::new(Config::default()).unwrap();
/// let mut sub = hub.subscribe("demo", SubscribeOptions::default()).unwrap();
/// let id = hub.publish("demo", NewEvent::message("hello")).unwrap().id();
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
    /// Id of the newest event (0 if none).
    pub last_id: u64,
    /// Events still in the ring.
    pub buffered: usize,
    /// Live subscribers per transport, in [`Transport::ALL`] order.
    pub subscribers: [usize; Transport::COUNT],
}

impl Hub {
    /// Makes a router with the given settings (validated here).
    pub fn new(config: Config) -> Result<Hub, ConfigError> {
        config.validate()?;
        let now = Instant::now();
        Ok(Hub {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                shards: std::array::from_fn(|_| {
                    Mutex::new(Shard {
                        channels: HashMap::new(),
                        last_sweep: now,
                    })
                }),
                metrics: Metrics::default(),
            }),
        })
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
        let ch = Arc::new(Channel::new());
        shard.channels.insert(name.into(), ch.clone());
        ch
    }

    fn sweep_shard(&self, shard: &mut Shard, now: Instant) {
        let cfg = &self.inner.config;
        shard.channels.retain(|_, ch| {
            let mut st = ch.state.lock();
            let evicted = st.expire(now, cfg.buffer_events, cfg.buffer_age);
            let idle = st.subscriber_total() == 0 && st.buffered() == 0;
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

    /// Publishes one event; returns it with its id once it is in the router and
    /// every waiting subscriber has been woken.
    pub fn publish(&self, channel: &str, event: NewEvent) -> Result<Arc<Event>, Error> {
        self.validate(channel, &event)?;
        Ok(self.publish_checked(channel, event))
    }

    /// `publish` for an event that `validate` has already accepted (the HTTP
    /// layer checks every event of a request before publishing any).
    pub(crate) fn publish_checked(&self, channel: &str, event: NewEvent) -> Arc<Event> {
        let mut event = Event::new(0, event);
        let cfg = &self.inner.config;
        loop {
            let ch = self.channel(channel);
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            event.id = st.next_id;
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
            self.inner.metrics.published.inc();
            return event;
        }
    }

    /// Checks what `publish` would refuse, without publishing.
    pub(crate) fn validate(&self, channel: &str, event: &NewEvent) -> Result<(), Error> {
        check_channel(channel)?;
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
        check_channel(channel)?;
        if let Some(c) = &opts.client {
            check_client(c)?;
        }
        loop {
            let ch = self.channel(channel);
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            st.subscribers[opts.transport as usize] += 1;
            let last = st.last_id();
            let first = st.first_id();
            drop(st);
            let cursor = match (opts.since, opts.backlog) {
                (Some(since), _) => since,
                // "The last N buffered events": never reach behind the ring,
                // which would report the unbuffered ids as a gap.
                (None, Some(n)) => last.saturating_sub(n).max(first - 1),
                (None, None) => last,
            };
            return Ok(Subscription::new(self.clone(), ch, cursor, opts));
        }
    }

    /// Closes a channel: its subscribers get every event published before,
    /// then their streams end (long-polls answer at once); the name is free
    /// again, and a later subscribe or publish starts a new channel at id 1.
    /// Returns whether the channel existed.
    pub fn close(&self, channel: &str) -> bool {
        let Some(ch) = self.shard(channel).lock().channels.remove(channel) else {
            return false;
        };
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

    /// Last id, buffered count and subscribers of a channel (zeros if it does not exist).
    pub fn info(&self, channel: &str) -> ChannelInfo {
        let Some(ch) = self.shard(channel).lock().channels.get(channel).cloned() else {
            return ChannelInfo::default();
        };
        let st = ch.state.lock();
        ChannelInfo {
            last_id: st.last_id(),
            buffered: st.buffered(),
            subscribers: st.subscribers,
        }
    }
}
