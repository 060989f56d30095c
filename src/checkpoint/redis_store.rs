//! The Redis checkpoint store: one hash per table under
//! `<prefix>:checkpoint:<database>:<schema.table>` with fields `version`, `part` (empty
//! when the whole version is delivered), `updated_at_ms`, `source`, and one
//! `split:<version>:<part>` field per stored part boundary (the key, as JSON members).
//! Advanced by a Lua script so the never-backwards rule holds even if two writers race;
//! the same script drops the boundaries the new position has passed. A lease key
//! `<prefix>:lock:<database>` marks a running sidecar.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use std::collections::BTreeMap;

use super::{now_ms, Checkpoint, CheckpointError, CheckpointStore};
use crate::envelope::Position;

const ADVANCE: &str = r#"
local v = tonumber(ARGV[1])
local p = ARGV[2]
local cur = redis.call('HGET', KEYS[1], 'version')
if cur then
  local cv = tonumber(cur)
  local cp = redis.call('HGET', KEYS[1], 'part') or ''
  local newer
  if v ~= cv then
    newer = v > cv
  elseif cp == '' then
    newer = false
  elseif p == '' then
    newer = true
  else
    newer = tonumber(p) > tonumber(cp)
  end
  if not newer then return {cur, cp} end
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'part', p, 'updated_at_ms', ARGV[3], 'source', ARGV[4], 'seq', ARGV[5])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local sv, sp = string.match(f, '^split:(%-?%d+):(%d+)$')
  if sv then
    sv = tonumber(sv)
    sp = tonumber(sp)
    if sv < v or (sv == v and (p == '' or sp < tonumber(p))) then
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
return {ARGV[1], p}
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Checkpoints of one database in Redis.
#[derive(Clone)]
pub struct RedisCheckpointStore {
    conn: ConnectionManager,
    prefix: String,
    database: String,
    /// `server/database` as SQL Server names itself, stored beside each version so an
    /// operator (and the start-up warning) can tell which database wrote it.
    source: String,
    advance: redis::Script,
}

impl RedisCheckpointStore {
    /// Connects (the connection manager reconnects by itself after failures).
    pub async fn connect(client: redis::Client, prefix: &str, database: &str) -> Result<Self, CheckpointError> {
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            database: database.to_string(),
            source: String::new(),
            advance: redis::Script::new(ADVANCE),
        })
    }

    /// Records `server/database` with every write from now on.
    pub fn with_source(mut self, server: &str, database: &str) -> Self {
        self.source = format!("{server}/{database}");
        self
    }

    fn key(&self, table: &str) -> String {
        format!("{}:checkpoint:{}:{}", self.prefix, self.database, table)
    }

    fn lock_key(&self) -> String {
        format!("{}:lock:{}", self.prefix, self.database)
    }

    /// Records `incarnation` on `table`'s checkpoint if it has none (written before
    /// restore detection existed): from now on a restore is told apart.
    pub async fn adopt_incarnation(&self, table: &str, incarnation: &str) -> Result<(), CheckpointError> {
        let _: bool = self
            .conn
            .clone()
            .hset_nx(self.key(table), "incarnation", incarnation)
            .await?;
        Ok(())
    }

    /// Who holds this database's lease, if anyone.
    pub async fn lock_holder(&self) -> Result<Option<String>, CheckpointError> {
        Ok(self.conn.clone().get(self.lock_key()).await?)
    }

    /// Takes the lease for `holder` if free (or already ours); returns whether we hold it.
    /// The lease expires after `ttl_ms` unless renewed, so a crashed sidecar does not
    /// block its successor for long.
    pub async fn try_lock(&self, holder: &str, ttl_ms: u64) -> Result<bool, CheckpointError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lock_key())
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        let renewed: i64 = redis::Script::new(RENEW)
            .key(self.lock_key())
            .arg(holder)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if we hold it.
    pub async fn unlock(&self, holder: &str) -> Result<(), CheckpointError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::Script::new(RELEASE)
            .key(self.lock_key())
            .arg(holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    fn parse(
        &self,
        key: &str,
        fields: std::collections::HashMap<String, String>,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(version) = fields.get("version") else {
            return Ok(None);
        };
        let malformed = || CheckpointError::Malformed {
            key: key.to_string(),
            value: version.clone(),
        };
        let version = version.parse().map_err(|_| malformed())?;
        let part = match fields.get("part").map(String::as_str) {
            None | Some("") => None,
            Some(p) => Some(p.parse().map_err(|_| malformed())?),
        };
        let seq = fields.get("seq").and_then(|v| v.parse().ok()).unwrap_or(0);
        let updated_at_ms = fields.get("updated_at_ms").and_then(|v| v.parse().ok()).unwrap_or(0);
        let source = fields.get("source").cloned().filter(|s| !s.is_empty());
        let mut splits = BTreeMap::new();
        for (field, value) in &fields {
            if let Some(rest) = field.strip_prefix("split:") {
                let parsed = rest
                    .split_once(':')
                    .and_then(|(v, p)| Some((v.parse::<i64>().ok()?, p.parse::<u32>().ok()?)));
                let (v, p) = parsed.ok_or_else(|| CheckpointError::Malformed {
                    key: key.to_string(),
                    value: field.clone(),
                })?;
                splits.insert((v, p), value.clone());
            }
        }
        Ok(Some(Checkpoint {
            version,
            part,
            seq,
            splits,
            incarnation: fields.get("incarnation").cloned().filter(|s| !s.is_empty()),
            resync: fields.get("resync").cloned().filter(|s| !s.is_empty()),
            updated_at_ms,
            source,
        }))
    }
}

impl CheckpointStore for RedisCheckpointStore {
    fn load<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<Checkpoint>, CheckpointError>> {
        async move {
            let key = self.key(table);
            let fields: std::collections::HashMap<String, String> = self.conn.clone().hgetall(&key).await?;
            self.parse(&key, fields)
        }
        .boxed()
    }

    fn advance<'a>(
        &'a self,
        table: &'a str,
        to: Position,
        seq: u64,
    ) -> BoxFuture<'a, Result<Position, CheckpointError>> {
        async move {
            let mut conn = self.conn.clone();
            let part = to.part.map(|p| p.to_string()).unwrap_or_default();
            let (version, part): (String, String) = self
                .advance
                .key(self.key(table))
                .arg(to.version)
                .arg(part)
                .arg(now_ms())
                .arg(&self.source)
                .arg(seq)
                .invoke_async(&mut conn)
                .await?;
            let malformed = || CheckpointError::Malformed {
                key: self.key(table),
                value: format!("{version}/{part}"),
            };
            Ok(Position {
                version: version.parse().map_err(|_| malformed())?,
                part: if part.is_empty() {
                    None
                } else {
                    Some(part.parse().map_err(|_| malformed())?)
                },
            })
        }
        .boxed()
    }

    fn record_split<'a>(
        &'a self,
        table: &'a str,
        at: Position,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        async move {
            let Some(part) = at.part else {
                return Ok(());
            };
            let field = format!("split:{}:{part}", at.version);
            let _: () = self.conn.clone().hset(self.key(table), field, key).await?;
            Ok(())
        }
        .boxed()
    }

    fn reset<'a>(
        &'a self,
        table: &'a str,
        version: i64,
        seq: u64,
        incarnation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        async move {
            // The boundaries of the old stream mean nothing for the new one.
            let key = self.key(table);
            let _: () = redis::pipe()
                .atomic()
                .del(&key)
                .hset_multiple(
                    &key,
                    &[
                        ("version", version.to_string()),
                        ("part", String::new()),
                        ("seq", seq.to_string()),
                        ("incarnation", incarnation.unwrap_or_default().to_string()),
                        ("updated_at_ms", now_ms().to_string()),
                        ("source", self.source.clone()),
                    ],
                )
                .query_async(&mut self.conn.clone())
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn mark_resync<'a>(&'a self, table: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), CheckpointError>> {
        async move {
            let _: () = self.conn.clone().hset(self.key(table), "resync", reason).await?;
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        async move {
            let n: i64 = self.conn.clone().del(self.key(table)).await?;
            Ok(n > 0)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, Checkpoint)>, CheckpointError>> {
        async move {
            let mut conn = self.conn.clone();
            let pattern = format!("{}:checkpoint:{}:*", self.prefix, self.database);
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            let strip = pattern.len() - 1;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let fields: std::collections::HashMap<String, String> = conn.hgetall(&key).await?;
                if let Some(cp) = self.parse(&key, fields)? {
                    out.push((key[strip..].to_string(), cp));
                }
            }
            Ok(out)
        }
        .boxed()
    }
}
