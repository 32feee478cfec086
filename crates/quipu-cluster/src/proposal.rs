//! The records nodes produce to the cluster topic: a [`Proposal`] (an
//! append request, with the id that lets its node answer the client, to be
//! decided by every node when the merged log reaches it) or a [`Tick`]
//! (which closes epochs of its partition, see [`crate::merger`]).
//!
//! One record value, integers little-endian:
//!
//! ```text
//! u8 format (1) | u16 rules | u8 kind
//! kind 1, tick:     u64 epoch
//! kind 2, proposal: [16] request id | u8 node_len, node
//!   u16 write_count, per write:
//!     u16 stream_len, stream | u8 expected (0 any, 1 no stream, 2 exists, 3 exact) [u64 revision]
//!     u32 event_count, per event:
//!       [16] id | u8 type_len, type | u32 data_len, data | u32 metadata_len, metadata
//!       u8 tag_count, per tag: u8 tag_len, tag
//!   u8 condition (0 none, 1 some) [u8 after (0 none, 1 some) [u64 position]
//!     u16 item_count, per item: u16 type_count, (u8 len, type)* | u16 tag_count, (u8 len, tag)*]
//! ```
//!
//! `rules` is the version of the decision rules the producing node
//! applies. Every node must decide a proposal by the same rules, so a node
//! that meets rules newer than its own ([`RULES`]) must stop applying the
//! topic ([`DecodeError::UnknownRules`]) rather than guess; an older node
//! stops there too, and is upgraded before it goes on. A record that is
//! not well formed (a foreign producer, a bad name) decodes to an error
//! that every node meets alike: it is refused as a request, never applied.

use quipu_core::{
    AppendRequest, Condition, EventId, EventType, ExpectedRevision, Position, ProposedEvent, Query, QueryItem,
    Revision, StreamName, StreamWrite, Tag,
};

/// Version of the record layout this build writes and reads.
pub const FORMAT: u8 = 1;

/// Version of the decision rules this build applies (quipu-core's
/// `decide` with the engine's idempotency, conflict and condition rules as
/// of this release). Raise it whenever a change could make two builds
/// decide one proposal differently.
pub const RULES: u16 = 1;

const KIND_TICK: u8 = 1;
const KIND_PROPOSAL: u8 = 2;

/// The id a node gives a request it produces, to know its decision when the
/// merged log reaches it (and to find it after a produce whose outcome is
/// unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub uuid::Uuid);

impl RequestId {
    /// A new random id.
    #[must_use]
    pub fn random() -> RequestId {
        RequestId(uuid::Uuid::new_v4())
    }
}

/// An append request as produced to the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Its id, chosen by the producing node.
    pub request_id: RequestId,
    /// Name of the producing node (for diagnostics; decisions ignore it).
    pub node: String,
    /// What is asked.
    pub request: AppendRequest,
}

/// A record that closes, in its partition, every epoch before its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The epoch that begins in its partition (if it is newer than the
    /// partition's current one; an older tick changes nothing).
    pub epoch: u64,
}

/// One record of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An epoch mark.
    Tick(Tick),
    /// An append request.
    Proposal(Proposal),
}

/// A proposal too large for the record layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot propose this append: its {what} ({count}) is over {max}")]
pub struct EncodeError {
    /// What is too large.
    pub what: &'static str,
    /// Its count or length.
    pub count: usize,
    /// The most the layout holds.
    pub max: usize,
}

/// `count` as a field of type `T`, or what does not fit.
fn fits<T: TryFrom<usize> + Into<u64>>(count: usize, what: &'static str, max: T) -> Result<T, EncodeError> {
    T::try_from(count).map_err(|_| EncodeError { what, count, max: usize::try_from(max.into()).unwrap_or(usize::MAX) })
}

/// Why a record's value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Written under decision rules this build does not know: applying it
    /// could decide differently from the nodes that know them.
    #[error("the record is decided by rules version {rules}; this build knows rules {RULES} and older")]
    UnknownRules {
        /// The record's rules version.
        rules: u16,
    },
    /// Written in a layout this build cannot read.
    #[error("the record's format {format} is unknown (this build reads format {FORMAT})")]
    UnknownFormat {
        /// The record's format.
        format: u8,
    },
    /// Not a well-formed record.
    #[error("malformed cluster record: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

impl Record {
    /// The record's bytes.
    ///
    /// # Errors
    /// [`EncodeError`] when a count or a length does not fit its field
    /// (more than 65,535 writes, a node name over 255 bytes, ...); the
    /// engine's limits keep every valid request far below them.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Record::Tick(tick) => Ok(tick.encode()),
            Record::Proposal(proposal) => {
                let mut out = header(KIND_PROPOSAL);
                encode_proposal(proposal, &mut out)?;
                Ok(out)
            }
        }
    }

    /// Reads a record's bytes.
    ///
    /// # Errors
    /// [`DecodeError::UnknownRules`] for rules newer than [`RULES`];
    /// [`DecodeError::UnknownFormat`], or [`DecodeError::Malformed`] saying
    /// what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut reader = Reader { bytes };
        let format = reader.u8("format")?;
        if format != FORMAT {
            return Err(DecodeError::UnknownFormat { format });
        }
        let rules = reader.u16("rules")?;
        if rules > RULES || rules == 0 {
            return Err(DecodeError::UnknownRules { rules });
        }
        let record = match reader.u8("kind")? {
            KIND_TICK => Record::Tick(Tick { epoch: reader.u64("epoch")? }),
            KIND_PROPOSAL => Record::Proposal(decode_proposal(&mut reader)?),
            kind => return Err(malformed(format!("unknown record kind {kind}"))),
        };
        if !reader.bytes.is_empty() {
            return Err(malformed(format!("{} bytes after the record", reader.bytes.len())));
        }
        Ok(record)
    }
}

impl Tick {
    /// The tick's record bytes (a tick always fits).
    #[must_use]
    pub fn encode(self) -> Vec<u8> {
        let mut out = header(KIND_TICK);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out
    }
}

/// Format, rules and kind: the start of every record.
fn header(kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT);
    out.extend_from_slice(&RULES.to_le_bytes());
    out.push(kind);
    out
}

fn encode_proposal(proposal: &Proposal, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(proposal.request_id.0.as_bytes());
    short_text(out, &proposal.node, "node name")?;
    out.extend_from_slice(&fits(proposal.request.writes.len(), "number of streams", u16::MAX)?.to_le_bytes());
    for write in &proposal.request.writes {
        out.extend_from_slice(&fits(write.stream.as_str().len(), "stream name", u16::MAX)?.to_le_bytes());
        out.extend_from_slice(write.stream.as_str().as_bytes());
        encode_expected(write.expected, out);
        out.extend_from_slice(&fits(write.events.len(), "number of events", u32::MAX)?.to_le_bytes());
        for event in &write.events {
            encode_event(event, out)?;
        }
    }
    match &proposal.request.condition {
        None => out.push(0),
        Some(condition) => {
            out.push(1);
            match condition.after {
                None => out.push(0),
                Some(after) => {
                    out.push(1);
                    out.extend_from_slice(&after.0.to_le_bytes());
                }
            }
            counted(out, condition.query.items.len(), "number of condition items")?;
            for item in &condition.query.items {
                counted(out, item.types.len(), "number of condition types")?;
                for event_type in &item.types {
                    short_text(out, event_type.as_str(), "condition type")?;
                }
                counted(out, item.tags.len(), "number of condition tags")?;
                for tag in &item.tags {
                    short_text(out, tag.as_str(), "condition tag")?;
                }
            }
        }
    }
    Ok(())
}

fn encode_expected(expected: ExpectedRevision, out: &mut Vec<u8>) {
    match expected {
        ExpectedRevision::Any => out.push(0),
        ExpectedRevision::NoStream => out.push(1),
        ExpectedRevision::Exists => out.push(2),
        ExpectedRevision::Exact(revision) => {
            out.push(3);
            out.extend_from_slice(&revision.0.to_le_bytes());
        }
    }
}

fn encode_event(event: &ProposedEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(event.id.as_bytes());
    short_text(out, event.event_type.as_str(), "event type")?;
    long_bytes(out, &event.data, "event data")?;
    long_bytes(out, &event.metadata, "event metadata")?;
    out.push(fits(event.tags.len(), "number of tags", u8::MAX)?);
    for tag in &event.tags {
        short_text(out, tag.as_str(), "tag")?;
    }
    Ok(())
}

fn short_text(out: &mut Vec<u8>, text: &str, what: &'static str) -> Result<(), EncodeError> {
    out.push(fits(text.len(), what, u8::MAX)?);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn long_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), EncodeError> {
    out.extend_from_slice(&fits(bytes.len(), what, u32::MAX)?.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn counted(out: &mut Vec<u8>, count: usize, what: &'static str) -> Result<(), EncodeError> {
    out.extend_from_slice(&fits(count, what, u16::MAX)?.to_le_bytes());
    Ok(())
}

fn decode_proposal(reader: &mut Reader<'_>) -> Result<Proposal, DecodeError> {
    let request_id = RequestId(uuid::Uuid::from_bytes(reader.array("request id")?));
    let node = reader.short_text("node")?;
    let writes = (0..reader.u16("write count")?).map(|_| decode_write(reader)).collect::<Result<Vec<_>, _>>()?;
    let condition = match reader.u8("condition")? {
        0 => None,
        1 => Some(decode_condition(reader)?),
        other => return Err(malformed(format!("condition flag {other}"))),
    };
    Ok(Proposal { request_id, node, request: AppendRequest { writes, condition } })
}

fn decode_write(reader: &mut Reader<'_>) -> Result<StreamWrite, DecodeError> {
    let len = reader.u16("stream length")?;
    let stream = text(reader.take(usize::from(len), "stream")?, "stream")?;
    let stream = StreamName::readable(stream).map_err(|e| malformed(e.to_string()))?;
    let expected = match reader.u8("expected revision")? {
        0 => ExpectedRevision::Any,
        1 => ExpectedRevision::NoStream,
        2 => ExpectedRevision::Exists,
        3 => ExpectedRevision::Exact(Revision(reader.u64("revision")?)),
        other => return Err(malformed(format!("expected revision kind {other}"))),
    };
    let count = reader.u32("event count")?;
    let events = (0..count).map(|_| decode_event(reader)).collect::<Result<Vec<_>, _>>()?;
    Ok(StreamWrite { stream, expected, events })
}

fn decode_event(reader: &mut Reader<'_>) -> Result<ProposedEvent, DecodeError> {
    let id = EventId(uuid::Uuid::from_bytes(reader.array("event id")?));
    let event_type = EventType::new(reader.short_text("event type")?).map_err(|e| malformed(e.to_string()))?;
    let data = reader.long_bytes("data")?;
    let metadata = reader.long_bytes("metadata")?;
    let tags = (0..reader.u8("tag count")?)
        .map(|_| Tag::new(reader.short_text("tag")?).map_err(|e| malformed(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProposedEvent { id, event_type, data, metadata, tags })
}

fn decode_condition(reader: &mut Reader<'_>) -> Result<Condition, DecodeError> {
    let after = match reader.u8("condition position flag")? {
        0 => None,
        1 => Some(Position(reader.u64("condition position")?)),
        other => return Err(malformed(format!("condition position flag {other}"))),
    };
    let items = (0..reader.u16("query item count")?)
        .map(|_| {
            let types = (0..reader.u16("type count")?)
                .map(|_| EventType::new(reader.short_text("query type")?).map_err(|e| malformed(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let tags = (0..reader.u16("tag count")?)
                .map(|_| Tag::new(reader.short_text("query tag")?).map_err(|e| malformed(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(QueryItem { types, tags })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Condition { query: Query { items }, after })
}

fn malformed(reason: String) -> DecodeError {
    DecodeError::Malformed { reason }
}

fn text(bytes: &[u8], what: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

/// Reads a record's fields in turn; every read says what it wanted when
/// the bytes end first.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(len)
            .ok_or_else(|| malformed(format!("ends inside {what} ({len} bytes wanted, {} left)", self.bytes.len())))?;
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        bytes.try_into().map_err(|_| malformed(format!("{what} is not {N} bytes")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn short_text(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.u8(what)?;
        text(self.take(usize::from(len), what)?, what)
    }

    fn long_bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| malformed(format!("{what} length {len}")))?;
        Ok(self.take(len, what)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(kind: &str, data: &[u8], tags: &[&str]) -> ProposedEvent {
        ProposedEvent {
            id: EventId::random(),
            event_type: EventType::new(kind).expect("a type"),
            data: data.to_vec(),
            metadata: b"{\"$correlationId\":\"c\"}".to_vec(),
            tags: tags.iter().map(|t| Tag::new(*t).expect("a tag")).collect(),
        }
    }

    fn proposal() -> Proposal {
        let write = |stream: &str, expected, events| StreamWrite {
            stream: StreamName::readable(stream).expect("a stream"),
            expected,
            events,
        };
        Proposal {
            request_id: RequestId::random(),
            node: "node-a".into(),
            request: AppendRequest {
                writes: vec![
                    write("order-1", ExpectedRevision::Exact(Revision(4)), vec![event("Placed", b"{}", &["vip"])]),
                    write("$groups", ExpectedRevision::Any, vec![]),
                    write(
                        "order-2",
                        ExpectedRevision::NoStream,
                        vec![event("Paid", b"", &[]), event("Sent", b"x", &[])],
                    ),
                ],
                condition: Some(Condition {
                    query: Query {
                        items: vec![QueryItem {
                            types: vec![EventType::new("Placed").expect("a type")],
                            tags: vec![Tag::new("vip").expect("a tag")],
                        }],
                    },
                    after: Some(Position(17)),
                }),
            },
        }
    }

    #[test]
    fn records_read_back_as_written() {
        for record in [Record::Tick(Tick { epoch: 9 }), Record::Proposal(proposal())] {
            assert_eq!(Record::decode(&record.encode().expect("encodes")), Ok(record));
        }
        let mut plain = proposal();
        plain.request.condition = None;
        let plain = Record::Proposal(plain);
        assert_eq!(Record::decode(&plain.encode().expect("encodes")), Ok(plain));
    }

    #[test]
    fn newer_rules_and_formats_are_refused_by_name() {
        let mut bytes = Record::Tick(Tick { epoch: 1 }).encode().expect("encodes");
        if let Some(rules) = bytes.get_mut(1..3) {
            rules.copy_from_slice(&(RULES + 1).to_le_bytes());
        }
        assert_eq!(Record::decode(&bytes), Err(DecodeError::UnknownRules { rules: RULES + 1 }));
        if let Some(format) = bytes.first_mut() {
            *format = 7;
        }
        assert_eq!(Record::decode(&bytes), Err(DecodeError::UnknownFormat { format: 7 }));
    }

    #[test]
    fn a_proposal_too_large_for_the_layout_is_an_error_not_a_panic() {
        let mut long_node = proposal();
        long_node.node = "n".repeat(256);
        let error = Record::Proposal(long_node).encode().expect_err("a 256-byte node name");
        assert_eq!(error, EncodeError { what: "node name", count: 256, max: 255 });
        assert!(error.to_string().contains("node name (256) is over 255"), "{error}");
    }

    #[test]
    fn a_bad_name_is_malformed_not_applied() {
        let mut record = Record::Proposal(proposal()).encode().expect("encodes");
        let at = record.windows(7).position(|w| w == b"order-1").expect("the stream's bytes");
        if let Some(byte) = record.get_mut(at + 5) {
            *byte = b'\t';
        }
        assert!(matches!(Record::decode(&record), Err(DecodeError::Malformed { reason }) if reason.contains("stream")));
    }

    proptest! {
        #[test]
        fn every_cut_or_flipped_record_is_an_error_or_another_record_never_a_panic(
            cut in 0usize..400, flip in 0usize..400, bit in 0u8..8,
        ) {
            let bytes = Record::Proposal(proposal()).encode().expect("encodes");
            let _ = Record::decode(bytes.get(..cut.min(bytes.len())).unwrap_or_default());
            let mut flipped = bytes.clone();
            if let Some(byte) = flipped.get_mut(flip % bytes.len()) {
                *byte ^= 1 << bit;
            }
            let _ = Record::decode(&flipped);
            prop_assert!(cut >= bytes.len() || Record::decode(bytes.get(..cut).unwrap_or_default()).is_err());
        }
    }
}
