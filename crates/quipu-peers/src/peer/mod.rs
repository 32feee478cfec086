//! What the harness needs from each system it drives: open connections,
//! append with an expected revision, load one stream, read everything in
//! order, and tell its disk use. One module per system; each says how it
//! maps streams and revisions onto that system and at which durability
//! class it runs.

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
pub mod postgres;
pub mod quipu;
pub mod redis;
#[cfg(feature = "umadb")]
pub mod umadb;

use async_trait::async_trait;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (durably, at the system's stated durability class).
    Written,
    /// The expected revision did not hold; nothing was written.
    Conflict,
}

/// A page of a catch-up read: how many events came, and where the next
/// page starts (`None`: the end was reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Events in the page.
    pub events: usize,
    /// Where to read next; `None` at the end.
    pub next: Option<String>,
}

/// Events for one stream in a fill: the stream, the revision of the first
/// event, and the payloads.
pub type Fill = (String, u64, Vec<Vec<u8>>);

/// One system under test.
#[async_trait]
pub trait Peer: Send + Sync {
    /// Short name for tables (`quipu`, `postgres`...).
    fn name(&self) -> &'static str;

    /// Version and configuration, printed with the results.
    async fn describe(&self) -> anyhow::Result<String>;

    /// How durable an acknowledged write is, in words; starts with
    /// `synced` when the data is on disk before the acknowledgement.
    fn durability(&self) -> &'static str;

    /// Whether the system can load one stream on its own (a Kafka topic
    /// cannot: a key is not an index).
    fn loads_streams(&self) -> bool {
        true
    }

    /// Whether appends check an expected revision.
    fn checks_revisions(&self) -> bool {
        true
    }

    /// Creates what the system needs before the first write (a schema, a
    /// stream, a topic); runs once.
    async fn prepare(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// A new connection, for one writer or reader.
    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>>;

    /// Bytes the system uses on disk for what was written so far.
    async fn disk_bytes(&self) -> anyhow::Result<u64>;
}

/// One connection of one writer or reader.
#[async_trait]
pub trait Connection: Send {
    /// Appends `events` (payloads) to `stream`, whose last revision must be
    /// `expected` (`None`: the stream must not exist).
    async fn append(&mut self, stream: &str, expected: Option<u64>, events: &[Vec<u8>]) -> anyhow::Result<Appended>;

    /// Appends to many streams at once without checks, for filling the
    /// load store fast: each item is a stream, the revision its first
    /// event gets (what the stream already has), and its events.
    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()>;

    /// Every event of `stream`, in order; returns how many.
    async fn load(&mut self, stream: &str) -> anyhow::Result<usize>;

    /// A page of everything in write order, from `from` (`None`: the
    /// start).
    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page>;
}

/// Bytes of every file under `dir`.
///
/// # Errors
/// I/O errors other than a file vanishing while it is walked.
pub fn dir_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(anyhow::anyhow!("reading {}: {error}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Ok(total)
}
