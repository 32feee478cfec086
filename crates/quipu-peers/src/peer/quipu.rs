//! Quipu through its own gRPC client: a stream is a Quipu stream, an
//! append carries the exact expected revision, `$all` is the global log.
//! Durability: every append is fdatasync'ed before it is acknowledged
//! (the server's default).

use std::path::PathBuf;

use async_trait::async_trait;
use quipu_client::{Append, Client, Direction, ExpectedRevision, NewEvent, RetryPolicy};

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// Events per catch-up page (the server's read maximum).
const PAGE_EVENTS: u32 = 10_000;

/// A running `quipu serve`.
pub struct Quipu {
    /// Its gRPC address, `http://host:port`.
    pub address: String,
    /// Its data directory, for disk use.
    pub data_dir: PathBuf,
}

#[async_trait]
impl Peer for Quipu {
    fn name(&self) -> &'static str {
        "quipu"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        Ok(format!("quipu {} (gRPC, default options: fdatasync per group commit)", env!("CARGO_PKG_VERSION")))
    }

    fn durability(&self) -> &'static str {
        "synced: fdatasync before every acknowledgement"
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        let client = Client::connect(self.address.clone()).await?.with_retry(RetryPolicy::none());
        Ok(Box::new(QuipuConnection { client }))
    }

    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        dir_bytes(&self.data_dir)
    }
}

struct QuipuConnection {
    client: Client,
}

fn events(payloads: &[Vec<u8>]) -> Vec<NewEvent> {
    payloads.iter().map(|data| NewEvent::new("Happened", data.clone())).collect()
}

#[async_trait]
impl Connection for QuipuConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, payloads: &[Vec<u8>]) -> anyhow::Result<Appended> {
        match self.client.append(stream, ExpectedRevision::from_last(expected), events(payloads)).await {
            Ok(_) => Ok(Appended::Written),
            Err(quipu_client::Error::Conflict { .. }) => Ok(Appended::Conflict),
            Err(error) => Err(error.into()),
        }
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let append = writes.iter().fold(Append::new(), |append, (stream, _, payloads)| {
            append.stream(stream, ExpectedRevision::Any, events(payloads))
        });
        self.client.append_atomic(&append).await?;
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        Ok(self.client.load_stream(stream).await?.len())
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        let from = from.map(|f| f.parse::<u64>()).transpose()?;
        let events = self.client.read_all(from.or(Some(0)), Direction::Forwards, PAGE_EVENTS).await?;
        let next = (events.len() == PAGE_EVENTS as usize)
            .then(|| events.last().map(|e| (e.position + 1).to_string()))
            .flatten();
        Ok(Page { events: events.len(), next })
    }
}
