//! Co-browsing's state in Redis (`--redis`): the store of record when
//! several nodes share one site, each node's memory a cache of it.
//!
//! Keys (a session's own keys share the hash tag `{ID}`, so the one script
//! that touches two of them stays on one shard of a cluster):
//!
//! | key | type | what | lives |
//! |---|---|---|---|
//! | `tandem:cb:{ID}:s` | hash | the session: `c` (the digest of the customer's token), `label`, `url`, `title`, `message`, `created` (ms), `control`, `jar`, `shared`, `seen` (ms), `online`, `n` (last chat line), `code` | until `created` + `--help-session-ttl` |
//! | `tandem:cb:{ID}:a` | set | the agents who joined | the same |
//! | `tandem:cb:{ID}:c` | list | the last chat lines (JSON, with their `n`) | the same |
//! | `tandem:cb:{ID}:j` | hash | the customer's cookies on the proxied application (`jar.rs`), cookie by cookie | the same |
//! | `tandem:cb:sessions` | sorted set | open session ids by creation (ms): the console list | entries removed when a session ends |
//! | `tandem:cb:code:CODE` | string | the session a phone code points at | `CODE_TTL`; `GETDEL` redeems it once |
//! | `tandem:cb:agent:DIGEST` | string | the agent a sign-in token (by digest) belongs to | `--agent-session-ttl` |
//! | `tandem:cb:codefail:AGENT` | counter | wrong phone codes typed | `CODE_WINDOW` from the first |
//! | `tandem:cb:signfail:NAME`, `tandem:cb:signfail` | counters | failed sign-ins, per name and in all | a minute from the first |
//! | `tandem:cb:portal:DIGEST` | string | the demo portal's session (user, cart) | a day after its last change |
//! | `tandem:cb:class:{ID}:h` | hash | a class: `p` (the digest of the presenter's token), `name`, `url`, `title`, `created`, `ends`, `code`, `link`, `control` (a follower id, or empty: the presenter), `counter` | until its end |
//! | `tandem:cb:class:{ID}:f` | hash | its followers: `fN` → `{"id","name","t"}` (`t`: the digest of their token) | the same |
//! | `tandem:cb:classes` | sorted set | open class ids by creation | removed when a class ends |
//! | `tandem:cb:classcode:CODE`, `tandem:cb:classlink:KEY` | strings | the class a code or a link key opens | the class's end |
//! | `tandem:cb:classfail` | counter | wrong class codes, the whole cluster | a minute from the first |
//! | `tandem:cb:agentkeys` | sorted set | the digests of the live nodes' per-run agent keys, by when last renewed | entries older than 3 minutes are dropped |
//! | `tandem:cb:ver` | counter | changes to the console list (see `Cobrowse::publish_list`) | none |
//! | `tandem:cb:visitors` | counter | the `visitor N` labels | none |
//!
//! Tokens are never stored: only their SHA-256 digests (hex). Every write
//! is one field or one member (HSET, SADD, RPUSH, INCR), so two nodes that
//! change one session at once lose nothing. Plain data and I/O, no
//! channels: `state.rs` decides what to write and when.

use std::collections::HashMap;
use std::time::Duration;

use redis::{FromRedisValue, Value};

use super::helpers::MAX_CHAT_LINES;
use crate::error::Error;
use crate::router::RedisConn;

/// Longest a co-browsing command may take before the request gets 503.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The sorted set of open sessions (the console list).
const LIST: &str = "tandem:cb:sessions";
/// Bumped after every change to the console list.
const VERSION: &str = "tandem:cb:ver";

fn session_key(id: &str) -> String {
    format!("tandem:cb:{{{id}}}:s")
}

fn agents_key(id: &str) -> String {
    format!("tandem:cb:{{{id}}}:a")
}

fn chat_key(id: &str) -> String {
    format!("tandem:cb:{{{id}}}:c")
}

fn jar_key(id: &str) -> String {
    format!("tandem:cb:{{{id}}}:j")
}

fn code_key(code: &str) -> String {
    format!("tandem:cb:code:{code}")
}

fn signin_key(digest_hex: &str) -> String {
    format!("tandem:cb:agent:{digest_hex}")
}

/// Keeps a chat line: the next number, the line with it, the list trimmed.
/// KEYS: the session hash, its chat list (one hash tag). ARGV: the line's
/// JSON after `{"n":N,`, the lines kept, the sessions's end (ms since 1970).
const CHAT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('RPUSH', KEYS[2], '{"n":' .. n .. ',' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return n
"#;

/// The customer was heard from: `seen` now; 1 if that brings them back online.
/// KEYS: the session hash. ARGV: now (ms).
const HEARD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
local was = redis.call('HGET', KEYS[1], 'online')
redis.call('HSET', KEYS[1], 'online', '1')
if was == '0' then return 1 end
return 0
"#;

/// Marks the customer gone if not heard from since ARGV[1] (ms); 1 if that
/// changed it (so only one node republishes the list). KEYS: the session hash.
const GONE: &str = r#"
local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '0')
if redis.call('HGET', KEYS[1], 'online') == '1' and seen < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'online', '0')
  return 1
end
return 0
"#;

/// A follower joins a class if it is not full: the next follower id, the
/// follower kept. KEYS: the class hash, its followers hash (one hash tag).
/// ARGV: the most followers, the name (a JSON string, or empty for
/// `learner N`), the digest of the follower's token (hex).
/// Returns the follower number, 0 if the class is gone, -1 if full.
const CLASS_JOIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[1]) then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'counter', 1)
local name = ARGV[2]
if name == '' then name = '"learner ' .. n .. '"' end
redis.call('HSET', KEYS[2], 'f' .. n, '{"id":"f' .. n .. '","name":' .. name .. ',"t":"' .. ARGV[3] .. '"}')
redis.call('PEXPIREAT', KEYS[2], redis.call('HGET', KEYS[1], 'ends'))
return n
"#;

/// A follower leaves: returns how many are left and 1 if they held control
/// (it goes back to the presenter), or {-1, 0} if they were not there.
/// KEYS: the class hash, its followers hash. ARGV: the follower id.
const CLASS_LEAVE: &str = r#"
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return {-1, 0} end
local back = 0
if redis.call('HGET', KEYS[1], 'control') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'control', '')
  back = 1
end
return {redis.call('HLEN', KEYS[2]), back}
"#;

fn class_key(id: &str) -> String {
    format!("tandem:cb:class:{{{id}}}:h")
}

fn followers_key(id: &str) -> String {
    format!("tandem:cb:class:{{{id}}}:f")
}

fn class_code_key(code: &str) -> String {
    format!("tandem:cb:classcode:{code}")
}

fn class_link_key(link: &str) -> String {
    format!("tandem:cb:classlink:{link}")
}

/// The per-run agent keys of the live nodes (digests, by when last said).
const KEYS: &str = "tandem:cb:agentkeys";
/// How long a node's per-run key is accepted by the others after it last
/// said so.
pub(crate) const KEY_LIFE: Duration = Duration::from_secs(180);
/// How often a node says it again.
pub(crate) const KEY_RENEW: Duration = Duration::from_secs(60);

/// The sorted set of open classes, by creation.
const CLASSES: &str = "tandem:cb:classes";
/// Wrong class codes, for the whole cluster.
pub(crate) const CLASS_FAILS: &str = "tandem:cb:classfail";

/// A class as Redis keeps it.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredClass {
    pub(crate) id: String,
    /// The digest of the presenter's token, hex.
    pub(crate) presenter: String,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) title: String,
    pub(crate) created_ms: u64,
    pub(crate) code: String,
    pub(crate) link: String,
    pub(crate) control: Option<String>,
    /// Followers: id, name, the digest of their token (hex), by number.
    pub(crate) followers: Vec<(String, String, String)>,
    pub(crate) counter: u64,
}

/// A help session as Redis keeps it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stored {
    pub(crate) id: String,
    /// The digest of the customer's token, hex.
    pub(crate) customer: String,
    pub(crate) label: String,
    pub(crate) url: String,
    pub(crate) title: String,
    pub(crate) message: String,
    pub(crate) created_ms: u64,
    pub(crate) control: bool,
    /// Whether the node that made it keeps a cookie jar for it (proxy mode).
    pub(crate) jar: bool,
    pub(crate) shared: Option<String>,
    pub(crate) online: bool,
    pub(crate) agents: Vec<String>,
}

/// Co-browsing's connection to the shared Redis.
#[derive(Clone)]
pub(crate) struct Store {
    conn: RedisConn,
    chat: redis::Script,
    heard: redis::Script,
    gone: redis::Script,
    class_join: redis::Script,
    class_leave: redis::Script,
}

/// Now, in ms since 1970.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!(
        "co-browsing state not stored: redis unreachable ({e}); try again in a moment"
    ))
}

impl Store {
    pub(crate) fn new(conn: RedisConn) -> Store {
        Store {
            conn,
            chat: redis::Script::new(CHAT),
            heard: redis::Script::new(HEARD),
            gone: redis::Script::new(GONE),
            class_join: redis::Script::new(CLASS_JOIN),
            class_leave: redis::Script::new(CLASS_LEAVE),
        }
    }

    async fn q<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut c = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))),
        }
    }

    async fn script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, Error> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for a in args {
            call.arg(a);
        }
        let mut c = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))),
        }
    }

    /// The next `visitor N` number, for every node.
    pub(crate) async fn next_visitor(&self) -> Result<u64, Error> {
        self.q(redis::cmd("INCR").arg("tandem:cb:visitors")).await
    }

    /// How many sessions are open.
    pub(crate) async fn count(&self) -> Result<usize, Error> {
        self.q(redis::cmd("ZCARD").arg(LIST)).await
    }

    /// Keeps a new session until `ends_ms`, then lists it.
    pub(crate) async fn create(&self, s: &Stored, ends_ms: u64) -> Result<(), Error> {
        let key = session_key(&s.id);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg("c")
            .arg(&s.customer)
            .arg("label")
            .arg(&s.label)
            .arg("url")
            .arg(&s.url)
            .arg("title")
            .arg(&s.title)
            .arg("message")
            .arg(&s.message)
            .arg("created")
            .arg(s.created_ms)
            .arg("control")
            .arg(if s.control { "1" } else { "0" })
            .arg("jar")
            .arg(if s.jar { "1" } else { "0" })
            .arg("seen")
            .arg(now_ms())
            .arg("online")
            .arg("1")
            .arg("n")
            .arg(0);
        if let Some(shared) = &s.shared {
            hset.arg("shared").arg(shared);
        }
        self.q::<()>(&hset).await?;
        self.q::<()>(redis::cmd("PEXPIREAT").arg(&key).arg(ends_ms))
            .await?;
        self.q::<()>(redis::cmd("ZADD").arg(LIST).arg(s.created_ms).arg(&s.id))
            .await
    }

    /// A session as stored, `None` if it ended or expired.
    pub(crate) async fn fetch(&self, id: &str) -> Result<Option<Stored>, Error> {
        let fields: Vec<(String, String)> =
            self.q(redis::cmd("HGETALL").arg(session_key(id))).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let agents: Vec<String> = self.q(redis::cmd("SMEMBERS").arg(agents_key(id))).await?;
        let mut s = Stored {
            id: id.to_string(),
            agents,
            ..Stored::default()
        };
        for (k, v) in fields {
            match k.as_str() {
                "c" => s.customer = v,
                "label" => s.label = v,
                "url" => s.url = v,
                "title" => s.title = v,
                "message" => s.message = v,
                "created" => s.created_ms = v.parse().unwrap_or(0),
                "control" => s.control = v == "1",
                "jar" => s.jar = v == "1",
                "shared" => s.shared = Some(v),
                "online" => s.online = v == "1",
                _ => {}
            }
        }
        if s.customer.is_empty() {
            // Only a stray field of a session that ended meanwhile.
            return Ok(None);
        }
        s.agents.sort();
        Ok(Some(s))
    }

    /// Every open session, oldest first (their fetches run at once).
    pub(crate) async fn all(&self) -> Result<Vec<Stored>, Error> {
        let ids: Vec<String> = self
            .q(redis::cmd("ZRANGE").arg(LIST).arg(0).arg(-1))
            .await?;
        let mut set = tokio::task::JoinSet::new();
        for (i, id) in ids.into_iter().enumerate() {
            let this = self.clone();
            set.spawn(async move { (i, this.fetch(&id).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            let (i, s) = r.map_err(|_| Error::internal("fetching the sessions failed"))?;
            if let Some(s) = s? {
                out.push((i, s));
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    /// The chat lines kept, oldest first.
    pub(crate) async fn chat(&self, id: &str) -> Result<Vec<serde_json::Value>, Error> {
        let lines: Vec<String> = self
            .q(redis::cmd("LRANGE").arg(chat_key(id)).arg(0).arg(-1))
            .await?;
        Ok(lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Keeps a chat line (`rest`: its JSON after `{"n":N,`); its number,
    /// 0 if the session is gone.
    pub(crate) async fn keep_chat(&self, id: &str, rest: &str, ends_ms: u64) -> Result<u64, Error> {
        self.script(
            &self.chat,
            &[session_key(id), chat_key(id)],
            &[
                rest.to_string(),
                MAX_CHAT_LINES.to_string(),
                ends_ms.to_string(),
            ],
        )
        .await
    }

    /// Sets fields of a session that exists.
    pub(crate) async fn set(&self, id: &str, fields: &[(&str, &str)]) -> Result<(), Error> {
        let key = session_key(id);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        // Only while the session exists: HSET on a gone key would make a
        // stray hash with no expiry, so check it first (a race leaves at
        // most a field that `fetch` ignores and the next expire sweeps).
        let exists: bool = self.q(redis::cmd("EXISTS").arg(&key)).await?;
        if exists {
            self.q::<()>(&cmd).await?;
        }
        Ok(())
    }

    /// `agent` joins session `id` (until `ends_ms`); whether it is new.
    pub(crate) async fn join(&self, id: &str, agent: &str, ends_ms: u64) -> Result<bool, Error> {
        let key = agents_key(id);
        let added: u64 = self.q(redis::cmd("SADD").arg(&key).arg(agent)).await?;
        self.q::<()>(redis::cmd("PEXPIREAT").arg(&key).arg(ends_ms))
            .await?;
        Ok(added == 1)
    }

    /// The customer was heard from; whether they were shown gone.
    pub(crate) async fn heard(&self, id: &str) -> Result<bool, Error> {
        let back: u64 = self
            .script(&self.heard, &[session_key(id)], &[now_ms().to_string()])
            .await?;
        Ok(back == 1)
    }

    /// Marks gone every customer not heard from within `timeout`; whether
    /// this node changed any.
    pub(crate) async fn presence(&self, timeout: Duration) -> Result<bool, Error> {
        let ids: Vec<String> = self
            .q(redis::cmd("ZRANGE").arg(LIST).arg(0).arg(-1))
            .await?;
        let before = now_ms().saturating_sub(timeout.as_millis() as u64);
        let mut changed = false;
        for id in ids {
            let c: u64 = self
                .script(&self.gone, &[session_key(&id)], &[before.to_string()])
                .await?;
            changed |= c == 1;
        }
        Ok(changed)
    }

    /// Ends session `id`: true for the one node that removes it from the
    /// list (it announces the end), false if it was gone already.
    pub(crate) async fn end(&self, id: &str) -> Result<bool, Error> {
        let removed: u64 = self.q(redis::cmd("ZREM").arg(LIST).arg(id)).await?;
        let code: Option<String> = self
            .q(redis::cmd("HGET").arg(session_key(id)).arg("code"))
            .await?;
        if let Some(code) = code {
            self.q::<()>(redis::cmd("DEL").arg(code_key(&code))).await?;
        }
        self.q::<()>(
            redis::cmd("DEL")
                .arg(session_key(id))
                .arg(agents_key(id))
                .arg(chat_key(id))
                .arg(jar_key(id)),
        )
        .await?;
        Ok(removed == 1)
    }

    /// The sessions created before `before_ms` (past their lifetime).
    pub(crate) async fn older_than(&self, before_ms: u64) -> Result<Vec<String>, Error> {
        self.q(redis::cmd("ZRANGEBYSCORE")
            .arg(LIST)
            .arg("-inf")
            .arg(format!("({before_ms}")))
            .await
    }

    /// A fresh phone code for session `id` (its old one no longer works).
    pub(crate) async fn new_code(&self, id: &str, ttl: Duration) -> Result<String, Error> {
        let old: Option<String> = self
            .q(redis::cmd("HGET").arg(session_key(id)).arg("code"))
            .await?;
        if let Some(old) = old {
            self.q::<()>(redis::cmd("DEL").arg(code_key(&old))).await?;
        }
        loop {
            let code = format!("{:06}", super::secret::random_below(1_000_000));
            let set: Value = self
                .q(redis::cmd("SET")
                    .arg(code_key(&code))
                    .arg(id)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64))
                .await?;
            if set != Value::Nil {
                self.set(id, &[("code", &code)]).await?;
                return Ok(code);
            }
        }
    }

    /// The session a phone code points at; the code is spent (on every node).
    pub(crate) async fn redeem(&self, code: &str) -> Result<Option<String>, Error> {
        self.q(redis::cmd("GETDEL").arg(code_key(code))).await
    }

    /// The count under `key` (a limit's window), 0 if none.
    pub(crate) async fn count_of(&self, key: &str) -> Result<u64, Error> {
        let n: Option<u64> = self.q(redis::cmd("GET").arg(key)).await?;
        Ok(n.unwrap_or(0))
    }

    /// Adds one to the count under `key`, whose window starts with its first.
    pub(crate) async fn bump(&self, key: &str, window: Duration) -> Result<u64, Error> {
        self.q::<Value>(
            redis::cmd("SET")
                .arg(key)
                .arg(0)
                .arg("NX")
                .arg("PX")
                .arg(window.as_millis() as u64),
        )
        .await?;
        self.q(redis::cmd("INCR").arg(key)).await
    }

    /// Keeps a sign-in (by the token's digest) for `ttl`.
    pub(crate) async fn sign_in(
        &self,
        digest_hex: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.q(redis::cmd("SET")
            .arg(signin_key(digest_hex))
            .arg(name)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64))
            .await
    }

    /// The agent of a sign-in and how long it has left.
    pub(crate) async fn signed_in(
        &self,
        digest_hex: &str,
    ) -> Result<Option<(String, Duration)>, Error> {
        let key = signin_key(digest_hex);
        let name: Option<String> = self.q(redis::cmd("GET").arg(&key)).await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let left: i64 = self.q(redis::cmd("PTTL").arg(&key)).await?;
        if left <= 0 {
            return Ok(None);
        }
        Ok(Some((name, Duration::from_millis(left as u64))))
    }

    /// Ends a sign-in.
    pub(crate) async fn sign_out(&self, digest_hex: &str) -> Result<(), Error> {
        self.q(redis::cmd("DEL").arg(signin_key(digest_hex))).await
    }

    /// The demo portal's session (by the digest of its cookie), as JSON.
    pub(crate) async fn portal(&self, digest_hex: &str) -> Result<Option<String>, Error> {
        self.q(redis::cmd("GET").arg(format!("tandem:cb:portal:{digest_hex}")))
            .await
    }

    /// Keeps the demo portal's session for a day after its last change.
    pub(crate) async fn set_portal(&self, digest_hex: &str, json: &str) -> Result<(), Error> {
        self.q(redis::cmd("SET")
            .arg(format!("tandem:cb:portal:{digest_hex}"))
            .arg(json)
            .arg("PX")
            .arg(24 * 3600 * 1000))
            .await
    }

    /// A session's cookie jar on the proxied application (`Jar::entries`).
    pub(crate) async fn jar(&self, id: &str) -> Result<HashMap<String, String>, Error> {
        self.q(redis::cmd("HGETALL").arg(jar_key(id))).await
    }

    /// Writes what changed in a session's jar: cookie by cookie, so that
    /// two nodes changing two cookies at once lose neither.
    pub(crate) async fn save_jar(
        &self,
        id: &str,
        changed: &[(&String, &String)],
        removed: &[&String],
        ends_ms: u64,
    ) -> Result<(), Error> {
        let key = jar_key(id);
        if !removed.is_empty() {
            let mut del = redis::cmd("HDEL");
            del.arg(&key);
            for f in removed {
                del.arg(f.as_str());
            }
            self.q::<()>(&del).await?;
        }
        if !changed.is_empty() {
            let mut set = redis::cmd("HSET");
            set.arg(&key);
            for (f, v) in changed {
                set.arg(f.as_str()).arg(v.as_str());
            }
            self.q::<()>(&set).await?;
            self.q::<()>(redis::cmd("PEXPIREAT").arg(&key).arg(ends_ms))
                .await?;
        }
        Ok(())
    }

    /// How many classes are open.
    pub(crate) async fn class_count(&self) -> Result<usize, Error> {
        self.q(redis::cmd("ZCARD").arg(CLASSES)).await
    }

    /// Keeps a new class until `ends_ms`, its code and link key pointing at
    /// it; false if its code is taken (the caller draws another).
    pub(crate) async fn create_class(&self, c: &StoredClass, ends_ms: u64) -> Result<bool, Error> {
        let left = ends_ms.saturating_sub(now_ms()).max(1);
        let set: Value = self
            .q(redis::cmd("SET")
                .arg(class_code_key(&c.code))
                .arg(&c.id)
                .arg("NX")
                .arg("PX")
                .arg(left))
            .await?;
        if set == Value::Nil {
            return Ok(false);
        }
        self.q::<()>(
            redis::cmd("SET")
                .arg(class_link_key(&c.link))
                .arg(&c.id)
                .arg("PX")
                .arg(left),
        )
        .await?;
        let key = class_key(&c.id);
        self.q::<()>(
            redis::cmd("HSET")
                .arg(&key)
                .arg("p")
                .arg(&c.presenter)
                .arg("name")
                .arg(&c.name)
                .arg("url")
                .arg(&c.url)
                .arg("title")
                .arg(&c.title)
                .arg("created")
                .arg(c.created_ms)
                .arg("ends")
                .arg(ends_ms)
                .arg("code")
                .arg(&c.code)
                .arg("link")
                .arg(&c.link)
                .arg("control")
                .arg("")
                .arg("counter")
                .arg(0),
        )
        .await?;
        self.q::<()>(redis::cmd("PEXPIREAT").arg(&key).arg(ends_ms))
            .await?;
        self.q(redis::cmd("ZADD").arg(CLASSES).arg(c.created_ms).arg(&c.id))
            .await
            .map(|()| true)
    }

    /// A class as stored, `None` if it ended or expired.
    pub(crate) async fn fetch_class(&self, id: &str) -> Result<Option<StoredClass>, Error> {
        let fields: Vec<(String, String)> =
            self.q(redis::cmd("HGETALL").arg(class_key(id))).await?;
        let followers: Vec<(String, String)> =
            self.q(redis::cmd("HGETALL").arg(followers_key(id))).await?;
        let mut c = StoredClass {
            id: id.to_string(),
            ..StoredClass::default()
        };
        for (k, v) in fields {
            match k.as_str() {
                "p" => c.presenter = v,
                "name" => c.name = v,
                "url" => c.url = v,
                "title" => c.title = v,
                "created" => c.created_ms = v.parse().unwrap_or(0),
                "code" => c.code = v,
                "link" => c.link = v,
                "control" => c.control = (!v.is_empty()).then_some(v),
                "counter" => c.counter = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        if c.presenter.is_empty() {
            return Ok(None);
        }
        let mut fs: Vec<(u64, (String, String, String))> = followers
            .into_iter()
            .filter_map(|(fid, json)| {
                let v: serde_json::Value = serde_json::from_str(&json).ok()?;
                let n = fid.strip_prefix('f')?.parse().ok()?;
                let name = v["name"].as_str()?.to_string();
                let token = v["t"].as_str()?.to_string();
                Some((n, (fid, name, token)))
            })
            .collect();
        fs.sort_by_key(|(n, _)| *n);
        c.followers = fs.into_iter().map(|(_, f)| f).collect();
        Ok(Some(c))
    }

    /// A follower joins class `id`: `Some(number)`, `None` if the class is
    /// gone; 429 if it is full.
    pub(crate) async fn join_class(
        &self,
        id: &str,
        name: Option<&str>,
        token_hex: &str,
        max: usize,
    ) -> Result<Option<u64>, Error> {
        let name = name.map_or(String::new(), |n| serde_json::Value::from(n).to_string());
        let n: i64 = self
            .script(
                &self.class_join,
                &[class_key(id), followers_key(id)],
                &[max.to_string(), name, token_hex.to_string()],
            )
            .await?;
        match n {
            0 => Ok(None),
            n if n < 0 => Err(Error::rate_limited(format!(
                "this class is full (max {max} followers)"
            ))),
            n => Ok(Some(n as u64)),
        }
    }

    /// A follower leaves: how many are left and whether control came back,
    /// `None` if they were not in it.
    pub(crate) async fn leave_class(
        &self,
        id: &str,
        f: &str,
    ) -> Result<Option<(usize, bool)>, Error> {
        let (n, back): (i64, i64) = self
            .script(
                &self.class_leave,
                &[class_key(id), followers_key(id)],
                &[f.to_string()],
            )
            .await?;
        Ok((n >= 0).then_some((n as usize, back == 1)))
    }

    /// Sets fields of a class that exists.
    pub(crate) async fn set_class(&self, id: &str, fields: &[(&str, &str)]) -> Result<(), Error> {
        let key = class_key(id);
        let exists: bool = self.q(redis::cmd("EXISTS").arg(&key)).await?;
        if !exists {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        self.q(&cmd).await
    }

    /// The class a code or a link key opens.
    pub(crate) async fn find_class(
        &self,
        code: Option<&str>,
        link: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let key = match (code, link) {
            (Some(c), _) => class_code_key(c),
            (None, Some(l)) => class_link_key(l),
            (None, None) => return Ok(None),
        };
        self.q(redis::cmd("GET").arg(key)).await
    }

    /// Ends class `id`: true for the one node that takes it off the list.
    pub(crate) async fn end_class(&self, id: &str) -> Result<bool, Error> {
        let removed: u64 = self.q(redis::cmd("ZREM").arg(CLASSES).arg(id)).await?;
        let (code, link): (Option<String>, Option<String>) = self
            .q(redis::cmd("HMGET")
                .arg(class_key(id))
                .arg("code")
                .arg("link"))
            .await?;
        if let Some(code) = code {
            self.q::<()>(redis::cmd("DEL").arg(class_code_key(&code)))
                .await?;
        }
        if let Some(link) = link {
            self.q::<()>(redis::cmd("DEL").arg(class_link_key(&link)))
                .await?;
        }
        self.q::<()>(redis::cmd("DEL").arg(class_key(id)).arg(followers_key(id)))
            .await?;
        Ok(removed == 1)
    }

    /// The classes created before `before_ms` (past their lifetime).
    pub(crate) async fn classes_older_than(&self, before_ms: u64) -> Result<Vec<String>, Error> {
        self.q(redis::cmd("ZRANGEBYSCORE")
            .arg(CLASSES)
            .arg("-inf")
            .arg(format!("({before_ms}")))
            .await
    }

    /// Says that this node accepts the per-run agent key of this digest,
    /// for [`KEY_LIFE`] (renewed every [`KEY_RENEW`]).
    pub(crate) async fn register_key(&self, digest_hex: &str) -> Result<(), Error> {
        let now = now_ms();
        self.q::<()>(
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(KEYS)
                .arg("-inf")
                .arg(now.saturating_sub(KEY_LIFE.as_millis() as u64)),
        )
        .await?;
        self.q(redis::cmd("ZADD").arg(KEYS).arg(now).arg(digest_hex))
            .await
    }

    /// Whether a live node accepts the per-run agent key of this digest.
    pub(crate) async fn key_known(&self, digest_hex: &str) -> Result<bool, Error> {
        let at: Option<u64> = self
            .q(redis::cmd("ZSCORE").arg(KEYS).arg(digest_hex))
            .await?;
        Ok(at.is_some_and(|t| now_ms().saturating_sub(t) < KEY_LIFE.as_millis() as u64))
    }

    /// Notes a change to the console list.
    pub(crate) async fn changed(&self) -> Result<u64, Error> {
        self.q(redis::cmd("INCR").arg(VERSION)).await
    }

    /// The console list's change count.
    pub(crate) async fn version(&self) -> Result<u64, Error> {
        self.count_of(VERSION).await
    }
}
