//! Knobs of a store: log segment size, group-commit batching, the limits
//! every append and read is held to, and the index cache size. Defaults
//! are what `quipu serve` runs with.

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::Error;
use crate::event::STREAM_NAME_BYTES_MAX;
use crate::fault::FaultPlan;
use crate::log::record::{EVENT_OVERHEAD_BYTES_MAX, RECORD_OVERHEAD_BYTES, WRITE_OVERHEAD_BYTES};

const MIB: usize = 1024 * 1024;

/// Largest batch (one write) the log accepts at all; also the ceiling of
/// the torn-tail window on recovery.
pub const BATCH_BYTES_CEILING: usize = 64 * MIB;

/// Largest `preallocate_bytes`: recovery reads the zeros after the last
/// record to tell them from a torn write, so they stay small.
pub const PREALLOCATE_BYTES_CEILING: u64 = 64 * MIB as u64;

/// Largest `append_events_max`: index entries count events of a record
/// in 16 bits.
pub const APPEND_EVENTS_CEILING: usize = 65_535;

/// Whether an append waits for fdatasync before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fdatasync before acknowledging: acknowledged means durable. Default.
    #[default]
    Fsync,
    /// UNSAFE: acknowledge after the write reaches the OS; a power loss
    /// loses acknowledged appends. Only for throwaway data and tests.
    NoSyncUnsafe,
}

/// Largest `segment_size_bytes` (1 TiB): offsets in index entries stay
/// far below [`crate::index::entry::OFFSET_MAX`].
pub const SEGMENT_BYTES_CEILING: u64 = 1 << 40;

/// Configuration of a [`crate::Store`].
#[derive(Debug, Clone)]
pub struct Options {
    /// A segment file is closed and a new one started once it reaches this
    /// size (a batch is never split, so a segment may exceed it by one
    /// batch). Default 256 MiB, at most 1 TiB.
    pub segment_size_bytes: u64,
    /// Most bytes of encoded records written (and fdatasync'ed) as one
    /// group commit. Default 8 MiB.
    pub batch_bytes_max: usize,
    /// Most appends in one group commit. Default 4096.
    pub batch_appends_max: usize,
    /// How long the sequencer waits for more appends after the first one
    /// of a batch, in microseconds. Default 0: batches form naturally from
    /// appends that queued while the previous fdatasync ran.
    pub batch_delay_us: u64,
    /// Appends waiting for the sequencer before submitters block
    /// (back-pressure). Default 16384.
    pub queue_appends_max: usize,
    /// Largest single event (data, metadata, type, tags, id). Default 1 MiB.
    pub event_bytes_max: usize,
    /// Largest append (sum of its events). Default 4 MiB.
    pub append_bytes_max: usize,
    /// Most events in one append. Default 10,000, at most 65,535.
    pub append_events_max: usize,
    /// Most stream writes in one append. Default 10,000, as many as an
    /// append may have events: a Kafka producer's batch for one partition
    /// carries records of any number of keys, and the door writes it as one
    /// append (it was 256, and batches for more streams were refused).
    pub append_streams_max: usize,
    /// Most events one read returns. Default 10,000.
    pub read_events_max: usize,
    /// Block cache of the index's metadata store (snapshots), bytes.
    /// Default 16 MiB.
    pub index_cache_bytes: u64,
    /// Index entries held in memory before they are written out as a
    /// table (a single-event append alone adds five). Recovery after a
    /// crash indexes at most this much of the log again. Default 500,000.
    pub index_memtable_entries: usize,
    /// Memory the index's newest entries may take before they are
    /// written out as a table, bytes: a memtable is written out before
    /// its maps would grow past it (one group alone may exceed it). At
    /// most four memtables are held at once (one taking entries, the
    /// ones being written out, and one emptied for reuse). Default 48 MiB.
    pub index_memtable_bytes: u64,
    /// Stream heads the sequencer keeps in memory, so deciding an append
    /// to a stream written or read recently needs no index lookup (about
    /// 30 bytes each). They are kept in two generations of half this
    /// many, each in one hash table; a table of 2^20 slots holds at most
    /// 917,504, and 950,000 would need one twice the size. Default
    /// 1,800,000 (two generations of 900,000, 52 MB): a million streams
    /// written in turn all stay in it (at 900,000 none did, and each
    /// append of a fill over a million streams looked every head up in
    /// the index: 265,530 -> 651,684 events/s in `quipu-bench load`'s
    /// fill); 0 keeps none.
    pub head_cache_streams: usize,
    /// Zeros kept written ahead of the log's end, bytes: while the store
    /// is idle, the sequencer writes zeros past the last record (refilling
    /// once less than half is left), so the fdatasync of the next small
    /// appends overwrites allocated blocks and need not commit a new file
    /// size as well (on ext4 here: 142 µs instead of 205 µs). 0 turns it
    /// off; it is off in the unsafe sync mode. Default 1 MiB, at most 64 MiB.
    pub preallocate_bytes: u64,
    /// Durability of acknowledgements. Default [`SyncMode::Fsync`].
    pub sync: SyncMode,
    /// Source of commit timestamps.
    pub clock: Clock,
    /// Faults to inject into log I/O; tests only. Default none.
    pub fault_plan: Option<Arc<FaultPlan>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size_bytes: 256 * MIB as u64,
            batch_bytes_max: 8 * MIB,
            batch_appends_max: 4096,
            batch_delay_us: 0,
            queue_appends_max: 16384,
            event_bytes_max: MIB,
            append_bytes_max: 4 * MIB,
            append_events_max: 10_000,
            append_streams_max: 10_000,
            read_events_max: 10_000,
            index_cache_bytes: 16 * MIB as u64,
            index_memtable_entries: 500_000,
            index_memtable_bytes: 48 * MIB as u64,
            head_cache_streams: 1_800_000,
            preallocate_bytes: MIB as u64,
            sync: SyncMode::Fsync,
            clock: Clock::system(),
            fault_plan: None,
        }
    }
}

impl Options {
    /// Largest encoded record an append within the limits can produce.
    #[must_use]
    pub fn record_bytes_bound(&self) -> usize {
        RECORD_OVERHEAD_BYTES
            + self.append_streams_max * (WRITE_OVERHEAD_BYTES + STREAM_NAME_BYTES_MAX)
            + self.append_events_max * EVENT_OVERHEAD_BYTES_MAX
            + self.append_bytes_max
    }

    /// Checks that the options can work together.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the option that is out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidOptions { reason });
        if self.segment_size_bytes < 4096 {
            return invalid(format!("segment_size_bytes {} is below 4096", self.segment_size_bytes));
        }
        if self.segment_size_bytes > SEGMENT_BYTES_CEILING {
            return invalid(format!("segment_size_bytes {} is above {SEGMENT_BYTES_CEILING}", self.segment_size_bytes));
        }
        if self.batch_bytes_max > BATCH_BYTES_CEILING {
            return invalid(format!("batch_bytes_max {} is above {BATCH_BYTES_CEILING}", self.batch_bytes_max));
        }
        if self.record_bytes_bound() > self.batch_bytes_max {
            return invalid(format!(
                "batch_bytes_max {} cannot hold the largest append the limits allow ({} bytes encoded); \
                 raise it or lower append_bytes_max, append_events_max or append_streams_max",
                self.batch_bytes_max,
                self.record_bytes_bound()
            ));
        }
        if self.preallocate_bytes > PREALLOCATE_BYTES_CEILING {
            return invalid(format!(
                "preallocate_bytes {} is above {PREALLOCATE_BYTES_CEILING}",
                self.preallocate_bytes
            ));
        }
        if self.append_events_max > APPEND_EVENTS_CEILING {
            return invalid(format!("append_events_max {} is above {APPEND_EVENTS_CEILING}", self.append_events_max));
        }
        if self.event_bytes_max > self.append_bytes_max {
            return invalid("event_bytes_max is larger than append_bytes_max".into());
        }
        let counts = [
            ("batch_appends_max", self.batch_appends_max),
            ("queue_appends_max", self.queue_appends_max),
            ("append_events_max", self.append_events_max),
            ("append_streams_max", self.append_streams_max),
            ("read_events_max", self.read_events_max),
            ("index_memtable_entries", self.index_memtable_entries),
            ("index_memtable_bytes", usize::try_from(self.index_memtable_bytes).unwrap_or(usize::MAX)),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Options::default().validate().is_ok());
    }

    #[test]
    fn batch_must_hold_the_largest_append() {
        let options = Options { batch_bytes_max: MIB, ..Options::default() };
        assert!(matches!(options.validate(), Err(Error::InvalidOptions { .. })));
    }
}
