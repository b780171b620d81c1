//! The Redis backplane: every tandem node started with `--redis` shares
//! every channel through one Redis, the engine Nchan and Centrifugo scale
//! out on (the client is the `redis` crate, redis-rs).
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
//! `tandem:ev`), atomically, so announcements go out in id order. The
//! publish answers (`202 {"id":N}`) once the script has returned: the event
//! is in Redis. While Redis cannot be reached, publishes are refused with
//! 503 (never a 202 for an event that was not stored).
//!
//! **Every node keeps its own copy of every channel** (the ring of
//! `channel.rs`, from which its subscribers read exactly as in memory), fed
//! by one subscription to `tandem:ev` per node, not per subscriber. It loads
//! every channel's log when it starts, so a subscriber that resumes on any
//! node finds its cursor there. An announcement that is not the next id of
//! the node's copy (the subscription dropped, a message was lost) makes the
//! node read that channel's log from Redis from where its copy ends; when
//! the subscription comes back after an outage, every channel is read so.
//! Subscribers see a delay, never a hole.
//!
//! **Every node reports itself** every [`REPORT_EVERY`]: `tandem:node:{ID}`
//! (its subscribers and channels, expiring after three reports missed) and,
//! per channel it has subscribers on, a field `{ID}` of `tandem:{C}:subs`
//! (its count and when). `/ch/{c}/info` and `/metrics` add the cluster's
//! figures from them; a node gone stops counting within three reports.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use redis::aio::ConnectionManager;
use redis::Value;

use super::hub::{Hub, Inner};
use crate::error::Error;
use crate::event::{Epoch, Event, NewEvent};

/// The one pub/sub channel every node listens to.
const ANNOUNCE: &str = "tandem:ev";
/// Longest a command may take before the publish is refused (503).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node reports its figures to Redis; a report older than
/// three of these is a node gone.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(2);
/// Reconnection backoff, doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Takes the next id, keeps the event, trims the log, announces it.
/// KEYS: meta, log. ARGV: a new epoch (used if the channel has none),
/// the log's length, the keys' lifetime in ms, the channel, the event.
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
redis.call('PUBLISH', 'tandem:ev', ARGV[4] .. '\n' .. epoch .. '\n' .. seq .. '\n' .. ms .. '\n' .. ARGV[5])
return {epoch, seq}
"#;

fn meta_key(channel: &str) -> String {
    format!("tandem:{{{channel}}}:m")
}

fn log_key(channel: &str) -> String {
    format!("tandem:{{{channel}}}:l")
}

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

/// A connection to the backplane's Redis for other modules (co-browsing's
/// state): `Clone`, and used only through `redis::aio::ConnectionLike`.
pub(crate) type RedisConn = ConnectionManager;

/// The Redis engine of a hub.
pub(crate) struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    publish: redis::Script,
    /// Whether this node's subscription to the announcements is live.
    up: AtomicBool,
    /// The address, without its password, for messages.
    shown: String,
    /// This node's name in the cluster's figures (random, per run).
    node: String,
    /// The channels this node reported subscribers on last time (to report
    /// their going to none).
    reported: parking_lot::Mutex<Vec<String>>,
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

/// `redis://user:password@host/db` without the password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Redis {
    /// Connects to the Redis at `url` (`redis://host:port/db`, or
    /// `rediss://` for TLS); the error names the address, never a password.
    pub(crate) async fn connect(url: &str) -> Result<Arc<Redis>, Error> {
        let shown = shown(url);
        let client = redis::Client::open(url).map_err(|e| {
            Error::bad_request(format!(
                "redis {shown}: {e} (expected redis://[:PASSWORD@]HOST:PORT/DB or rediss://...)"
            ))
        })?;
        let conn = tokio::time::timeout(COMMAND_TIMEOUT, ConnectionManager::new(client.clone()))
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "redis {shown}: not reachable within {COMMAND_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| Error::unavailable(format!("redis {shown}: {e}")))?;
        Ok(Arc::new(Redis {
            client,
            conn,
            publish: redis::Script::new(PUBLISH),
            up: AtomicBool::new(false),
            shown,
            node: Epoch::random().as_str().to_string(),
            reported: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// Whether this node hears the announcements (for `/healthz`).
    pub(crate) fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
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
        let mut conn = self.conn.clone();
        let body = encode(&event);
        let mut call = self.publish.prepare_invoke();
        call.key(meta_key(&channel))
            .key(log_key(&channel))
            .arg(Epoch::random().as_str())
            .arg(cfg.buffer_events)
            .arg(ttl_ms)
            .arg(&channel)
            .arg(body);
        let answer: (String, u64) =
            match tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async(&mut conn)).await {
                Err(_) => {
                    return Err(self.unavailable(format!("no answer within {COMMAND_TIMEOUT:?}")))
                }
                Ok(Err(e)) => return Err(self.unavailable(e)),
                Ok(Ok(a)) => a,
            };
        let epoch = Epoch::new(&answer.0).map_err(|_| Error::internal("redis gave a bad epoch"))?;
        hub.metrics().published.inc();
        Ok(Arc::new(Event::new(epoch, answer.1, event)))
    }

    /// The epoch of `channel` and its logged events after id `after`, oldest
    /// first; no epoch when Redis has no such channel.
    async fn log_after(
        &self,
        channel: &str,
        after: u64,
    ) -> redis::RedisResult<(Option<Epoch>, Vec<(u64, NewEvent)>)> {
        let mut conn = self.conn.clone();
        let epoch: Option<String> = redis::cmd("HGET")
            .arg(meta_key(channel))
            .arg("epoch")
            .query_async(&mut conn)
            .await?;
        let Some(epoch) = epoch.and_then(|e| Epoch::new(&e).ok()) else {
            return Ok((None, Vec::new()));
        };
        let entries: Value = redis::cmd("XRANGE")
            .arg(log_key(channel))
            .arg(format!("{}-1", after + 1))
            .arg("+")
            .query_async(&mut conn)
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

    /// Reports this node's figures (see the module's map).
    async fn report(&self, hub: &Hub) -> redis::RedisResult<()> {
        let counts = hub.subscriber_counts();
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let now = now_ms();
        let ttl = 3 * REPORT_EVERY.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("tandem:node:{}", self.node))
            .arg(format!("{total} {} {now}", hub.channel_count()))
            .arg("PX")
            .arg(ttl)
            .ignore();
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
            pipe.cmd("HDEL")
                .arg(format!("tandem:{{{channel}}}:subs"))
                .arg(&self.node)
                .ignore();
        }
        for (channel, n) in &counts {
            let key = format!("tandem:{{{channel}}}:subs");
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&self.node)
                .arg(format!("{n} {now}"))
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Every node's subscribers of `channel`, or of all channels.
    pub(crate) async fn cluster(&self, channel: Option<&str>) -> Result<Cluster, Error> {
        let mut conn = self.conn.clone();
        let mut out = Cluster::default();
        let call = async {
            match channel {
                Some(c) => {
                    let all: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(format!("tandem:{{{c}}}:subs"))
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
                    let mut keys: Vec<String> = Vec::new();
                    let mut cursor = 0u64;
                    loop {
                        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg("tandem:node:*")
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn)
                            .await?;
                        keys.extend(found);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                    if !keys.is_empty() {
                        let values: Vec<Option<String>> =
                            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                        for v in values.into_iter().flatten() {
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
            }
            Ok::<(), redis::RedisError>(())
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(_) => Err(self.unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))),
        }
    }

    /// Every channel Redis holds.
    async fn channels(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
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
        let local = hub.info(channel);
        let after = if local.epoch.is_some() {
            local.last_id
        } else {
            0
        };
        let (epoch, events) = self.log_after(channel, after).await?;
        let Some(epoch) = epoch else {
            return Ok(());
        };
        // Another incarnation than the copy's: its whole log.
        let events = if local.epoch.is_some_and(|e| e != epoch) && after > 0 {
            self.log_after(channel, 0).await?.1
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
    let pubsub = subscribe(&redis).await.map_err(|e| redis.unavailable(e))?;
    redis
        .catch_up_all(hub)
        .await
        .map_err(|e| redis.unavailable(e))?;
    redis.up.store(true, Ordering::Release);
    let weak = Arc::downgrade(&hub.inner);
    let _ = redis.report(hub).await;
    tokio::spawn(reports(weak.clone(), Arc::clone(&redis)));
    tokio::spawn(listen(weak, redis, Some(pubsub)));
    Ok(())
}

/// Reports this node's figures every [`REPORT_EVERY`] while the hub lives.
async fn reports(hub: Weak<Inner>, redis: Arc<Redis>) {
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
            return;
        };
        if let Err(e) = redis.report(&h).await {
            log::debug!("redis: report failed: {e}");
        }
    }
}

async fn subscribe(redis: &Redis) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = redis.client.get_async_pubsub().await?;
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
            None => subscribe(&redis).await,
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
        assert_eq!(shown("redis://u:secret@h:6379/0"), "redis://…@h:6379/0");
        assert_eq!(meta_key("a.b"), "tandem:{a.b}:m");
    }
}
