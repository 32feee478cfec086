//! Redis Streams: one Redis stream per event stream, and a global `all`
//! stream written in the same Lua script, since Redis has no global log
//! of its own. The script compares the stream's length with the expected
//! revision + 1 and appends only when they match (scripts run atomically).
//! Durability: `appendonly yes` with `appendfsync always`, so the AOF is
//! fsync'ed before a write is acknowledged.

use std::path::PathBuf;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// Entries per catch-up page.
const PAGE_ENTRIES: usize = 10_000;

/// The global log.
const ALL: &str = "all";

/// Checks the length, then appends each payload to the stream and to `all`.
const APPEND: &str = r"
local length = redis.call('XLEN', KEYS[1])
if length ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'd', ARGV[i])
  redis.call('XADD', KEYS[2], '*', 's', KEYS[1], 'd', ARGV[i])
end
return length + #ARGV - 1";

/// A running redis-server.
pub struct Redis {
    /// `redis://host:port`.
    pub url: String,
    /// Its `dir`, for disk use.
    pub data_dir: PathBuf,
}

impl Redis {
    async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        Ok(redis::Client::open(self.url.as_str())?.get_multiplexed_tokio_connection().await?)
    }
}

#[async_trait]
impl Peer for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        let mut connection = self.connection().await?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut connection).await?;
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
        let mut settings = Vec::new();
        for name in ["appendonly", "appendfsync", "save"] {
            let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut connection).await?;
            settings.push(pair.join("="));
        }
        Ok(format!("redis {version}; {}", settings.join(" ")))
    }

    fn durability(&self) -> &'static str {
        "synced: appendonly yes, appendfsync always (AOF fsync'ed before the reply)"
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        Ok(Box::new(RedisConnection { connection: self.connection().await?, append: redis::Script::new(APPEND) }))
    }

    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        dir_bytes(&self.data_dir)
    }
}

struct RedisConnection {
    connection: MultiplexedConnection,
    append: redis::Script,
}

#[async_trait]
impl Connection for RedisConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, events: &[Vec<u8>]) -> anyhow::Result<Appended> {
        let length = expected.map_or(0, |e| e + 1);
        let mut invocation = self.append.key(stream);
        invocation.key(ALL).arg(length);
        for event in events {
            invocation.arg(event.as_slice());
        }
        let result: i64 = invocation.invoke_async(&mut self.connection).await?;
        Ok(if result < 0 { Appended::Conflict } else { Appended::Written })
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for (stream, _, events) in writes {
            for event in events {
                pipeline.cmd("XADD").arg(stream).arg("*").arg("d").arg(event.as_slice()).ignore();
                pipeline.cmd("XADD").arg(ALL).arg("*").arg("s").arg(stream).arg("d").arg(event.as_slice()).ignore();
            }
        }
        let () = pipeline.query_async(&mut self.connection).await?;
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        let entries: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut self.connection).await?;
        Ok(entries.ids.len())
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        // An exclusive start ("(id") continues after the last entry read.
        let start = from.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(ALL)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE_ENTRIES)
            .query_async(&mut self.connection)
            .await?;
        let next = (entries.ids.len() == PAGE_ENTRIES).then(|| entries.ids.last().map(|e| e.id.clone())).flatten();
        Ok(Page { events: entries.ids.len(), next })
    }
}
