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
//! | `tandem:cb:sessions` | sorted set | open session ids by creation (ms): the console list | entries removed when a session ends |
//! | `tandem:cb:code:CODE` | string | the session a phone code points at | `CODE_TTL`; `GETDEL` redeems it once |
//! | `tandem:cb:agent:DIGEST` | string | the agent a sign-in token (by digest) belongs to | `--agent-session-ttl` |
//! | `tandem:cb:codefail:AGENT` | counter | wrong phone codes typed | `CODE_WINDOW` from the first |
//! | `tandem:cb:signfail:NAME`, `tandem:cb:signfail` | counters | failed sign-ins, per name and in all | a minute from the first |
//! | `tandem:cb:portal:DIGEST` | string | the demo portal's session (user, cart) | a day after its last change |
//! | `tandem:cb:ver` | counter | changes to the console list (see `Cobrowse::publish_list`) | none |
//! | `tandem:cb:visitors` | counter | the `visitor N` labels | none |
//!
//! Tokens are never stored: only their SHA-256 digests (hex). Every write
//! is one field or one member (HSET, SADD, RPUSH, INCR), so two nodes that
//! change one session at once lose nothing. Plain data and I/O, no
//! channels: `state.rs` decides what to write and when.

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
                .arg(chat_key(id)),
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

    /// Notes a change to the console list.
    pub(crate) async fn changed(&self) -> Result<u64, Error> {
        self.q(redis::cmd("INCR").arg(VERSION)).await
    }

    /// The console list's change count.
    pub(crate) async fn version(&self) -> Result<u64, Error> {
        self.count_of(VERSION).await
    }
}
