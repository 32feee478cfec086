//! Quipu through its own client (over the native transport, `quipu://`,
//! unless the address says `http://` for gRPC): a stream is a Quipu stream, an
//! append carries the exact expected revision, `$all` is the global log.
//! Durability: every append is fdatasync'ed before it is acknowledged
//! (the server's default). A catch-up is what a new Quipu subscriber
//! does: one subscription from position 0, which the server streams ahead
//! of the reader, counted in pages of [`PAGE_EVENTS`] until `CaughtUp`.

use std::path::PathBuf;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::StreamExt;
use quipu_client::{
    Append, Client, ExpectedRevision, NewEvent, Position, RetryPolicy, Revision, Start, Subscription, SubscriptionItem,
};

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// Events counted as one catch-up page.
const PAGE_EVENTS: u32 = 10_000;

/// A running `quipu serve`.
pub struct Quipu {
    /// Its address: `quipu://host:port` (native framing) or
    /// `http://host:port` (gRPC over HTTP/2); both are served on one port.
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
        let transport = if self.address.starts_with("quipu://") { "native transport" } else { "gRPC" };
        Ok(format!("quipu {} ({transport}, default options: fdatasync per group commit)", env!("CARGO_PKG_VERSION")))
    }

    fn durability(&self) -> &'static str {
        "synced: fdatasync before every acknowledgement"
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        let client = Client::connect(self.address.clone()).await?.with_retry(RetryPolicy::none());
        Ok(Box::new(QuipuConnection { client, catch_up: None }))
    }

    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        dir_bytes(&self.data_dir)
    }
}

struct QuipuConnection {
    client: Client,
    /// The subscription a catch-up reads, and the position it will yield
    /// next.
    catch_up: Option<(Subscription, Position)>,
}

fn events(payloads: &[Vec<u8>]) -> Vec<NewEvent> {
    payloads.iter().map(|data| NewEvent::new("Happened", data.clone())).collect()
}

#[async_trait]
impl Connection for QuipuConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, payloads: &[Vec<u8>]) -> anyhow::Result<Appended> {
        match self.client.append(stream, ExpectedRevision::from_last(expected.map(Revision)), events(payloads)).await {
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
        let from = Position(from.map(|f| f.parse::<u64>()).transpose()?.unwrap_or(0));
        let (mut subscription, mut next) = match self.catch_up.take() {
            Some((subscription, next)) if next == from => (subscription, next),
            _ => (self.client.subscribe(None, Start::Position(from)).await?, from),
        };
        let mut events = 0;
        while events < PAGE_EVENTS as usize {
            match subscription.next().await.context("the subscription ended before catching up")?? {
                SubscriptionItem::Event(event) => {
                    anyhow::ensure!(event.position >= next, "position {} came after {next}", event.position);
                    next = event.position.next();
                    events += 1;
                }
                SubscriptionItem::CaughtUp { .. } => return Ok(Page { events, next: None }),
            }
        }
        self.catch_up = Some((subscription, next));
        Ok(Page { events, next: Some(next.to_string()) })
    }
}
