//! [`Delivery`]: a subscription's messages (`SubscribeResponse`) decoded
//! straight into [`Event`]s by [`DeliveryCodec`], the codec a
//! subscription call runs with.
//!
//! Why not the generated types: decoding each event into
//! `pb::RecordedEvent` and then into an [`Event`] was half of a catch-up's
//! client CPU (perf), most of it in turning every string and bytes field
//! into a shared buffer that was then copied and dropped. Here each field
//! is read once from the message's bytes into the event. The tests pin
//! that any message the generated types encode decodes to the same
//! events.

use bytes::Buf;
use quipu_proto::v1 as pb;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};
use uuid::Uuid;

use crate::event::{Event, Position, Revision};
use crate::wire;

/// A subscription message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The next events, in order (one for an `event` message).
    Events(Vec<Event>),
    /// Everything before this point was sent; the last position of `$all`
    /// then.
    CaughtUp(Option<Position>),
    /// A message that is not what the protocol says: why.
    Malformed(String),
}

/// The codec of a subscription call: the request as the generated type,
/// the messages as [`Delivery`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeliveryCodec;

impl Codec for DeliveryCodec {
    type Encode = pb::SubscribeRequest;
    type Decode = Delivery;
    type Encoder = ProstEncoder<pb::SubscribeRequest>;
    type Decoder = DeliveryCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<pb::SubscribeRequest, pb::SubscribeResponse>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        DeliveryCodec
    }
}

impl Decoder for DeliveryCodec {
    type Item = Delivery;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Delivery>, Status> {
        let len = src.remaining();
        let delivery = if src.chunk().len() == len {
            delivery(src.chunk())
        } else {
            // Not seen with tonic's buffers, which hold a message whole.
            delivery(&src.copy_to_bytes(len))
        };
        src.advance(src.remaining());
        Ok(Some(delivery.unwrap_or_else(Delivery::Malformed)))
    }
}

/// Decodes a `SubscribeResponse`.
fn delivery(bytes: &[u8]) -> Result<Delivery, String> {
    let mut found = None;
    for field in Fields::new(bytes) {
        found = match field? {
            (1, Value::Bytes(event_bytes)) => Some(Delivery::Events(vec![event(event_bytes)?])),
            (2, Value::Bytes(caught_up)) => Some(Delivery::CaughtUp(last_position(caught_up)?)),
            (3, Value::Bytes(batch)) => Some(Delivery::Events(events(batch)?)),
            (number @ 1..=3, _) => return Err(format!("field {number} of a subscription message is not a message")),
            _ => found,
        };
    }
    found.ok_or_else(|| "a subscription message with nothing in it".to_owned())
}

/// Decodes an `EventBatch`.
fn events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(event_bytes)) => events.push(event(event_bytes)?),
            (1, _) => return Err("an event of a batch is not a message".to_owned()),
            _ => {}
        }
    }
    Ok(events)
}

/// Decodes a `CaughtUp`.
fn last_position(bytes: &[u8]) -> Result<Option<Position>, String> {
    let mut last = None;
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(position)) => last = Some(Position(position)),
            (1, _) => return Err("a last position that is not a number".to_owned()),
            _ => {}
        }
    }
    Ok(last)
}

/// Decodes a `RecordedEvent`.
fn event(bytes: &[u8]) -> Result<Event, String> {
    let mut event = Event {
        id: crate::EventId(Uuid::nil()),
        stream: String::new(),
        event_type: String::new(),
        data: Vec::new(),
        metadata: Vec::new(),
        tags: Vec::new(),
        revision: Revision(0),
        position: Position(0),
        recorded_at_us: 0,
    };
    let (mut text_id, mut binary_id): (&str, &[u8]) = ("", &[]);
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(id)) => text_id = text(id, "id")?,
            (2, Value::Bytes(stream)) => event.stream = text(stream, "stream")?.to_owned(),
            (3, Value::Bytes(event_type)) => event.event_type = text(event_type, "type")?.to_owned(),
            (4, Value::Bytes(data)) => event.data = data.to_vec(),
            (5, Value::Bytes(metadata)) => event.metadata = metadata.to_vec(),
            (6, Value::Bytes(tag)) => event.tags.push(text(tag, "tag")?.to_owned()),
            (7, Value::Varint(revision)) => event.revision = Revision(revision),
            (8, Value::Varint(position)) => event.position = Position(position),
            (9, Value::Varint(recorded_at_us)) => event.recorded_at_us = recorded_at_us,
            (10, Value::Bytes(id)) => binary_id = id,
            (number @ 1..=10, _) => return Err(format!("field {number} of an event has the wrong wire type")),
            _ => {}
        }
    }
    event.id = wire::event_id(text_id, binary_id)?;
    Ok(event)
}

fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("the {what} of an event is not UTF-8: {e}"))
}

/// A field's value, as its wire type carries it.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed 32- or 64-bit value (no field of these messages has one).
    Fixed,
}

/// The fields of a protobuf message, in order, as (number, value).
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { bytes }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (shift, byte) in (0..64).step_by(7).zip(0..) {
            let Some(&next) = self.bytes.get(byte) else { return Err("a message ends inside a number".to_owned()) };
            value |= u64::from(next & 0x7f) << shift;
            if next & 0x80 == 0 {
                self.bytes = self.bytes.get(byte + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err("a number longer than 10 bytes".to_owned())
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.bytes.len() {
            return Err(format!("a field of {len} bytes where {} are left", self.bytes.len()));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| format!("field number {} is too large", key >> 3))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            wire_type => {
                return Err(format!("field {number} has wire type {wire_type}, which these messages never use"));
            }
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.bytes = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    fn recorded_event() -> impl Strategy<Value = pb::RecordedEvent> {
        (
            any::<u128>(),
            any::<bool>(),
            ".{0,12}",
            ".{0,12}",
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::collection::vec(".{0,6}", 0..3),
            (any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |(id, binary, stream, r#type, data, metadata, tags, (revision, position, recorded_at_us))| {
                    let id = Uuid::from_u128(id);
                    pb::RecordedEvent {
                        id: if binary { String::new() } else { id.to_string() },
                        id_bytes: if binary { id.as_bytes().to_vec() } else { Vec::new() },
                        stream,
                        r#type,
                        data,
                        metadata,
                        tags,
                        revision,
                        position,
                        recorded_at_us,
                    }
                },
            )
    }

    fn response() -> impl Strategy<Value = pb::SubscribeResponse> {
        use pb::subscribe_response::Message;
        prop_oneof![
            recorded_event().prop_map(Message::Event),
            proptest::collection::vec(recorded_event(), 1..5)
                .prop_map(|events| Message::Events(pb::EventBatch { events })),
            proptest::option::of(any::<u64>())
                .prop_map(|last_position| Message::CaughtUp(pb::CaughtUp { last_position })),
        ]
        .prop_map(|message| pb::SubscribeResponse { message: Some(message) })
    }

    /// What the generated types and `wire` make of a message.
    fn generated(response: pb::SubscribeResponse) -> Delivery {
        use pb::subscribe_response::Message;
        match response.message {
            Some(Message::Event(event)) => Delivery::Events(vec![wire::event(event).expect("a valid event")]),
            Some(Message::Events(batch)) => {
                Delivery::Events(batch.events.into_iter().map(|e| wire::event(e).expect("a valid event")).collect())
            }
            Some(Message::CaughtUp(caught_up)) => Delivery::CaughtUp(caught_up.last_position.map(Position)),
            None => Delivery::Malformed("empty".into()),
        }
    }

    proptest! {
        #[test]
        fn any_message_decodes_as_the_generated_types_decode_it(response in response()) {
            let bytes = response.encode_to_vec();
            prop_assert_eq!(delivery(&bytes), Ok(generated(response)));
        }

        #[test]
        fn unknown_fields_are_skipped(response in response(), number in 11..2000u32, value in any::<u64>()) {
            let mut bytes = response.encode_to_vec();
            // An unknown varint field and an unknown fixed64 field at the
            // top level, as a newer server might add.
            varint(u64::from(number) << 3, &mut bytes);
            varint(value, &mut bytes);
            varint((u64::from(number) + 1) << 3 | 1, &mut bytes);
            bytes.extend_from_slice(&value.to_le_bytes());
            prop_assert_eq!(delivery(&bytes), Ok(generated(response)));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = delivery(&bytes);
        }

        #[test]
        fn a_cut_message_is_refused(response in response(), cut in any::<proptest::sample::Index>()) {
            // A message is one field: any strict prefix of it cuts that field.
            let bytes = response.encode_to_vec();
            let cut = cut.index(bytes.len());
            prop_assert!(delivery(&bytes[..cut]).is_err(), "a message cut at {} of {} bytes", cut, bytes.len());
        }
    }

    /// `value` as a protobuf varint.
    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    #[test]
    fn an_empty_message_and_a_bad_id_are_malformed() {
        assert_eq!(delivery(&[]), Err("a subscription message with nothing in it".to_owned()));
        let event = pb::RecordedEvent { id: "not-a-uuid".into(), ..Default::default() };
        let bytes =
            pb::SubscribeResponse { message: Some(pb::subscribe_response::Message::Event(event)) }.encode_to_vec();
        assert!(delivery(&bytes).is_err_and(|e| e.contains("not a UUID")));
    }
}
