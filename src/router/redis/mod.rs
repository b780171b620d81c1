//! The Redis backplane: every tandem node started with `--redis` shares
//! every channel through one Redis or a Redis Cluster, the engine Nchan and
//! Centrifugo scale out on (the client is the `redis` crate, redis-rs).
//! `conn.rs` reaches it (TLS, passwords, [`RedisConn`] for other modules),
//! `shard.rs` is what a cluster adds (sharded pub/sub, one subscription
//! per shard).
//!
//! **What Redis holds**, per channel `C` (keys hash-tagged `{C}`, so a
//! cluster keeps a channel's keys on one shard):
//!
//! * `tandem:{C}:m`, a hash: the incarnation's `epoch` and the last id, `seq`;
//! * `tandem:{C}:l`, a stream of the last `buffer_events` events, entry id
//!   `SEQ-1`, fields `e` (the event, [`encode`]) and `t` (when it was stored,
//!   ms since 1970).
//!
//! Both expire `buffer_age` after the channel's last publish; the next
//! publish then starts a new incarnation (a new epoch, ids from 1), as a
//! channel swept from memory does.
//!
//! **A publish** is one Lua script, on whichever node took it: the next id,
//! the event kept and the log trimmed, and the announcement (`PUBLISH` on
//! `tandem:ev`; on a cluster `SPUBLISH` on the channel of the keys' slot,
//! `shard.rs`), atomically, so announcements go out in id order. The
//! publish answers (`202 {"id":N}`) once the script has returned: the event
//! is in Redis. While Redis cannot be reached, publishes are refused with
//! 503 (never a 202 for an event that was not stored).
//!
//! **Every node keeps its own copy of every channel** (the ring of
//! `channel.rs`, from which its subscribers read exactly as in memory), fed
//! by one subscription to `tandem:ev` per node, not per subscriber (on a
//! cluster, one connection per shard subscribed to its slots' channels). It loads
//! every channel's log when it starts, so a subscriber that resumes on any
//! node finds its cursor there. An announcement that is not the next id of
//! the node's copy (the subscription dropped, a message was lost) makes the
//! node read that channel's log from Redis from where its copy ends; when
//! the subscription comes back after an outage, every channel is read so.
//! Subscribers see a delay, never a hole.
//!
//! **Every node reports itself** every [`REPORT_EVERY`]: field `{ID}` of the
//! hash `tandem:nodes` (its subscribers, channels and when) and,
//! per channel it has subscribers on, a field `{ID}` of `tandem:{C}:subs`
//! (its count and when). `/ch/{c}/info` and `/metrics` add the cluster's
//! figures from them; a node gone stops counting within three reports.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use redis::Value;

use super::hub::{Hub, Inner};
use crate::error::Error;
use crate::event::{Epoch, Event, NewEvent};

mod conn;
mod shard;

pub(crate) use conn::RedisConn;
pub use conn::RedisOptions;
use conn::{Connected, COMMAND_TIMEOUT};
use shard::{ClusterMode, Tags};

/// On a Redis Cluster, the announcement channel of hash slot `slot` (for
/// the tests' check against `CLUSTER KEYSLOT`).
pub(crate) fn announce_channel(slot: usize) -> String {
    Tags::get().channel(slot).to_string()
}

/// The one pub/sub channel every node listens to on one Redis (a cluster
/// has one shard channel per slot, `shard.rs`).
const ANNOUNCE: &str = "tandem:ev";
/// How often a node reports its figures to Redis; a report older than
/// three of these is a node gone.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(2);
/// Reconnection backoff, doubling from the first to the last. The last is
/// short: Redis takes publishes again the moment it is back, and what they
/// store while this node is not yet subscribed must still be in the log
/// (`buffer_events`) when the node catches up.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Takes the next id, keeps the event, trims the log, announces it.
/// KEYS: meta, log. ARGV: a new epoch (used if the channel has none),
/// the log's length, the keys' lifetime in ms, the channel, the event, how
/// to announce (`PUBLISH`, or `SPUBLISH` on a cluster) and on what channel.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-1', 'e', ARGV[5], 't', ms)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call(ARGV[6], ARGV[7], ARGV[4] .. '\n' .. epoch .. '\n' .. seq .. '\n' .. ms .. '\n' .. ARGV[5])
return {epoch, seq}
"#;

fn meta_key(channel: &str) -> String {
    format!("tandem:{{{channel}}}:m")
}

fn log_key(channel: &str) -> String {
    format!("tandem:{{{channel}}}:l")
}

/// Per channel, every node's subscribers: field node, value `COUNT MS`.
fn subs_key(channel: &str) -> String {
    format!("tandem:{{{channel}}}:subs")
}

/// Every node's report: field node, value `SUBSCRIBERS CHANNELS MS`. One
/// key (one slot on a cluster), read with one `HGETALL`.
const NODES: &str = "tandem:nodes";

/// An event as Redis keeps it: `kind \n content type \n from \n data`
/// (none of the first three can hold a newline: `event.rs` checks them).
pub(crate) fn encode(e: &NewEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(e.kind.len() + e.data.len() + 16);
    out.extend_from_slice(e.kind.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(e.content_type.as_deref().unwrap_or("").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(e.from.as_deref().unwrap_or("").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&e.data);
    out
}

/// The event [`encode`] made.
pub(crate) fn decode(b: &[u8]) -> Option<NewEvent> {
    let mut parts = b.splitn(4, |&c| c == b'\n');
    let text = |p: Option<&[u8]>| {
        p.and_then(|p| std::str::from_utf8(p).ok())
            .map(str::to_string)
    };
    let kind = text(parts.next())?;
    let ct = text(parts.next())?;
    let from = text(parts.next())?;
    let data = Bytes::copy_from_slice(parts.next()?);
    Some(NewEvent {
        kind,
        data,
        content_type: (!ct.is_empty()).then_some(ct),
        from: (!from.is_empty()).then_some(from),
    })
}

/// An announcement: `channel \n epoch \n id \n ms \n event`.
fn parse_announcement(b: &[u8]) -> Option<(String, Epoch, u64, NewEvent)> {
    let mut parts = b.splitn(5, |&c| c == b'\n');
    let mut text = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let channel = text()?.to_string();
    let epoch = Epoch::new(text()?).ok()?;
    let id = text()?.parse().ok()?;
    let _ms: u64 = text()?.parse().ok()?;
    let event = decode(parts.next()?)?;
    Some((channel, epoch, id, event))
}

/// One server, or a cluster.
enum Mode {
    /// One server: the client makes the subscription's connections.
    Single(redis::Client),
    /// A Redis Cluster, announcements on sharded pub/sub (`shard.rs`).
    Cluster(ClusterMode),
}

/// The Redis engine of a hub.
pub(crate) struct Redis {
    mode: Mode,
    conn: RedisConn,
    publish: redis::Script,
    /// Whether this node's subscription to the announcements is live (one
    /// server; a cluster keeps one flag per shard).
    up: AtomicBool,
    /// The address, without its password, for messages.
    shown: String,
    /// This node's name in the cluster's figures (random, per run).
    node: String,
    /// The channels this node reported subscribers on last time (to report
    /// their going to none).
    reported: parking_lot::Mutex<Vec<String>>,
    /// Reports made (every 16th also forgets nodes long gone).
    reports: std::sync::atomic::AtomicU64,
}

/// What every node reported, together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cluster {
    /// Nodes that reported within three report intervals.
    pub nodes: usize,
    /// Their subscribers, all transports (of one channel, or of all).
    pub subscribers: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether a report made at `ms` is recent enough to count.
fn fresh(ms: u64) -> bool {
    now_ms().saturating_sub(ms) < 3 * REPORT_EVERY.as_millis() as u64
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.shown).finish()
    }
}

impl Redis {
    /// Connects to the Redis (or Redis Cluster) `opts` names; the error
    /// names the address, never a password, and says plainly when the
    /// password or the server's certificate was the problem. A usage error
    /// (an address that does not parse) is a bad request.
    pub(crate) async fn connect(opts: &RedisOptions) -> Result<Arc<Redis>, Error> {
        let shown = opts.shown();
        let (mode, conn) = match conn::connect(opts).await? {
            Connected::Single(client, manager) => {
                (Mode::Single(client), RedisConn::Single(manager))
            }
            Connected::Cluster(cluster, template) => (
                Mode::Cluster(ClusterMode::new(template)),
                RedisConn::Cluster(cluster),
            ),
        };
        Ok(Arc::new(Redis {
            mode,
            conn,
            publish: redis::Script::new(PUBLISH),
            up: AtomicBool::new(false),
            shown,
            node: Epoch::random().as_str().to_string(),
            reported: parking_lot::Mutex::new(Vec::new()),
            reports: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Whether this node hears the announcements (for `/healthz`): on a
    /// cluster, any shard's (`shard.rs` says why not every).
    pub(crate) fn is_up(&self) -> bool {
        match &self.mode {
            Mode::Single(_) => self.up.load(Ordering::Acquire),
            Mode::Cluster(c) => c.is_up(),
        }
    }

    /// The connection to Redis, for any module (`RedisConn`: on a cluster,
    /// every command goes to the shard of its keys).
    pub(crate) fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    fn cluster_mode(&self) -> Option<&ClusterMode> {
        match &self.mode {
            Mode::Single(_) => None,
            Mode::Cluster(c) => Some(c),
        }
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> Error {
        Error::unavailable(format!(
            "redis {} unreachable ({what}): the event was not stored; try again",
            self.shown
        ))
    }

    /// Stores and announces one event of `channel`; resolves with it, its
    /// id and epoch those Redis gave.
    pub(crate) async fn append(
        self: Arc<Self>,
        hub: Hub,
        channel: String,
        event: NewEvent,
    ) -> Result<Arc<Event>, Error> {
        let cfg = hub.config();
        let ttl_ms = cfg.buffer_age.as_millis().max(1) as u64;
        let body = encode(&event);
        let meta = meta_key(&channel);
        // On a cluster, the slot of the channel's keys (its shard).
        let slot = self
            .cluster_mode()
            .map(|_| shard::key_slot(meta.as_bytes()));
        let (how, announce) = match slot {
            None => ("PUBLISH", ANNOUNCE),
            Some(slot) => ("SPUBLISH", Tags::get().channel(slot)),
        };
        let mut call = self.publish.prepare_invoke();
        call.key(&meta)
            .key(log_key(&channel))
            .arg(Epoch::random().as_str())
            .arg(cfg.buffer_events)
            .arg(ttl_ms)
            .arg(&channel)
            .arg(body)
            .arg(how)
            .arg(announce);
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        // On a cluster, straight to the shard's master on this node's own
        // connection to it (the subscription's): the cluster client's one
        // connection stalls every shard's commands while it recovers one.
        let direct = self
            .cluster_mode()
            .zip(slot)
            .and_then(|(c, slot)| c.connection_for(slot));
        let mut tried = match direct {
            Some(mut shard) => {
                let r = tokio::time::timeout_at(deadline, call.invoke_async(&mut shard)).await;
                match r {
                    // Refused before running (the slot moved, the cluster
                    // is busy): again through the cluster client, which
                    // follows redirects. Any other failure may have run the
                    // script: never again (no event stored twice).
                    Ok(Err(e)) if shard::not_run(&e) => {
                        if let Some(c) = self.cluster_mode() {
                            c.topology_changed();
                        }
                        None
                    }
                    r => Some(r),
                }
            }
            None => None,
        };
        if tried.is_none() {
            let mut conn = self.connection();
            tried = Some(tokio::time::timeout_at(deadline, call.invoke_async(&mut conn)).await);
        }
        let answer: (String, u64) = match tried.expect("tried") {
            Err(_) => return Err(self.unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(self.unavailable(e)),
            Ok(Ok(a)) => a,
        };
        let epoch = Epoch::new(&answer.0).map_err(|_| Error::internal("redis gave a bad epoch"))?;
        hub.metrics().published.inc();
        Ok(Arc::new(Event::new(epoch, answer.1, event)))
    }

    /// The epoch of `channel` and its logged events after id `after`, oldest
    /// first; no epoch when Redis has no such channel.
    async fn log_after<C: redis::aio::ConnectionLike + Send>(
        conn: &mut C,
        channel: &str,
        after: u64,
    ) -> redis::RedisResult<(Option<Epoch>, Vec<(u64, NewEvent)>)> {
        let epoch: Option<String> = redis::cmd("HGET")
            .arg(meta_key(channel))
            .arg("epoch")
            .query_async(conn)
            .await?;
        let Some(epoch) = epoch.and_then(|e| Epoch::new(&e).ok()) else {
            return Ok((None, Vec::new()));
        };
        let entries: Value = redis::cmd("XRANGE")
            .arg(log_key(channel))
            .arg(format!("{}-1", after + 1))
            .arg("+")
            .query_async(conn)
            .await?;
        let mut out = Vec::new();
        if let Value::Array(entries) = entries {
            for entry in entries {
                let Value::Array(pair) = entry else { continue };
                let [Value::BulkString(id), Value::Array(fields)] = &pair[..] else {
                    continue;
                };
                let Some(id) = std::str::from_utf8(id)
                    .ok()
                    .and_then(|s| s.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let event = fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == b"e"))
                    .and_then(|kv| match kv.get(1) {
                        Some(Value::BulkString(b)) => decode(b),
                        _ => None,
                    });
                if let Some(event) = event {
                    out.push((id, event));
                }
            }
        }
        Ok((Some(epoch), out))
    }

    /// This node's name in the cluster's figures.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Reports this node's figures (see the module's map). Every command
    /// touches one key, grouped in one pipeline per key (a cluster runs a
    /// pipeline on one slot only), sent together.
    async fn report(&self, hub: &Hub) -> redis::RedisResult<()> {
        let counts = hub.subscriber_counts();
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let now = now_ms();
        let ttl = 3 * REPORT_EVERY.as_millis() as u64;
        let mut pipes = Vec::new();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(NODES)
            .arg(&self.node)
            .arg(format!("{total} {} {now}", hub.channel_count()))
            .ignore();
        pipe.cmd("PEXPIRE").arg(NODES).arg(ttl).ignore();
        pipes.push(pipe);
        let gone: Vec<String> = {
            let mut reported = self.reported.lock();
            let gone = reported
                .iter()
                .filter(|c| !counts.iter().any(|(n, _)| n == *c))
                .cloned()
                .collect();
            *reported = counts.iter().map(|(c, _)| c.clone()).collect();
            gone
        };
        for channel in gone {
            let mut pipe = redis::pipe();
            pipe.cmd("HDEL")
                .arg(subs_key(&channel))
                .arg(&self.node)
                .ignore();
            pipes.push(pipe);
        }
        for (channel, n) in &counts {
            let key = subs_key(channel);
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&self.node)
                .arg(format!("{n} {now}"))
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
            pipes.push(pipe);
        }
        match self.mode {
            // One server: one round trip for all.
            Mode::Single(_) => {
                let mut all = redis::pipe();
                for p in &pipes {
                    for cmd in p.cmd_iter() {
                        all.add_command(cmd.clone()).ignore();
                    }
                }
                all.query_async::<()>(&mut self.connection()).await?;
            }
            Mode::Cluster(_) => {
                let mut sent = tokio::task::JoinSet::new();
                for pipe in pipes {
                    let mut conn = self.connection();
                    sent.spawn(async move { pipe.query_async::<()>(&mut conn).await });
                }
                while let Some(r) = sent.join_next().await {
                    r.map_err(|e| redis::RedisError::from(std::io::Error::other(e)))??;
                }
            }
        }
        // Now and then, forget nodes long gone (their fields stay otherwise
        // while any node reports).
        if self.reports.fetch_add(1, Ordering::Relaxed) % 16 == 15 {
            let all: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(NODES)
                .query_async(&mut self.connection())
                .await?;
            for (node, v) in all {
                let ms = v.split(' ').nth(2).and_then(|n| n.parse::<u64>().ok());
                if ms.is_none_or(|ms| now.saturating_sub(ms) > 10 * ttl) {
                    redis::cmd("HDEL")
                        .arg(NODES)
                        .arg(node)
                        .query_async::<()>(&mut self.connection())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Every node's subscribers of `channel`, or of all channels.
    pub(crate) async fn cluster(&self, channel: Option<&str>) -> Result<Cluster, Error> {
        let mut conn = self.connection();
        let mut out = Cluster::default();
        let call = async {
            match channel {
                Some(c) => {
                    let all: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(subs_key(c))
                        .query_async(&mut conn)
                        .await?;
                    for (_, v) in all {
                        if let Some((n, ms)) = v.split_once(' ') {
                            if fresh(ms.parse().unwrap_or(0)) {
                                out.nodes += 1;
                                out.subscribers += n.parse::<u64>().unwrap_or(0);
                            }
                        }
                    }
                }
                None => {
                    let all: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(NODES)
                        .query_async(&mut conn)
                        .await?;
                    for (_, v) in all {
                        let mut f = v.split(' ');
                        let subs = f.next().and_then(|n| n.parse::<u64>().ok());
                        let ms = f.nth(1).and_then(|n| n.parse::<u64>().ok());
                        if let (Some(subs), Some(ms)) = (subs, ms) {
                            if fresh(ms) {
                                out.nodes += 1;
                                out.subscribers += subs;
                            }
                        }
                    }
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(_) => Err(self.unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))),
        }
    }

    /// Every channel one Redis server holds (a cluster scans each shard,
    /// `shard.rs`).
    async fn channels(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.connection();
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("tandem:{*}:m")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            out.extend(keys.iter().filter_map(|k| {
                Some(k.strip_prefix("tandem:{")?.strip_suffix("}:m")?.to_string())
            }));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Reads `channel`'s log after this node's copy and applies it.
    async fn catch_up(&self, hub: &Hub, channel: &str) -> redis::RedisResult<()> {
        Redis::catch_up_on(&mut self.connection(), hub, channel).await
    }

    /// [`Redis::catch_up`] over `conn` (on a cluster, the connection to
    /// the channel's shard).
    async fn catch_up_on<C: redis::aio::ConnectionLike + Send>(
        conn: &mut C,
        hub: &Hub,
        channel: &str,
    ) -> redis::RedisResult<()> {
        let local = hub.info(channel);
        let after = if local.epoch.is_some() {
            local.last_id
        } else {
            0
        };
        let (epoch, events) = Redis::log_after(conn, channel, after).await?;
        let Some(epoch) = epoch else {
            return Ok(());
        };
        // Another incarnation than the copy's: its whole log.
        let events = if local.epoch.is_some_and(|e| e != epoch) && after > 0 {
            Redis::log_after(conn, channel, 0).await?.1
        } else {
            events
        };
        for (id, event) in events {
            hub.apply_remote(channel, epoch, id, event, true);
        }
        Ok(())
    }

    async fn catch_up_all(&self, hub: &Hub) -> redis::RedisResult<()> {
        for channel in self.channels().await? {
            self.catch_up(hub, &channel).await?;
        }
        Ok(())
    }
}

/// Subscribes to the announcements, loads every channel, and keeps both
/// going in a task for as long as the hub lives (reconnecting with
/// backoff). Returns once the first load is done, so a node serves no
/// subscriber before it has the channels.
pub(crate) async fn start(hub: &Hub, redis: Arc<Redis>) -> Result<(), Error> {
    let weak = Arc::downgrade(&hub.inner);
    match &redis.mode {
        Mode::Single(client) => {
            let pubsub = subscribe(client).await.map_err(|e| redis.unavailable(e))?;
            redis
                .catch_up_all(hub)
                .await
                .map_err(|e| redis.unavailable(e))?;
            redis.up.store(true, Ordering::Release);
            tokio::spawn(listen(weak.clone(), Arc::clone(&redis), Some(pubsub)));
        }
        Mode::Cluster(_) => shard::start(hub, &redis)
            .await
            .map_err(|e| redis.unavailable(e))?,
    }
    let _ = redis.report(hub).await;
    tokio::spawn(reports(weak));
    Ok(())
}

/// Reports this node's figures every [`REPORT_EVERY`] while the hub lives.
async fn reports(hub: Weak<Inner>) {
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
            return;
        };
        let Some(redis) = h.redis() else { return };
        if let Err(e) = redis.report(&h).await {
            log::debug!("redis: report failed: {e}");
        }
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(ANNOUNCE).await?;
    Ok(pubsub)
}

/// The node's one subscription: applies every announcement, and after an
/// outage reconnects and catches every channel up.
async fn listen(hub: Weak<Inner>, redis: Arc<Redis>, mut first: Option<redis::aio::PubSub>) {
    let mut backoff = BACKOFF.0;
    loop {
        let pubsub = match first.take() {
            Some(p) => Ok(p),
            None => match &redis.mode {
                Mode::Single(client) => subscribe(client).await,
                Mode::Cluster(_) => return,
            },
        };
        if let Ok(pubsub) = pubsub {
            let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
                return;
            };
            // Whatever was published while we were away.
            if redis.catch_up_all(&h).await.is_ok() {
                drop(h);
                redis.up.store(true, Ordering::Release);
                backoff = BACKOFF.0;
                let mut messages = pin!(pubsub.into_on_message());
                while let Some(msg) =
                    std::future::poll_fn(|cx| messages.as_mut().poll_next(cx)).await
                {
                    let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
                        return;
                    };
                    let Some((channel, epoch, id, event)) =
                        parse_announcement(msg.get_payload_bytes())
                    else {
                        log::warn!("redis: an announcement tandem cannot read; ignored");
                        continue;
                    };
                    if !h.apply_remote(&channel, epoch, id, event, false) {
                        // A hole: read the log from where the copy ends.
                        if let Err(e) = redis.catch_up(&h, &channel).await {
                            log::warn!("redis: catching {channel} up failed: {e}");
                            break;
                        }
                    }
                }
            }
        }
        redis.up.store(false, Ordering::Release);
        if hub.strong_count() == 0 {
            return;
        }
        log::warn!(
            "redis {}: the subscription is down; again in {backoff:?}",
            redis.shown
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_announcements_round_trip() {
        let e = NewEvent {
            kind: "chat".into(),
            data: Bytes::from_static(b"two\nlines"),
            content_type: Some("text/plain".into()),
            from: None,
        };
        let d = decode(&encode(&e)).unwrap();
        assert_eq!((d.kind.as_str(), &d.data[..]), ("chat", &b"two\nlines"[..]));
        assert_eq!(d.content_type.as_deref(), Some("text/plain"));
        assert_eq!(d.from, None);
        let mut a = b"news\nabc\n7\n1700000000000\n".to_vec();
        a.extend(encode(&e));
        let (ch, epoch, id, ev) = parse_announcement(&a).unwrap();
        assert_eq!((ch.as_str(), epoch.as_str(), id), ("news", "abc", 7));
        assert_eq!(&ev.data[..], b"two\nlines");
        assert_eq!(meta_key("a.b"), "tandem:{a.b}:m");
    }
}
