//! The log record: one committed append ([`Commit`]) encoded as bytes, and
//! the frame around it (length and CRC32C) that lets recovery tell a whole
//! record from a torn or corrupt one.
//!
//! Frame: `[payload_len: u32 LE][crc32c(payload_len bytes ++ payload): u32 LE][payload]`.
//!
//! Payload, format version 2, all integers little-endian:
//! ```text
//! u8 version (2) | u8 kind (1 = commit) | u64 first_position | u64 recorded_at_us
//! u16 write_count, then per write:
//!   u16 stream_len, stream | u64 first_revision | u32 event_count, then per event:
//!     [16] id | u8 type_len, type | u32 data_len, data | u32 metadata_len, metadata
//!     u8 tag_count, then per tag: u8 tag_len, tag
//! directory, per kept event in log order:
//!   u32 event_offset | u32 write_offset | u32 event_crc
//! u32 directory_count
//! ```
//! The directory lets a read of one event go straight to it and check it
//! alone ([`event_alone`]) instead of the whole record's checksum: offsets
//! are from the payload's start, `write_offset` is where the event's write
//! begins, and `event_crc` is the CRC32C of the event's position,
//! revision, the record's `recorded_at_us`, its stream and its encoded
//! bytes (see [`event_crc`]), so everything a read of that event returns is
//! covered. Format version 1 is the same without the directory; it is
//! still read.
//! A commit holds what was decided (positions, revisions), not the
//! conditions, so replaying it can verify that the engine decides the
//! same way (see `crate::engine`).
//!
//! A record rewritten by a scavenge (see `crate::scavenge`) has kind 2:
//! each write then carries `u32 dropped` after `first_revision`, the
//! number of its leading events the scavenge removed, and its
//! `event_count` may be 0. The dropped events keep their positions and
//! revisions (nothing after them moves); only their bytes are gone.
//!
//! A commit applied from a cluster's shared log (see `docs/cluster.md`)
//! carries its [`Source`]: the kind has bit `0x10` set, and
//! `u64 epoch | u32 partition | i64 offset` follows `recorded_at_us`
//! (the write count and everything after move 20 bytes). Builds before it
//! refuse such a record as of an unknown kind.

use crate::append::{AppendResult, StreamResult};
use crate::event::{EventId, EventType, ProposedEvent, RecordedEvent, StreamName, Tag};
use crate::position::{Position, Revision};

/// Version of the record payload format written by this build.
pub const RECORD_FORMAT_VERSION: u8 = 2;
/// The earlier payload format, without the directory: still read.
const RECORD_FORMAT_VERSION_UNDIRECTED: u8 = 1;
const KIND_COMMIT: u8 = 1;
const KIND_SCAVENGED: u8 = 2;
/// Set in the kind of a record that carries its [`Source`].
const KIND_SOURCED: u8 = 0x10;
/// Bytes of an encoded [`Source`].
const SOURCE_BYTES: usize = 8 + 4 + 8;
/// Bytes of the frame header: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of the payload's fixed header: version, kind, first position,
/// timestamp and write count (a record with a [`Source`] has it in
/// between as well).
const PAYLOAD_HEADER_BYTES: usize = 1 + 1 + 8 + 8 + 2;
/// Bytes a record adds around its writes: frame, payload header (with a
/// source) and the directory's count.
pub const RECORD_OVERHEAD_BYTES: usize = FRAME_HEADER_BYTES + PAYLOAD_HEADER_BYTES + SOURCE_BYTES + 4;
/// Bytes of one directory entry: event offset, write offset, checksum.
const DIRECTORY_ENTRY_BYTES: usize = 12;
/// Bytes a write adds beyond its stream name and events.
pub const WRITE_OVERHEAD_BYTES: usize = 2 + 8 + 4;
/// Bytes an event's encoding adds beyond [`ProposedEvent::size_bytes`],
/// its directory entry included.
pub const EVENT_OVERHEAD_BYTES_MAX: usize = 1 + 4 + 4 + 1 + crate::event::EVENT_TAGS_MAX + DIRECTORY_ENTRY_BYTES;

/// Events of one stream within a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitWrite {
    /// The stream.
    pub stream: StreamName,
    /// Revision given to the first event the write had.
    pub first_revision: Revision,
    /// Leading events a scavenge removed (0 for a commit as written):
    /// they held revisions `first_revision..first_revision + dropped`.
    pub dropped: u32,
    /// The events kept, at consecutive revisions after the dropped ones.
    pub events: Vec<ProposedEvent>,
}

impl CommitWrite {
    /// A write as decided: nothing dropped.
    #[must_use]
    pub fn new(stream: StreamName, first_revision: Revision, events: Vec<ProposedEvent>) -> CommitWrite {
        CommitWrite { stream, first_revision, dropped: 0, events }
    }

    /// Events the write had when it was committed, dropped ones included.
    #[must_use]
    pub fn span(&self) -> u64 {
        u64::from(self.dropped) + self.events.len() as u64
    }

    /// Revision of the write's last event (kept or dropped).
    #[must_use]
    pub fn last_revision(&self) -> Revision {
        assert!(self.span() > 0, "a write holds at least one event");
        Revision(self.first_revision.0 + self.span() - 1)
    }

    /// Revision of the first kept event.
    #[must_use]
    pub fn first_kept_revision(&self) -> Revision {
        Revision(self.first_revision.0 + u64::from(self.dropped))
    }
}

/// Where the request of a commit applied from a cluster's shared log came
/// from: its key in the merged order of the topic's partitions (see
/// `docs/cluster.md`). It is written in the commit's own record, so what a
/// node applied and how far it got are one atomic write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// Its partition's epoch.
    pub epoch: u64,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: i64,
}

/// One accepted append, as stored in the log: every event with its place.
/// Events take consecutive positions from `first_position`, in write order
/// (a write's dropped events included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Position of the first event.
    pub first_position: Position,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
    /// Where its request came from, when it was applied from a cluster's
    /// shared log; `None` for an append taken by this store alone.
    pub source: Option<Source>,
    /// Writes that carry events, in request order.
    pub writes: Vec<CommitWrite>,
}

impl Commit {
    /// Number of events the commit still holds (without dropped ones).
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|w| w.events.len()).sum()
    }

    /// Number of positions the commit took when it was written.
    #[must_use]
    pub fn span(&self) -> u64 {
        self.writes.iter().map(CommitWrite::span).sum()
    }

    /// Whether a scavenge removed events from the commit.
    #[must_use]
    pub fn is_scavenged(&self) -> bool {
        self.writes.iter().any(|w| w.dropped > 0)
    }

    /// The position after the commit's last event.
    #[must_use]
    pub fn next_position(&self) -> Position {
        Position(self.first_position.0 + self.span())
    }

    /// What the append that wrote this commit was told.
    #[must_use]
    pub fn result(&self) -> AppendResult {
        debug_assert!(self.span() > 0, "a commit holds at least one event");
        AppendResult {
            first_position: self.first_position,
            last_position: Position(self.next_position().0.saturating_sub(1)),
            streams: self
                .writes
                .iter()
                .map(|w| StreamResult {
                    stream: w.stream.clone(),
                    first_revision: w.first_revision,
                    last_revision: w.last_revision(),
                })
                .collect(),
            recorded_at_us: self.recorded_at_us,
        }
    }

    /// Every event with its stream, revision and position, in log order.
    pub fn recorded_events(&self) -> impl Iterator<Item = RecordedEvent> + '_ {
        (0..self.event_count()).filter_map(|index| self.recorded_event(u32::try_from(index).ok()?))
    }

    /// Every kept event in log order, taken out of the commit (no copy of
    /// their data): the same events as [`Commit::recorded_events`].
    pub fn into_recorded_events(self) -> impl Iterator<Item = RecordedEvent> {
        let (mut position, recorded_at_us) = (self.first_position.0, self.recorded_at_us);
        self.writes.into_iter().flat_map(move |write| {
            let first_revision = write.first_kept_revision().0;
            let first_position = position + u64::from(write.dropped);
            position = first_position + write.events.len() as u64;
            let CommitWrite { stream, events, .. } = write;
            events.into_iter().zip(0u64..).map(move |(event, offset)| RecordedEvent {
                id: event.id,
                stream: stream.clone(),
                revision: Revision(first_revision + offset),
                position: Position(first_position + offset),
                event_type: event.event_type,
                data: event.data,
                metadata: event.metadata,
                tags: event.tags,
                recorded_at_us,
            })
        })
    }

    /// The `index`th kept event (0-based, in log order) of the commit.
    #[must_use]
    pub fn recorded_event(&self, index: u32) -> Option<RecordedEvent> {
        let mut skip = index as usize;
        let mut position = self.first_position.0;
        for write in &self.writes {
            position += u64::from(write.dropped);
            if let Some(event) = write.events.get(skip) {
                return Some(RecordedEvent {
                    id: event.id,
                    stream: write.stream.clone(),
                    revision: Revision(write.first_kept_revision().0 + skip as u64),
                    position: Position(position + skip as u64),
                    event_type: event.event_type.clone(),
                    data: event.data.clone(),
                    metadata: event.metadata.clone(),
                    tags: event.tags.clone(),
                    recorded_at_us: self.recorded_at_us,
                });
            }
            skip -= write.events.len();
            position += write.events.len() as u64;
        }
        None
    }

    /// Appends the framed record to `out`; returns the bytes added.
    pub fn encode_framed(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        self.encode_payload(out);
        let payload_len = u32::try_from(out.len() - start - FRAME_HEADER_BYTES)
            .expect("records are bounded by batch_bytes_max, far below 4 GiB");
        let len_bytes = payload_len.to_le_bytes();
        let payload = out.get(start + FRAME_HEADER_BYTES..).unwrap_or_default();
        debug_assert_eq!(
            Commit::decode(payload).as_ref(),
            Ok(self),
            "a record decodes to the commit it was encoded from"
        );
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
        let mut header = [0u8; FRAME_HEADER_BYTES];
        let (len_part, crc_part) = header.split_at_mut(4);
        len_part.copy_from_slice(&len_bytes);
        crc_part.copy_from_slice(&crc.to_le_bytes());
        out.splice(start..start + FRAME_HEADER_BYTES, header);
        out.len() - start
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        let payload_start = out.len();
        let scavenged = self.is_scavenged();
        out.push(RECORD_FORMAT_VERSION);
        let kind = if scavenged { KIND_SCAVENGED } else { KIND_COMMIT };
        out.push(if self.source.is_some() { kind | KIND_SOURCED } else { kind });
        out.extend_from_slice(&self.first_position.0.to_le_bytes());
        out.extend_from_slice(&self.recorded_at_us.to_le_bytes());
        if let Some(source) = self.source {
            out.extend_from_slice(&source.epoch.to_le_bytes());
            out.extend_from_slice(&source.partition.to_le_bytes());
            out.extend_from_slice(&source.offset.to_le_bytes());
        }
        out.extend_from_slice(&count_u16(self.writes.len()).to_le_bytes());
        for write in &self.writes {
            put_bytes_u16(out, write.stream.as_str().as_bytes());
            out.extend_from_slice(&write.first_revision.0.to_le_bytes());
            if scavenged {
                out.extend_from_slice(&write.dropped.to_le_bytes());
            }
            out.extend_from_slice(&(write.events.len() as u32).to_le_bytes());
            for event in &write.events {
                encode_event(out, event);
            }
        }
        self.encode_directory(out, payload_start);
    }

    /// Appends the directory of the writes encoded from `payload_start`:
    /// walks them again by their encoded lengths, checksumming each event
    /// where it lies.
    fn encode_directory(&self, out: &mut Vec<u8>, payload_start: usize) {
        let scavenged = self.is_scavenged();
        let mut at = payload_start + self.header_bytes();
        let mut position = self.first_position.0;
        let mut count = 0u32;
        for write in &self.writes {
            let write_offset = offset_u32(at - payload_start);
            let stream = write.stream.as_str().as_bytes();
            at += WRITE_OVERHEAD_BYTES + stream.len() + if scavenged { 4 } else { 0 };
            position += u64::from(write.dropped);
            let first_revision = write.first_kept_revision().0;
            for (rank, event) in (0u64..).zip(&write.events) {
                let end = at + encoded_event_bytes(event);
                let place = EventPlace { position: position + rank, revision: first_revision + rank };
                let crc = event_crc(place, self.recorded_at_us, stream, out.get(at..end).unwrap_or_default());
                out.extend_from_slice(&offset_u32(at - payload_start).to_le_bytes());
                out.extend_from_slice(&write_offset.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
                at = end;
                count += 1;
            }
            position += write.events.len() as u64;
        }
        assert_eq!(
            at,
            out.len() - count as usize * DIRECTORY_ENTRY_BYTES,
            "the directory walk ends where the writes' encoding ended"
        );
        out.extend_from_slice(&count.to_le_bytes());
    }

    /// Bytes of its payload's header.
    fn header_bytes(&self) -> usize {
        PAYLOAD_HEADER_BYTES + if self.source.is_some() { SOURCE_BYTES } else { 0 }
    }

    /// Decodes a payload (without its frame).
    ///
    /// # Errors
    /// A description of the first thing that is not as the format says.
    pub fn decode(payload: &[u8]) -> Result<Commit, String> {
        let header = read_header(&mut Reader { bytes: payload })?;
        let (writes_end, directory) =
            if header.directed { split_directory(payload)? } else { (payload.len(), &[][..]) };
        let writes_part = payload.get(..writes_end).unwrap_or_default();
        let mut reader = Reader { bytes: writes_part.get(header.bytes..).unwrap_or_default() };
        let mut entries = directory.chunks_exact(DIRECTORY_ENTRY_BYTES);
        let mut writes = Vec::with_capacity(usize::from(header.write_count).min(1024));
        for _ in 0..header.write_count {
            let write_offset = writes_end - reader.bytes.len();
            let mut listed = Ok(());
            let write = decode_write(&mut reader, header.scavenged, |left| {
                let found = (writes_end - left, write_offset);
                if listed.is_ok() {
                    listed = check_entry(entries.next(), found, header.directed);
                }
            })?;
            listed?;
            writes.push(write);
        }
        if !reader.bytes.is_empty() {
            return Err(format!("{} bytes left after the last write", reader.bytes.len()));
        }
        if entries.next().is_some() {
            return Err("the directory lists more events than the writes hold".to_owned());
        }
        Ok(Commit {
            first_position: Position(header.first_position),
            recorded_at_us: header.recorded_at_us,
            source: header.source,
            writes,
        })
    }
}

/// Splits a format 2 payload into where its writes end and its directory
/// (without the count), by the count at its end.
fn split_directory(payload: &[u8]) -> Result<(usize, &[u8]), String> {
    let count_at = payload.len().checked_sub(4).ok_or("no room for the directory's count")?;
    let count = u32::from_le_bytes(payload.get(count_at..).unwrap_or_default().try_into().unwrap_or_default());
    let directory_start = (count as usize)
        .checked_mul(DIRECTORY_ENTRY_BYTES)
        .and_then(|bytes| count_at.checked_sub(bytes))
        .filter(|start| *start >= PAYLOAD_HEADER_BYTES)
        .ok_or_else(|| format!("a directory of {count} events does not fit in {} bytes", payload.len()))?;
    Ok((directory_start, payload.get(directory_start..count_at).unwrap_or_default()))
}

/// Checks that the next directory entry lists an event where the writes
/// have it (`found`: event and write offsets); a format 1 record has none.
fn check_entry(entry: Option<&[u8]>, found: (usize, usize), directed: bool) -> Result<(), String> {
    if !directed {
        return Ok(());
    }
    let entry = entry.ok_or("the directory lists fewer events than the writes hold")?;
    let field = |k| entry_field(entry, k).unwrap_or(u32::MAX) as usize;
    let listed = (field(0), field(1));
    if listed != found {
        return Err(format!(
            "the directory lists an event at {} in the write at {}, the writes have it at {} in {}",
            listed.0, listed.1, found.0, found.1
        ));
    }
    Ok(())
}

/// Field `k` of a directory entry: 0 the event's offset, 1 its write's,
/// 2 its checksum.
fn entry_field(entry: &[u8], k: usize) -> Option<u32> {
    entry.get(4 * k..4 * k + 4)?.try_into().ok().map(u32::from_le_bytes)
}

/// Where an event was placed: what its checksum covers beside its bytes.
#[derive(Debug, Clone, Copy)]
struct EventPlace {
    position: u64,
    revision: u64,
}

/// The checksum of one event in its record: CRC32C of its position,
/// revision, the record's timestamp, its stream (length-prefixed) and its
/// encoded bytes, so a read of the event alone checks all it returns.
fn event_crc(place: EventPlace, recorded_at_us: u64, stream: &[u8], event: &[u8]) -> u32 {
    let mut context = [0u8; 26];
    let (numbers, stream_len) = context.split_at_mut(24);
    for (slot, value) in numbers.chunks_exact_mut(8).zip([place.position, place.revision, recorded_at_us]) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
    stream_len.copy_from_slice(&count_u16(stream.len()).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&context), stream);
    crc32c::crc32c_append(crc, event)
}

/// The `index`th event of the framed record at the start of `bytes`,
/// checked by its own checksum (its directory entry) instead of the whole
/// record's: what a read of one event of a large record needs. `None`
/// when that cannot be done or does not check out: a record of format 1,
/// one a scavenge rewrote, a directory or event that fails its checks, an
/// index beyond the record's events. The caller then checks the whole
/// record ([`parse_frame`]), which tells a corrupt record from one that
/// does not hold the event.
#[must_use]
pub fn event_alone(bytes: &[u8], index: u32, payload_bytes_max: usize) -> Option<RecordedEvent> {
    let mut out = Vec::with_capacity(1);
    events_alone(bytes, index, 1, payload_bytes_max, &mut out)?;
    out.pop()
}

/// Appends to `out` up to `max` events of the framed record at the start
/// of `bytes`, from its `first`th (in log order), and returns how many:
/// what a page of `$all` that starts or ends inside a large record needs,
/// without building the events it does not take. Each is checked by its
/// own checksum as [`event_alone`] checks one, or, when they are at least
/// half of the record's and the record's checksum holds, all by that.
/// `None`, with `out` as it was, when [`event_alone`] would give `None`
/// for any of them; a `first` beyond the record's events takes none.
#[must_use]
pub fn events_alone(
    bytes: &[u8],
    first: u32,
    max: usize,
    payload_bytes_max: usize,
    out: &mut Vec<RecordedEvent>,
) -> Option<usize> {
    let before = out.len();
    let taken = directed_events(bytes, first, max, payload_bytes_max, out);
    if taken.is_none() {
        out.truncate(before);
    }
    taken
}

/// The write an event of a directed record belongs to, as read at its
/// offset.
struct DirectedWrite<'a> {
    offset: usize,
    /// Its stream's bytes (what the events' checksums cover) and name.
    stream_bytes: &'a [u8],
    stream: StreamName,
    first_revision: u64,
    event_count: u32,
    /// Index in the record of its first event.
    first_index: u32,
}

/// The body of [`events_alone`]; may leave part of a page in `out` when
/// it gives `None`.
fn directed_events(
    bytes: &[u8],
    first: u32,
    max: usize,
    payload_bytes_max: usize,
    out: &mut Vec<RecordedEvent>,
) -> Option<usize> {
    let (len_bytes, stored_crc, payload) = unchecked_frame(bytes, payload_bytes_max).ok()?;
    let header = read_header(&mut Reader { bytes: payload }).ok()?;
    if !header.directed || header.scavenged {
        return None;
    }
    let (directory_start, directory) = split_directory(payload).ok()?;
    let entry = |n: u32| -> Option<(usize, usize, u32)> {
        let at = n as usize * DIRECTORY_ENTRY_BYTES;
        let entry = directory.get(at..at + DIRECTORY_ENTRY_BYTES)?;
        Some((entry_field(entry, 0)? as usize, entry_field(entry, 1)? as usize, entry_field(entry, 2)?))
    };
    let count = u32::try_from(directory.len() / DIRECTORY_ENTRY_BYTES).ok()?;
    let end = u64::from(first).saturating_add(max as u64).min(u64::from(count));
    if max > 0 && u64::from(first) >= end {
        // Nothing to take, on the word of the directory's count alone: no
        // event's checksum vouches for it, the record's must.
        let intact = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) == stored_crc;
        return intact.then_some(0);
    }
    // Taking most of the record, one checksum over all of it costs less
    // than one per event (three short CRC32C runs each); when it fails,
    // each event is checked alone, so damage elsewhere spares it.
    let whole = 2 * end.saturating_sub(u64::from(first)) >= u64::from(count)
        && crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) == stored_crc;
    let mut write: Option<DirectedWrite<'_>> = None;
    let mut taken = 0;
    for index in first..u32::try_from(end).ok()? {
        let (event_offset, write_offset, crc) = entry(index)?;
        if write.as_ref().is_none_or(|w| w.offset != write_offset) {
            // Entries of one write are consecutive: a write met first
            // inside the page began where the previous one ended.
            let first_index = if write.is_some() { index } else { first_entry_of(&entry, index, write_offset)? };
            write = Some(read_directed_write(payload.get(..directory_start)?, write_offset, first_index)?);
        }
        let write = write.as_ref()?;
        let rank = index - write.first_index;
        if rank >= write.event_count {
            return None;
        }
        let event_bytes = payload.get(event_offset..directory_start)?;
        let mut reader = Reader { bytes: event_bytes };
        let event = decode_event(&mut reader).ok()?;
        let event_bytes = event_bytes.get(..event_bytes.len() - reader.bytes.len())?;
        let place = EventPlace {
            position: header.first_position.checked_add(u64::from(index))?,
            revision: write.first_revision.checked_add(u64::from(rank))?,
        };
        if !whole && event_crc(place, header.recorded_at_us, write.stream_bytes, event_bytes) != crc {
            return None;
        }
        out.push(RecordedEvent {
            id: event.id,
            stream: write.stream.clone(),
            revision: Revision(place.revision),
            position: Position(place.position),
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
            tags: event.tags,
            recorded_at_us: header.recorded_at_us,
        });
        taken += 1;
    }
    Some(taken)
}

/// The index of the first directory entry of the write at `write_offset`,
/// searching back from entry `index` (one of that write's).
fn first_entry_of(entry: &impl Fn(u32) -> Option<(usize, usize, u32)>, index: u32, write_offset: usize) -> Option<u32> {
    let (mut low, mut high) = (0, index);
    while low < high {
        let middle = low + (high - low) / 2;
        if entry(middle)?.1 < write_offset {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Some(low)
}

/// The head of the write at `offset` of a directed record's `writes`.
fn read_directed_write(writes: &[u8], offset: usize, first_index: u32) -> Option<DirectedWrite<'_>> {
    let mut reader = Reader { bytes: writes.get(offset..)? };
    let stream_len = usize::from(reader.u16().ok()?);
    let stream_bytes = reader.take(stream_len).ok()?;
    let first_revision = reader.u64().ok()?;
    let event_count = reader.u32().ok()?;
    let stream = StreamName::readable(std::str::from_utf8(stream_bytes).ok()?.to_owned()).ok()?;
    Some(DirectedWrite { offset, stream_bytes, stream, first_revision, event_count, first_index })
}

/// Decodes only the `index`th event (in log order) of a payload, skipping
/// over the others without building them: what a read of one event of a
/// large record needs.
///
/// # Errors
/// A description of the first thing that is not as the format says, or an
/// `index` beyond the record's events.
pub fn decode_event_at(payload: &[u8], index: u32) -> Result<RecordedEvent, String> {
    let mut reader = Reader { bytes: payload };
    let header = read_header(&mut reader)?;
    let mut skip = index;
    let mut position = header.first_position;
    for _ in 0..header.write_count {
        let stream_len = usize::from(reader.u16()?);
        let stream = reader.take(stream_len)?;
        let mut first_revision = reader.u64()?;
        if header.scavenged {
            let dropped = reader.u32()?;
            first_revision += u64::from(dropped);
            position += u64::from(dropped);
        }
        let event_count = reader.u32()?;
        if skip >= event_count {
            for _ in 0..event_count {
                skip_event(&mut reader)?;
            }
            skip -= event_count;
            position += u64::from(event_count);
            continue;
        }
        for _ in 0..skip {
            skip_event(&mut reader)?;
        }
        let event = decode_event(&mut reader)?;
        let stream = std::str::from_utf8(stream).map_err(|_| "stream name is not UTF-8".to_owned())?;
        return Ok(RecordedEvent {
            id: event.id,
            stream: StreamName::readable(stream.to_owned()).map_err(|e| e.to_string())?,
            revision: Revision(first_revision + u64::from(skip)),
            position: Position(position + u64::from(skip)),
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
            tags: event.tags,
            recorded_at_us: header.recorded_at_us,
        });
    }
    Err(format!("the record has no event {index}"))
}

/// The fields at the start of a payload.
struct PayloadHeader {
    /// Format 2: a directory follows the writes.
    directed: bool,
    scavenged: bool,
    first_position: u64,
    recorded_at_us: u64,
    source: Option<Source>,
    write_count: u16,
    /// Its length: where the writes start.
    bytes: usize,
}

/// Reads the payload header, checking version and kind.
fn read_header(reader: &mut Reader<'_>) -> Result<PayloadHeader, String> {
    let directed = match reader.u8()? {
        RECORD_FORMAT_VERSION => true,
        RECORD_FORMAT_VERSION_UNDIRECTED => false,
        version => return Err(format!("unknown record format version {version}")),
    };
    let kind = reader.u8()?;
    let scavenged = match kind & !KIND_SOURCED {
        KIND_COMMIT => false,
        KIND_SCAVENGED => true,
        _ => return Err(format!("unknown record kind {kind}")),
    };
    let sourced = kind & KIND_SOURCED != 0;
    if sourced && !directed {
        return Err(format!("record kind {kind} in format version 1"));
    }
    let first_position = reader.u64()?;
    let recorded_at_us = reader.u64()?;
    let source = if sourced {
        Some(Source { epoch: reader.u64()?, partition: reader.u32()?, offset: reader.u64()?.cast_signed() })
    } else {
        None
    };
    Ok(PayloadHeader {
        directed,
        scavenged,
        first_position,
        recorded_at_us,
        source,
        write_count: reader.u16()?,
        bytes: PAYLOAD_HEADER_BYTES + if sourced { SOURCE_BYTES } else { 0 },
    })
}

fn skip_event(reader: &mut Reader<'_>) -> Result<(), String> {
    reader.take(16)?;
    let type_len = usize::from(reader.u8()?);
    reader.take(type_len)?;
    let data_len = reader.u32()? as usize;
    reader.take(data_len)?;
    let metadata_len = reader.u32()? as usize;
    reader.take(metadata_len)?;
    for _ in 0..reader.u8()? {
        let tag_len = usize::from(reader.u8()?);
        reader.take(tag_len)?;
    }
    Ok(())
}

/// Bytes [`encode_event`] writes for `event`.
fn encoded_event_bytes(event: &ProposedEvent) -> usize {
    let tags: usize = event.tags.iter().map(|tag| 1 + tag.as_str().len()).sum();
    16 + 1 + event.event_type.as_str().len() + 4 + event.data.len() + 4 + event.metadata.len() + 1 + tags
}

fn offset_u32(offset: usize) -> u32 {
    u32::try_from(offset).expect("records are bounded by batch_bytes_max, far below 4 GiB")
}

fn count_u16(count: usize) -> u16 {
    u16::try_from(count).expect("write count is bounded by append_streams_max")
}

fn encode_event(out: &mut Vec<u8>, event: &ProposedEvent) {
    out.extend_from_slice(event.id.as_bytes());
    put_bytes_u8(out, event.event_type.as_str().as_bytes());
    put_bytes_u32(out, &event.data);
    put_bytes_u32(out, &event.metadata);
    out.push(u8::try_from(event.tags.len()).expect("tags are bounded by EVENT_TAGS_MAX"));
    for tag in &event.tags {
        put_bytes_u8(out, tag.as_str().as_bytes());
    }
}

fn put_bytes_u8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("labels are bounded by LABEL_BYTES_MAX"));
    out.extend_from_slice(bytes);
}

fn put_bytes_u16(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&count_u16(bytes.len()).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("events are bounded by event_bytes_max");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes one write; `at_event` is told, before each event, how many
/// bytes are left from where it starts (the caller knows the total).
fn decode_write(
    reader: &mut Reader<'_>,
    scavenged: bool,
    mut at_event: impl FnMut(usize),
) -> Result<CommitWrite, String> {
    let stream_len = usize::from(reader.u16()?);
    let stream = StreamName::readable(reader.text(stream_len)?).map_err(|e| e.to_string())?;
    let first_revision = Revision(reader.u64()?);
    let dropped = if scavenged { reader.u32()? } else { 0 };
    let event_count = reader.u32()?;
    if event_count == 0 && dropped == 0 {
        return Err(format!("write to {stream} holds no events"));
    }
    let mut events = Vec::with_capacity((event_count as usize).min(1024));
    for _ in 0..event_count {
        at_event(reader.bytes.len());
        events.push(decode_event(reader)?);
    }
    Ok(CommitWrite { stream, first_revision, dropped, events })
}

fn decode_event(reader: &mut Reader<'_>) -> Result<ProposedEvent, String> {
    let id = EventId(uuid::Uuid::from_bytes(reader.array()?));
    let type_len = usize::from(reader.u8()?);
    let event_type = EventType::new(reader.text(type_len)?).map_err(|e| e.to_string())?;
    let data_len = reader.u32()? as usize;
    let data = reader.take(data_len)?.to_vec();
    let metadata_len = reader.u32()? as usize;
    let metadata = reader.take(metadata_len)?.to_vec();
    let tag_count = reader.u8()?;
    let mut tags = Vec::with_capacity(usize::from(tag_count));
    for _ in 0..tag_count {
        let tag_len = usize::from(reader.u8()?);
        tags.push(Tag::new(reader.text(tag_len)?).map_err(|e| e.to_string())?);
    }
    Ok(ProposedEvent { id, event_type, data, metadata, tags })
}

/// Bounds-checked cursor over a payload: every read says what was missing.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.bytes.len() {
            return Err(format!("needs {len} more bytes, only {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn text(&mut self, len: usize) -> Result<String, String> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "text is not UTF-8".to_owned())
    }
}

/// What is at an offset of a segment, as far as the frame can tell.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record whose checksum matches.
    Valid {
        /// The payload.
        payload: &'a [u8],
        /// Frame header plus payload bytes.
        len: usize,
    },
    /// Fewer bytes than the frame needs: the end of the data.
    Truncated,
    /// Bytes that are not a valid frame.
    Invalid(String),
}

/// Reads the frame at the start of `bytes`; `payload_bytes_max` bounds a
/// plausible length so garbage is not taken as a huge record.
#[must_use]
pub fn parse_frame(bytes: &[u8], payload_bytes_max: usize) -> Frame<'_> {
    let (len_bytes, stored_crc, payload) = match unchecked_frame(bytes, payload_bytes_max) {
        Ok(parts) => parts,
        Err(frame) => return frame,
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if crc != stored_crc {
        return Frame::Invalid("checksum mismatch".into());
    }
    Frame::Valid { payload, len: FRAME_HEADER_BYTES + payload.len() }
}

/// The frame at the start of `bytes` as its length bytes, stored checksum
/// and payload, the checksum not yet checked; what [`parse_frame`] says
/// of it when it is not whole or its length is implausible.
fn unchecked_frame(bytes: &[u8], payload_bytes_max: usize) -> Result<([u8; 4], u32, &[u8]), Frame<'_>> {
    let Some(header) = bytes.get(..FRAME_HEADER_BYTES) else {
        return Err(Frame::Truncated);
    };
    let (len_part, crc_part) = header.split_at(4);
    let mut len_bytes = [0; 4];
    len_bytes.copy_from_slice(len_part);
    let mut crc_bytes = [0; 4];
    crc_bytes.copy_from_slice(crc_part);
    let payload_len = u32::from_le_bytes(len_bytes) as usize;
    if payload_len == 0 || payload_len > payload_bytes_max {
        return Err(Frame::Invalid(format!("implausible record length {payload_len}")));
    }
    let Some(payload) = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len) else {
        return Err(Frame::Truncated);
    };
    Ok((len_bytes, u32::from_le_bytes(crc_bytes), payload))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9:_]{0,20}"
    }

    fn event() -> impl Strategy<Value = ProposedEvent> {
        (
            any::<u128>(),
            label(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::btree_set(label(), 0..4),
        )
            .prop_map(|(id, event_type, data, metadata, tags)| ProposedEvent {
                id: EventId(uuid::Uuid::from_u128(id)),
                event_type: EventType::new(event_type).expect("strategy makes valid types"),
                data,
                metadata,
                tags: tags.into_iter().map(|t| Tag::new(t).expect("strategy makes valid tags")).collect(),
            })
    }

    fn commit() -> impl Strategy<Value = Commit> {
        let write = (label(), any::<u32>(), 0..3u32, proptest::collection::vec(event(), 0..5))
            .prop_filter("a write holds at least one event", |(_, _, dropped, events)| {
                *dropped > 0 || !events.is_empty()
            })
            .prop_map(|(stream, first_revision, dropped, events)| CommitWrite {
                stream: StreamName::new(stream).expect("strategy makes valid names"),
                first_revision: Revision(u64::from(first_revision)),
                dropped,
                events,
            });
        let source = proptest::option::of((any::<u64>(), any::<u32>(), any::<i64>()))
            .prop_map(|s| s.map(|(epoch, partition, offset)| Source { epoch, partition, offset }));
        (any::<u64>(), any::<u64>(), source, proptest::collection::vec(write, 1..4)).prop_map(
            |(first_position, recorded_at_us, source, writes)| Commit {
                first_position: Position(first_position >> 8),
                recorded_at_us,
                source,
                writes,
            },
        )
    }

    /// A commit as written: no write has dropped events.
    fn written_commit() -> impl Strategy<Value = Commit> {
        commit()
            .prop_map(|mut commit| {
                commit.writes.retain(|write| !write.events.is_empty());
                commit.writes.iter_mut().for_each(|write| write.dropped = 0);
                commit
            })
            .prop_filter("a commit holds at least one write", |commit| !commit.writes.is_empty())
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity_and_reencodes_to_same_bytes(commit in commit()) {
            let mut bytes = Vec::new();
            let len = commit.encode_framed(&mut bytes);
            prop_assert_eq!(len, bytes.len());
            let Frame::Valid { payload, len: frame_len } = parse_frame(&bytes, usize::MAX) else {
                return Err(TestCaseError::fail("frame of a fresh encoding must be valid"));
            };
            prop_assert_eq!(frame_len, bytes.len());
            let decoded = Commit::decode(payload).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&decoded, &commit);
            let mut again = Vec::new();
            decoded.encode_framed(&mut again);
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn one_event_decodes_like_the_whole_record(commit in commit()) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            let payload = &bytes[FRAME_HEADER_BYTES..];
            for (index, event) in commit.recorded_events().enumerate() {
                prop_assert_eq!(decode_event_at(payload, index as u32), Ok(event));
            }
            prop_assert!(decode_event_at(payload, commit.event_count() as u32).is_err());
            let taken: Vec<RecordedEvent> = commit.clone().into_recorded_events().collect();
            prop_assert_eq!(taken, commit.recorded_events().collect::<Vec<_>>());
        }

        #[test]
        fn any_flipped_bit_is_detected(commit in commit(), bit in any::<proptest::sample::Index>()) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let frame = parse_frame(&bytes, 1 << 20);
            prop_assert!(!matches!(frame, Frame::Valid { .. }), "flipped bit {} went unnoticed", bit);
        }

        #[test]
        fn each_event_reads_alone_as_in_the_whole_record(commit in commit()) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            for (index, event) in commit.recorded_events().enumerate() {
                let alone = event_alone(&bytes, index as u32, usize::MAX);
                // A scavenged record is read whole: its positions skip the dropped events.
                let expected = (!commit.is_scavenged()).then_some(event);
                prop_assert_eq!(alone, expected);
            }
            prop_assert_eq!(event_alone(&bytes, commit.event_count() as u32, usize::MAX), None);
        }

        #[test]
        fn a_flipped_bit_never_gives_a_wrong_event_alone(
            commit in written_commit(),
            bit in any::<proptest::sample::Index>(),
            event in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let index = event.index(commit.event_count()) as u32;
            if let Some(read) = event_alone(&bytes, index, 1 << 20) {
                prop_assert_eq!(Some(read), commit.recorded_event(index), "flipped bit {}", bit);
            }
        }

        #[test]
        fn any_run_of_events_reads_alone_as_in_the_whole_record(
            commit in written_commit(),
            first in 0..24u32,
            max in 0..24usize,
        ) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            let whole: Vec<RecordedEvent> = commit.recorded_events().skip(first as usize).take(max).collect();
            let mut out = vec![commit.recorded_events().next().expect("a written commit has events")];
            let taken = events_alone(&bytes, first, max, usize::MAX, &mut out);
            prop_assert_eq!(taken, Some(whole.len()));
            prop_assert_eq!(&out[1..], &whole[..], "after what `out` held");
        }

        #[test]
        fn a_flipped_bit_never_gives_a_wrong_run_of_events(
            commit in written_commit(),
            bit in any::<proptest::sample::Index>(),
            first in 0..24u32,
        ) {
            let mut bytes = Vec::new();
            commit.encode_framed(&mut bytes);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let mut out = Vec::new();
            match events_alone(&bytes, first, usize::MAX, 1 << 20, &mut out) {
                Some(taken) => {
                    let whole: Vec<RecordedEvent> = commit.recorded_events().skip(first as usize).collect();
                    prop_assert_eq!(taken, out.len());
                    prop_assert_eq!(&out, &whole, "flipped bit {}", bit);
                }
                None => prop_assert!(out.is_empty(), "a refused run leaves nothing behind"),
            }
        }

        #[test]
        fn a_format_1_record_decodes_and_is_never_read_alone(commit in commit()) {
            // Format 1 came before sources.
            let commit = Commit { source: None, ..commit };
            let bytes = format_1(&commit);
            let Frame::Valid { payload, .. } = parse_frame(&bytes, usize::MAX) else {
                return Err(TestCaseError::fail("a format 1 frame is valid"));
            };
            prop_assert_eq!(&Commit::decode(payload).map_err(TestCaseError::fail)?, &commit);
            for (index, event) in commit.recorded_events().enumerate() {
                prop_assert_eq!(decode_event_at(payload, index as u32), Ok(event));
                prop_assert_eq!(event_alone(&bytes, index as u32, usize::MAX), None);
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), index in 0..8u32) {
            let _ = Commit::decode(&bytes);
            let _ = parse_frame(&bytes, 1 << 20);
            let _ = event_alone(&bytes, index, 1 << 20);
            let _ = events_alone(&bytes, index, 8, 1 << 20, &mut Vec::new());
        }
    }

    /// `commit` framed as format 1 wrote it: no directory.
    fn format_1(commit: &Commit) -> Vec<u8> {
        let mut bytes = Vec::new();
        commit.encode_framed(&mut bytes);
        let directory = commit.event_count() * DIRECTORY_ENTRY_BYTES + 4;
        let mut payload = bytes[FRAME_HEADER_BYTES..bytes.len() - directory].to_vec();
        payload[0] = RECORD_FORMAT_VERSION_UNDIRECTED;
        let len = (payload.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &payload);
        [&len[..], &crc.to_le_bytes(), &payload].concat()
    }

    /// A commit of `events` small events to one stream.
    fn small_commit(events: usize) -> Commit {
        Commit {
            first_position: Position(7),
            recorded_at_us: 1,
            source: None,
            writes: vec![CommitWrite::new(
                StreamName::new("s").expect("valid"),
                Revision(0),
                vec![ProposedEvent::new(EventType::new("T").expect("valid"), b"{}".to_vec()); events],
            )],
        }
    }

    #[test]
    fn a_directory_that_disagrees_with_the_writes_is_refused() {
        let commit = small_commit(2);
        let mut bytes = Vec::new();
        commit.encode_framed(&mut bytes);
        let mut payload = bytes[FRAME_HEADER_BYTES..].to_vec();
        let second_entry = payload.len() - 4 - DIRECTORY_ENTRY_BYTES;
        payload[second_entry] += 1;
        let error = Commit::decode(&payload).expect_err("a wrong offset is refused");
        assert!(error.contains("the directory lists an event at"), "{error}");
        payload[second_entry] -= 1;
        let count = payload.len() - 4;
        for wrong in [0, 1, 3, 200] {
            payload[count] = wrong;
            assert!(Commit::decode(&payload).is_err(), "a count of {wrong} is refused");
        }
    }

    #[test]
    fn short_input_is_truncated_not_invalid() {
        let commit = small_commit(1);
        let mut bytes = Vec::new();
        commit.encode_framed(&mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(parse_frame(&bytes[..cut], 1 << 20), Frame::Truncated, "cut at {cut}");
        }
    }
}
