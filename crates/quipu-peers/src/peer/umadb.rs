//! UmaDB, an event store built on Dynamic Consistency Boundaries, through
//! its own gRPC client. It has no streams: an event of stream `s` carries
//! the tag `stream:s`, and an append to `s` is conditional on no event
//! with that tag existing after the position of the stream's last event
//! (which each writer knows, since it owns its streams); that is UmaDB's
//! way of doing optimistic concurrency. Durability: UmaDB fsyncs each
//! commit before it answers.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use umadb_client::AsyncUmaDbClient;
use umadb_dcb::{DcbAppendCondition, DcbError, DcbEvent, DcbEventStoreAsync, DcbQuery, DcbQueryItem};

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// Events per catch-up page.
const PAGE_EVENTS: u32 = 10_000;

/// A running UmaDB server.
pub struct UmaDb {
    /// Its address, `http://host:port`.
    pub url: String,
    /// Its database directory, for disk use.
    pub data_dir: PathBuf,
    /// The server's version, as `umadb --version` printed it.
    pub version: String,
}

impl UmaDb {
    async fn client(&self) -> anyhow::Result<AsyncUmaDbClient> {
        Ok(AsyncUmaDbClient::connect(self.url.clone(), None, None, None).await?)
    }
}

fn tag(stream: &str) -> String {
    format!("stream:{stream}")
}

fn event(stream: &str, data: &[u8]) -> DcbEvent {
    DcbEvent { event_type: "Happened".into(), tags: vec![tag(stream)], data: data.to_vec(), ..DcbEvent::default() }
}

fn stream_query(stream: &str) -> DcbQuery {
    DcbQuery { items: vec![DcbQueryItem { types: Vec::new(), tags: vec![tag(stream)] }] }
}

#[async_trait]
impl Peer for UmaDb {
    fn name(&self) -> &'static str {
        "umadb"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        Ok(format!("{} (default options; a stream is a tag, concurrency by append condition)", self.version.trim()))
    }

    fn durability(&self) -> &'static str {
        "synced: UmaDB fsyncs each commit before it answers"
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        Ok(Box::new(UmaDbConnection { client: self.client().await?, last_positions: HashMap::new() }))
    }

    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        dir_bytes(&self.data_dir)
    }
}

struct UmaDbConnection {
    client: AsyncUmaDbClient,
    /// Position of the last event of each stream this writer appended to.
    last_positions: HashMap<String, u64>,
}

#[async_trait]
impl Connection for UmaDbConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, payloads: &[Vec<u8>]) -> anyhow::Result<Appended> {
        let after = match expected {
            None => None,
            Some(_) => Some(
                *self
                    .last_positions
                    .get(stream)
                    .ok_or_else(|| anyhow::anyhow!("{stream} was appended to by another writer"))?,
            ),
        };
        let condition = DcbAppendCondition { fail_if_events_match: stream_query(stream), after };
        let events = payloads.iter().map(|data| event(stream, data)).collect();
        match self.client.append(events, Some(condition), None).await {
            Ok(last) => {
                self.last_positions.insert(stream.to_string(), last);
                Ok(Appended::Written)
            }
            Err(DcbError::IntegrityError(_)) => Ok(Appended::Conflict),
            Err(error) => Err(error.into()),
        }
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let events =
            writes.iter().flat_map(|(stream, _, payloads)| payloads.iter().map(|data| event(stream, data))).collect();
        self.client.append(events, None, None).await?;
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        let (events, _) = self.client.read_with_head(Some(stream_query(stream)), None, false, None).await?;
        Ok(events.len())
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        let start = from.map(|f| f.parse::<u64>()).transpose()?;
        let (events, _) = self.client.read_with_head(None, start, false, Some(PAGE_EVENTS)).await?;
        let next = (events.len() == PAGE_EVENTS as usize)
            .then(|| events.last().map(|e| (e.position + 1).to_string()))
            .flatten();
        Ok(Page { events: events.len(), next })
    }
}
