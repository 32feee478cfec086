//! Committed offsets of Kafka consumer groups, kept in the system stream
//! `$kafka-offsets`: one event per commit (`{"group", "offsets": [{"topic",
//! "partition", "offset", "metadata"}]}`), folded into memory on open, so
//! commits outlive restarts. An answer to OffsetCommit comes only once its
//! event is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, ProposedEvent, Revision, Store, StreamName,
};
use serde::{Deserialize, Serialize};

/// The system stream of committed offsets.
pub const OFFSETS_STREAM: &str = "$kafka-offsets";
const EVENT_TYPE: &str = "KafkaOffsetsCommitted";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the group reads next.
    pub offset: i64,
    /// The client's metadata string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    group: String,
    offsets: Vec<Committed>,
}

/// Why offsets could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] quipu_core::Error),
    /// A record of the stream does not decode.
    #[error("record {revision} of {OFFSETS_STREAM} does not decode: {reason}")]
    Corrupt {
        /// Its revision.
        revision: u64,
        /// The decoder's message.
        reason: String,
    },
}

/// Every group's committed offsets.
pub struct OffsetStore {
    store: Arc<Store>,
    stream: StreamName,
    committed: Mutex<HashMap<(String, String, i32), Committed>>,
}

impl OffsetStore {
    /// Reads `$kafka-offsets` of `store`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>) -> Result<OffsetStore, OffsetError> {
        let stream = StreamName::system(OFFSETS_STREAM).map_err(quipu_core::Error::from)?;
        let mut committed = HashMap::new();
        let mut next = Revision(0);
        loop {
            let page = match store.read_stream(&stream, Some(next), Direction::Forwards, 1000) {
                Err(quipu_core::Error::StreamNotFound { .. }) => Vec::new(),
                page => page?,
            };
            let Some(last) = page.last() else { break };
            next = last.revision.next();
            for event in &page {
                let commit: Commit = serde_json::from_slice(&event.data)
                    .map_err(|e| OffsetError::Corrupt { revision: event.revision.0, reason: e.to_string() })?;
                for offset in commit.offsets {
                    committed.insert((commit.group.clone(), offset.topic.clone(), offset.partition), offset);
                }
            }
        }
        Ok(OffsetStore { store, stream, committed: Mutex::new(committed) })
    }

    /// The offset `group` committed for the partition, if any.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        let committed = self.committed.lock().unwrap_or_else(PoisonError::into_inner);
        committed.get(&(group.to_string(), topic.to_string(), partition)).cloned()
    }

    /// Every offset `group` committed.
    pub fn of_group(&self, group: &str) -> Vec<Committed> {
        let committed = self.committed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut offsets: Vec<Committed> =
            committed.iter().filter(|((g, _, _), _)| g == group).map(|(_, c)| c.clone()).collect();
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        offsets
    }

    /// Commits `offsets` for `group` durably.
    ///
    /// # Errors
    /// Store errors; nothing is committed then.
    pub async fn commit(&self, group: &str, offsets: Vec<Committed>) -> Result<(), OffsetError> {
        let data =
            serde_json::to_vec(&Commit { group: group.to_string(), offsets: offsets.clone() }).unwrap_or_default();
        let event = ProposedEvent::new(EventType::new(EVENT_TYPE).map_err(quipu_core::Error::from)?, data);
        let request = AppendRequest::to_stream(self.stream.clone(), ExpectedRevision::Any, vec![event]);
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.store.submit(request, move |result| {
            let _ = reply.send(result);
        });
        match outcome.await.map_err(|_| quipu_core::Error::Closed)?? {
            AppendOutcome::Written(_) | AppendOutcome::AlreadyWritten(_) => {}
            AppendOutcome::Conflict(_) => unreachable!("an append expecting any revision does not conflict"),
        }
        let mut committed = self.committed.lock().unwrap_or_else(PoisonError::into_inner);
        for offset in offsets {
            committed.insert((group.to_string(), offset.topic.clone(), offset.partition), offset);
        }
        Ok(())
    }
}
