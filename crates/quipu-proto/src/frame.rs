//! Quipu's native transport: the same gRPC calls as over HTTP/2, in
//! length-prefixed frames over one TCP connection. It exists for speed:
//! on the 2-core machines of the benchmarks, HTTP/2 costs about 31 µs of
//! CPU per small request and response (hyper, client and server), plain
//! framed TCP 9 µs, and a wake-up less per round trip. Kafka, PostgreSQL
//! and Redis speak framed binary protocols of their own for the same
//! reason. Only the Rust client speaks it; every other gRPC client uses
//! HTTP/2, and the server answers both with the same services.
//!
//! A connection starts with the client sending [`PREFACE`] and the server
//! answering it. Then both sides send frames, little-endian:
//!
//! ```text
//! u32 length of the rest | u32 stream | u8 flags
//! if OPEN: u16 path length, path (e.g. /quipu.v1.Streams/Append)
//! if OPEN or END: u16 header count, then per header u16 name length, name,
//!   u16 value length, value (request metadata on OPEN; grpc-status,
//!   grpc-message and grpc-status-details-bin on the server's END)
//! data: the rest, a piece of the gRPC body (length-prefixed messages)
//! ```
//!
//! A call is a stream of frames with one id the client picks: its first
//! frame has OPEN, its last from each side END (a unary call is one frame
//! each way). A client stops a call it no longer wants with CANCEL.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a client sends first, and the server answers.
pub const PREFACE: &[u8; 8] = b"QUIPUWP1";
/// Largest frame either side accepts (the rest after the length), bytes.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The frame starts a call: it carries the path.
pub const OPEN: u8 = 1;
/// The sender's last frame of the call: on the server's, the status.
pub const END: u8 = 2;
/// The client gives up on the call.
pub const CANCEL: u8 = 4;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// The call it belongs to.
    pub stream: u32,
    /// [`OPEN`], [`END`], [`CANCEL`], combined.
    pub flags: u8,
    /// The method, on [`OPEN`] frames.
    pub path: String,
    /// Metadata on [`OPEN`], status on the server's [`END`].
    pub headers: Vec<(String, Bytes)>,
    /// Body bytes.
    pub data: Bytes,
}

impl Frame {
    /// Whether the frame has `flag`.
    #[must_use]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Panics
    /// When the path, a header or the frame is longer than the format
    /// holds (callers bound what they send).
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_head(out);
        out.put_slice(&self.data);
    }

    /// Appends all of the encoded frame but its data to `out`, its length
    /// counting the data: send [`Frame::data`] right after it (a large
    /// frame need not be copied to be sent).
    ///
    /// # Panics
    /// As [`Frame::encode`].
    pub fn encode_head(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u32_le(self.stream);
        out.put_u8(self.flags);
        if self.has(OPEN) {
            put_bytes(out, self.path.as_bytes());
        }
        if self.has(OPEN) || self.has(END) {
            out.put_u16_le(u16::try_from(self.headers.len()).expect("at most 65,535 headers"));
            for (name, value) in &self.headers {
                put_bytes(out, name.as_bytes());
                put_bytes(out, value);
            }
        }
        let length =
            u32::try_from(out.len() - start - 4 + self.data.len()).expect("frames are bounded by FRAME_BYTES_MAX");
        let slot = out.get_mut(start..start + 4);
        debug_assert!(slot.is_some(), "the length's four bytes were put first");
        if let Some(slot) = slot {
            slot.copy_from_slice(&length.to_le_bytes());
        }
    }

    /// Decodes a frame from the bytes after its length.
    ///
    /// # Errors
    /// A description of what is malformed.
    pub fn decode(mut bytes: Bytes) -> Result<Frame, String> {
        let need = |bytes: &Bytes, count: usize| {
            if bytes.remaining() < count { Err(format!("frame ends {count} bytes early")) } else { Ok(()) }
        };
        need(&bytes, 5)?;
        let stream = bytes.get_u32_le();
        let flags = bytes.get_u8();
        let mut frame = Frame { stream, flags, ..Frame::default() };
        if frame.has(OPEN) {
            let path = take_bytes(&mut bytes)?;
            frame.path = String::from_utf8(path.to_vec()).map_err(|_| "the path is not UTF-8".to_owned())?;
        }
        if frame.has(OPEN) || frame.has(END) {
            need(&bytes, 2)?;
            let count = bytes.get_u16_le();
            for _ in 0..count {
                let name = take_bytes(&mut bytes)?;
                let name = String::from_utf8(name.to_vec()).map_err(|_| "a header name is not UTF-8".to_owned())?;
                let value = take_bytes(&mut bytes)?;
                frame.headers.push((name, value));
            }
        }
        frame.data = bytes;
        Ok(frame)
    }

    /// The value of header `name`, if the frame has it.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16_le(u16::try_from(bytes.len()).expect("names and values are at most 65,535 bytes"));
    out.put_slice(bytes);
}

fn take_bytes(bytes: &mut Bytes) -> Result<Bytes, String> {
    if bytes.remaining() < 2 {
        return Err("frame ends inside a length".into());
    }
    let length = usize::from(bytes.get_u16_le());
    if bytes.remaining() < length {
        return Err(format!("frame ends {} bytes early", length - bytes.remaining()));
    }
    Ok(bytes.split_to(length))
}

/// Reads the next frame; `None` at a clean end of the connection.
///
/// # Errors
/// I/O errors; `InvalidData` for a frame over [`FRAME_BYTES_MAX`] or one
/// that does not decode.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Frame>> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        let message = format!("a frame of {length} bytes, more than the {FRAME_BYTES_MAX} allowed");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
    }
    let mut body = BytesMut::zeroed(length);
    reader.read_exact(&mut body).await?;
    Frame::decode(body.freeze()).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncated_ones_are_refused() {
        let frame = Frame {
            stream: 7,
            flags: OPEN | END,
            path: "/quipu.v1.Streams/Append".into(),
            headers: vec![("authorization".into(), Bytes::from_static(b"Bearer x"))],
            data: Bytes::from_static(b"\0\0\0\0\x02hi"),
        };
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        let length = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(length, out.len() - 4);
        assert_eq!(Frame::decode(out.clone().freeze().slice(4..)), Ok(frame.clone()));
        assert!(Frame::decode(out.freeze().slice(4..12)).is_err());
        let data_only = Frame { stream: 9, flags: 0, data: Bytes::from_static(b"abc"), ..Frame::default() };
        let mut out = BytesMut::new();
        data_only.encode(&mut out);
        assert_eq!(Frame::decode(out.freeze().slice(4..)), Ok(data_only));
    }

    #[test]
    fn a_head_followed_by_the_data_is_the_whole_frame() {
        for frame in [
            Frame { stream: 3, flags: OPEN, path: "/a/b".into(), data: Bytes::from_static(b"xyz"), ..Frame::default() },
            Frame { stream: 4, flags: END, data: Bytes::from(vec![7u8; 70_000]), ..Frame::default() },
            Frame { stream: 5, flags: 0, ..Frame::default() },
        ] {
            let (mut whole, mut head) = (BytesMut::new(), BytesMut::new());
            frame.encode(&mut whole);
            frame.encode_head(&mut head);
            head.extend_from_slice(&frame.data);
            assert_eq!(head, whole);
        }
    }

    #[tokio::test]
    async fn frames_are_read_one_by_one_until_the_end() {
        let mut bytes = BytesMut::new();
        for stream in 1..=3 {
            Frame { stream, flags: END, ..Frame::default() }.encode(&mut bytes);
        }
        let mut reader = &bytes[..];
        for stream in 1..=3 {
            assert_eq!(read_frame(&mut reader).await.unwrap().map(|f| f.stream), Some(stream));
        }
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
        let mut huge = &(u32::MAX.to_le_bytes())[..];
        assert!(read_frame(&mut huge).await.is_err());
    }
}
