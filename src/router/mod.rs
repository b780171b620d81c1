//! The event router: channels, their rings of recent events, and subscribers.
//!
//! This is the core of tandem, and it knows nothing about HTTP.
//!
//! * [`Hub`] maps channel names to channels (made on first use, swept when
//!   idle) and is the whole API: `publish`, `subscribe`, `info`.
//! * A channel (`channel.rs`) is one `parking_lot::Mutex` around its epoch,
//!   `next_id`, a bounded ring of `Arc<Event>` (by count and by age) and a
//!   `Slab` of the wakers of subscribers with nothing to read. Publishing
//!   appends one event, takes the wakers out and wakes them after unlocking.
//! * A [`Subscription`] is only a [`crate::Cursor`] (`EPOCH:ID`). It reads
//!   what follows the cursor from the ring, or parks its waker. Falling behind
//!   the ring yields one [`crate::Gap`], never unbounded memory; a cursor of
//!   another incarnation of the channel (another epoch: an earlier run, or
//!   the name before a sweep or close) yields one reset gap, then the whole
//!   new incarnation.
//!
//! * The backplane (`backplane.rs`) gives events their ids and keeps them:
//!   in memory (the default) or, with `--redis`, in Redis shared by every
//!   node (`redis.rs`), each node's channels then being copies fed by one
//!   subscription.
//!
//! Time (buffer age, sweeps) is read from `tokio::time::Instant`, so tests
//! can pause and advance it.
//!
//! Fan-out cost is one `Arc` clone per subscriber per event: the bytes each
//! transport writes are encoded once per event and shared (see `transport`).

mod backplane;
mod channel;
mod hub;
mod redis;
mod subscription;

pub use hub::{ChannelInfo, Hub};
pub(crate) use redis::announce_channel;
pub(crate) use redis::RedisConn;
pub use redis::{Cluster, RedisOptions};

// What other modules count on in the Redis connection (co-browsing's
// state): shared between tasks, and driven through `ConnectionLike` only.
const _: fn() = || {
    fn shared<T: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static>() {}
    shared::<RedisConn>();
};
pub use subscription::{SubscribeOptions, Subscription};

/// The transport a subscriber uses; the label its count is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// `multipart/x-mixed-replace` stream.
    Multipart = 0,
    /// `multipart/mixed` stream.
    Mixed = 1,
    /// Server-Sent Events.
    Sse = 2,
    /// JSON long-poll.
    Poll = 3,
    /// JSONP long-poll.
    Jsonp = 4,
    /// Forever iframe.
    Iframe = 5,
    /// A subscriber inside the process, through the library API.
    #[default]
    Library = 6,
}

impl Transport {
    /// How many transports there are.
    pub const COUNT: usize = 7;
    /// Every transport, in index order.
    pub const ALL: [Transport; Transport::COUNT] = [
        Transport::Multipart,
        Transport::Mixed,
        Transport::Sse,
        Transport::Poll,
        Transport::Jsonp,
        Transport::Iframe,
        Transport::Library,
    ];

    /// The name used in routes, `/info` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Multipart => "multipart",
            Transport::Mixed => "mixed",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::Jsonp => "jsonp",
            Transport::Iframe => "iframe",
            Transport::Library => "library",
        }
    }
}
