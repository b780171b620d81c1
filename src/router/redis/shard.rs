//! Redis Cluster: sharded pub/sub for the announcements.
//!
//! On a cluster a channel's keys live on the shard of its hash tag (`{C}`),
//! and its publish script runs there. A script may only announce on a shard
//! channel of its own slot (`SPUBLISH`: delivered within the shard, never
//! broadcast over the whole cluster's bus as `PUBLISH` is), so there is one
//! announcement channel per hash slot: `tandem:ev:{T}` where `T`, the slot's
//! tag, is the first short string (in a fixed order, so every node computes
//! the same table) whose CRC16 falls on that slot ([`Tags`]). The script of
//! channel `C` announces on the channel of `slot(C)`.
//!
//! Every node opens one connection per shard (to its master) and
//! subscribes (`SSUBSCRIBE`) to the channels of every slot that shard
//! serves: still one subscription set per node, not per subscriber. Each
//! channel's announcements come from one script on one shard, so they keep
//! their order. When a shard's connection drops (the master restarts, fails
//! over, or gives up a slot: the server then unsubscribes us), the node
//! reconnects with backoff, subscribes again and reads the logs of every
//! channel on that shard (`SCAN` on it) to catch up; the other shards go on
//! meanwhile. A supervisor re-reads the slot map (`CLUSTER SLOTS`) after
//! any loss and every few seconds, and starts over on the new shards when
//! it changed.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use super::conn::{NodeTemplate, RedisConn, COMMAND_TIMEOUT};
use super::{parse_announcement, Redis, BACKOFF, REPORT_EVERY};
use crate::router::hub::{Hub, Inner};

/// Hash slots in a Redis Cluster.
pub(super) const SLOTS: usize = 16384;
/// How often the supervisor re-reads the slot map without being asked.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(5);

/// CRC16/XMODEM, Redis Cluster's key hash.
pub(super) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key (its hash tag's, if it has one), as
/// `CLUSTER KEYSLOT` answers.
pub(super) fn key_slot(key: &[u8]) -> usize {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) as usize % SLOTS
}

/// The announcement channel of every slot.
pub(super) struct Tags(Vec<String>);

impl Tags {
    /// The table every node shares: it is made once, the same everywhere.
    pub(super) fn get() -> &'static Tags {
        static TAGS: OnceLock<Tags> = OnceLock::new();
        TAGS.get_or_init(Tags::make)
    }

    /// For each slot the first string of 1, 2, 3 (then 4) of `0-9a-zA-Z`,
    /// shortest first, then in alphabet order, that hashes to it.
    fn make() -> Tags {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut tags: Vec<Option<String>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut buf = Vec::new();
        'lengths: for len in 1..=4u32 {
            let n = ALPHABET.len().pow(len);
            for mut i in 0..n {
                buf.clear();
                for _ in 0..len {
                    buf.push(ALPHABET[i % ALPHABET.len()]);
                    i /= ALPHABET.len();
                }
                let slot = crc16(&buf) as usize % SLOTS;
                if tags[slot].is_none() {
                    tags[slot] = Some(String::from_utf8(buf.clone()).expect("ascii"));
                    left -= 1;
                    if left == 0 {
                        break 'lengths;
                    }
                }
            }
        }
        Tags(
            tags.into_iter()
                .map(|t| format!("tandem:ev:{{{}}}", t.expect("every slot has a tag")))
                .collect(),
        )
    }

    /// The announcement channel of `slot`.
    pub(super) fn channel(&self, slot: usize) -> &str {
        &self.0[slot]
    }
}

/// One master and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shard {
    host: String,
    port: u16,
    slots: Vec<(usize, usize)>,
}

/// One shard as this node has it: its slots, and its connection while it
/// is heard (publishes to its channels go straight through it).
struct Live {
    slots: Vec<(usize, usize)>,
    conn: Option<MultiplexedConnection>,
}

/// The cluster's state in a node: how to reach the shards, and which of
/// them it hears.
pub(super) struct ClusterMode {
    pub(super) template: NodeTemplate,
    /// The generation of the shard set and its shards.
    up: parking_lot::Mutex<(u64, Vec<Live>)>,
    /// Asks the supervisor to look at the slot map now.
    wake: tokio::sync::Notify,
}

impl ClusterMode {
    pub(super) fn new(template: NodeTemplate) -> ClusterMode {
        ClusterMode {
            template,
            up: parking_lot::Mutex::new((0, Vec::new())),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Whether any shard's subscription is live (`/healthz`). Not every:
    /// when a master fails, every node loses that shard at once, and a
    /// load balancer that took them all out would turn one shard's outage
    /// into the whole site's; the other shards' channels still work.
    pub(super) fn is_up(&self) -> bool {
        self.up.lock().1.iter().any(|l| l.conn.is_some())
    }

    /// The connection to the master of `slot`, while this node hears it.
    pub(super) fn connection_for(&self, slot: usize) -> Option<MultiplexedConnection> {
        let up = self.up.lock();
        let live =
            up.1.iter()
                .find(|l| l.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))?;
        live.conn.clone()
    }

    /// Asks the supervisor to read the slot map now (a slot answered
    /// `MOVED`).
    pub(super) fn topology_changed(&self) {
        self.wake.notify_one();
    }

    /// Shard `shard` heard (its connection) or not.
    fn set(&self, generation: u64, shard: usize, conn: Option<MultiplexedConnection>) {
        let mut up = self.up.lock();
        if up.0 == generation {
            up.1[shard].conn = conn;
        }
    }

    /// A new shard set, none of it heard yet; returns its generation.
    fn reset(&self, shards: &[Shard]) -> u64 {
        let mut up = self.up.lock();
        up.0 += 1;
        up.1 = shards
            .iter()
            .map(|s| Live {
                slots: s.slots.clone(),
                conn: None,
            })
            .collect();
        up.0
    }
}

/// The masters and their slots, from `CLUSTER SLOTS`.
async fn topology(conn: &mut RedisConn) -> redis::RedisResult<Vec<Shard>> {
    let v: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let Value::Array(ranges) = v else {
        return Ok(Vec::new());
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut shards: Vec<Shard> = Vec::new();
    for range in ranges {
        let Value::Array(r) = range else { continue };
        let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(master))) =
            (r.first(), r.get(1), r.get(2))
        else {
            continue;
        };
        let (Some(host), Some(Value::Int(port))) = (master.first().and_then(text), master.get(1))
        else {
            continue;
        };
        let (from, to, port) = (*from as usize, *to as usize, *port as u16);
        match shards.iter_mut().find(|s| s.host == host && s.port == port) {
            Some(s) => s.slots.push((from, to)),
            None => shards.push(Shard {
                host,
                port,
                slots: vec![(from, to)],
            }),
        }
    }
    for s in &mut shards {
        s.slots.sort_unstable();
    }
    shards.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    Ok(shards)
}

type Pushes = UnboundedReceiver<PushInfo>;

/// A connection to `shard`'s master subscribed to its slots' channels.
async fn open(redis: &Redis, shard: &Shard) -> redis::RedisResult<(MultiplexedConnection, Pushes)> {
    let cluster = redis.cluster_mode().expect("cluster mode");
    let client = cluster.template.client(&shard.host, shard.port)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_push_sender(tx)
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT * 5);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let tags = Tags::get();
    for &(from, to) in &shard.slots {
        let mut slot = from;
        while slot <= to {
            let end = (slot + 1024).min(to + 1);
            let mut pipe = redis::pipe();
            for s in slot..end {
                pipe.cmd("SSUBSCRIBE").arg(tags.channel(s)).ignore();
            }
            pipe.exec_async(&mut conn).await?;
            slot = end;
        }
    }
    Ok((conn, rx))
}

/// Reads the log of every channel `conn`'s node holds, after this node's
/// copy (see [`Redis::catch_up`]), over `conn` itself (not the cluster
/// client, whose one connection stalls while it recovers another shard).
async fn catch_up_shard(hub: &Hub, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("tandem:{*}:m")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        for key in keys {
            if let Some(channel) = key
                .strip_prefix("tandem:{")
                .and_then(|k| k.strip_suffix("}:m"))
            {
                Redis::catch_up_on(conn, hub, channel).await?;
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Subscribes to every shard and loads every channel (a failure is the
/// start's), then keeps it all going in tasks while the hub lives.
pub(super) async fn start(hub: &Hub, redis: &Arc<Redis>) -> redis::RedisResult<()> {
    let cluster = redis.cluster_mode().expect("cluster mode");
    let shards = topology(&mut redis.connection()).await?;
    if shards.is_empty() {
        return Err((redis::ErrorKind::ClusterDown, "no slot is served").into());
    }
    let mut opened = Vec::new();
    for shard in &shards {
        let (mut conn, rx) = open(redis, shard).await?;
        catch_up_shard(hub, &mut conn).await?;
        opened.push((conn, rx));
    }
    let generation = cluster.reset(&shards);
    let weak = Arc::downgrade(&hub.inner);
    let tasks = shards
        .iter()
        .zip(opened)
        .enumerate()
        .map(|(i, (shard, first))| {
            cluster.set(generation, i, Some(first.0.clone()));
            tokio::spawn(follow(
                weak.clone(),
                Arc::clone(redis),
                generation,
                i,
                shard.clone(),
                Some(first),
            ))
        })
        .collect();
    tokio::spawn(supervise(weak, Arc::clone(redis), shards, tasks));
    Ok(())
}

/// Re-reads the slot map when a shard is lost and every few seconds; when
/// the shards changed, starts over on the new ones (each catches up).
async fn supervise(
    hub: Weak<Inner>,
    redis: Arc<Redis>,
    mut shards: Vec<Shard>,
    mut tasks: Vec<JoinHandle<()>>,
) {
    let cluster = redis.cluster_mode().expect("cluster mode");
    loop {
        tokio::select! {
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep(TOPOLOGY_EVERY) => {}
        }
        if hub.strong_count() == 0 {
            break;
        }
        let mut conn = redis.connection();
        let Ok(Ok(now)) = tokio::time::timeout(COMMAND_TIMEOUT, topology(&mut conn)).await else {
            continue;
        };
        if now.is_empty() || now == shards {
            continue;
        }
        log::info!("redis cluster: the shards changed ({now:?}); subscribing again");
        for t in tasks.drain(..) {
            t.abort();
        }
        let generation = cluster.reset(&now);
        tasks = now
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                tokio::spawn(follow(
                    hub.clone(),
                    Arc::clone(&redis),
                    generation,
                    i,
                    shard.clone(),
                    None,
                ))
            })
            .collect();
        shards = now;
    }
    for t in tasks {
        t.abort();
    }
}

/// One shard's subscription: applies its announcements; when it is lost,
/// reconnects with backoff, subscribes again and catches the shard's
/// channels up.
async fn follow(
    hub: Weak<Inner>,
    redis: Arc<Redis>,
    generation: u64,
    index: usize,
    shard: Shard,
    mut first: Option<(MultiplexedConnection, Pushes)>,
) {
    let cluster = redis.cluster_mode().expect("cluster mode");
    let mut backoff = BACKOFF.0;
    loop {
        let opened = match first.take() {
            Some(o) => Ok(o),
            None => open(&redis, &shard).await,
        };
        match opened {
            Ok((mut conn, mut pushes)) => {
                let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
                    return;
                };
                // Whatever was published while we were away.
                match catch_up_shard(&h, &mut conn).await {
                    Ok(()) => {
                        drop(h);
                        cluster.set(generation, index, Some(conn.clone()));
                        backoff = BACKOFF.0;
                        if !hear(&hub, &mut conn, &mut pushes).await {
                            return;
                        }
                    }
                    Err(e) => log::warn!(
                        "redis {}:{}: catching up failed: {e}",
                        shard.host,
                        shard.port
                    ),
                }
            }
            Err(e) => log::debug!("redis {}:{}: {e}", shard.host, shard.port),
        }
        cluster.set(generation, index, None);
        cluster.wake.notify_one();
        if hub.strong_count() == 0 {
            return;
        }
        log::warn!(
            "redis {}:{}: the shard's subscription is down; again in {backoff:?}",
            shard.host,
            shard.port
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Applies announcements until the connection is lost (true) or the hub
/// is gone (false). A ping every report interval finds a connection that
/// died silently.
async fn hear(hub: &Weak<Inner>, conn: &mut MultiplexedConnection, pushes: &mut Pushes) -> bool {
    let mut ping = tokio::time::interval(REPORT_EVERY);
    ping.tick().await;
    loop {
        let push = tokio::select! {
            p = pushes.recv() => p,
            _ = ping.tick() => {
                let ping = redis::cmd("PING");
                let pong = tokio::time::timeout(COMMAND_TIMEOUT, ping.query_async::<()>(&mut *conn));
                if !matches!(pong.await, Ok(Ok(()))) {
                    return true;
                }
                continue;
            }
        };
        let Some(push) = push else { return true };
        match push.kind {
            PushKind::SMessage => {
                let Some(Value::BulkString(payload)) = push.data.get(1) else {
                    continue;
                };
                let Some(h) = hub.upgrade().map(|inner| Hub { inner }) else {
                    return false;
                };
                let Some((channel, epoch, id, event)) = parse_announcement(payload) else {
                    log::warn!("redis: an announcement tandem cannot read; ignored");
                    continue;
                };
                if !h.apply_remote(&channel, epoch, id, event, false) {
                    // A hole: read the log from where the copy ends.
                    if let Err(e) = Redis::catch_up_on(&mut *conn, &h, &channel).await {
                        log::warn!("redis: catching {channel} up failed: {e}");
                        return true;
                    }
                }
            }
            // The connection closed, or the server unsubscribed us (the
            // slot moved to another shard).
            PushKind::Disconnection | PushKind::SUnsubscribe => return true,
            _ => {}
        }
    }
}

/// Whether a command that failed with `e` surely did not run: refused by
/// the cluster before running (the slot moved or is moving, the shard is
/// down or loading), so it may be sent again elsewhere.
pub(super) fn not_run(e: &redis::RedisError) -> bool {
    use redis::ErrorKind::*;
    matches!(
        e.kind(),
        Moved | Ask | TryAgain | ClusterDown | MasterDown | BusyLoadingError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // CLUSTER KEYSLOT answers (Redis 7.0).
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"bar{hash_tag}"), 2515);
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_eq!(key_slot(b"tandem:{news}:m"), key_slot(b"news"));
    }

    #[test]
    fn every_slot_has_a_short_tag_of_its_own() {
        let tags = Tags::get();
        for slot in 0..SLOTS {
            let ch = tags.channel(slot);
            assert_eq!(key_slot(ch.as_bytes()), slot, "{ch}");
            assert!(ch.len() <= "tandem:ev:{abcd}".len(), "{ch}");
        }
        assert_eq!(Tags::make().0, tags.0, "the same table every time");
    }
}
