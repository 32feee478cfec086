//! The native door's short way for the hot unary calls (appends, stream
//! loads, reads of `$all`): the request message is decoded from the
//! call's one frame and handed to the gRPC service's own method, and the
//! answer goes back as one frame, without building an HTTP request or
//! passing the gRPC routes. The method is the one the routes call, so the
//! answer and every error are the same; a call this path cannot take as
//! it is (compressed, several messages, a message over the size limit,
//! another method) goes the long way, where tonic answers it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quipu_proto::frame::{END, Frame};
use quipu_proto::v1::streams_server::Streams;
use tonic::{Request, Response, Status};

use crate::StreamsService;

/// A unary call's answer: the status headers and the body.
pub type Answer = (Vec<(String, Bytes)>, Bytes);

/// A call taken the short way, running.
pub type Call = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Bytes before each gRPC message: a compression flag and a big-endian
/// length.
const MESSAGE_PREFIX: usize = 5;

/// The unary calls of `quipu.v1.Streams` served the short way.
#[derive(Clone)]
pub struct Unary {
    streams: Arc<StreamsService>,
    /// The largest request message the service decodes.
    message_max: usize,
}

impl Unary {
    /// Serves the calls with `streams`, taking request messages up to
    /// `message_max` bytes (larger ones go the long way, which refuses
    /// them as the gRPC door does).
    #[must_use]
    pub fn new(streams: Arc<StreamsService>, message_max: usize) -> Unary {
        Unary { streams, message_max }
    }

    /// The call `frame` opens, when it can be taken the short way: a whole
    /// request (the frame ends the client's side) of one uncompressed
    /// message to a method served here.
    pub fn call(&self, frame: &Frame) -> Option<Call> {
        if !frame.has(END) {
            return None;
        }
        let message = message(&frame.data, self.message_max)?;
        let metadata = metadata(&frame.headers)?;
        let streams = Arc::clone(&self.streams);
        let call: Call = match frame.path.as_str() {
            "/quipu.v1.Streams/Append" => {
                Box::pin(unary(message, metadata, move |request| async move { streams.append(request).await }))
            }
            "/quipu.v1.Streams/ReadStream" => {
                Box::pin(unary(message, metadata, move |request| async move { streams.read_stream(request).await }))
            }
            "/quipu.v1.Streams/ReadAll" => {
                Box::pin(unary(message, metadata, move |request| async move { streams.read_all(request).await }))
            }
            "/quipu.v1.Streams/StreamInfo" => {
                Box::pin(unary(message, metadata, move |request| async move { streams.stream_info(request).await }))
            }
            _ => return None,
        };
        Some(call)
    }
}

/// The one message in `body`, when it is whole, uncompressed and at most
/// `message_max` bytes.
fn message(body: &Bytes, message_max: usize) -> Option<Bytes> {
    let mut prefix = body.get(..MESSAGE_PREFIX)?;
    let compressed = prefix.get_u8();
    let length = usize::try_from(prefix.get_u32()).ok()?;
    let whole = body.len() == MESSAGE_PREFIX + length;
    (compressed == 0 && whole && length <= message_max).then(|| body.slice(MESSAGE_PREFIX..))
}

/// The request metadata of a call's headers; `None` when one is not valid
/// metadata (the long way refuses it).
fn metadata(headers: &[(String, Bytes)]) -> Option<tonic::metadata::MetadataMap> {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(value).ok()?;
        map.append(name, value);
    }
    Some(tonic::metadata::MetadataMap::from_headers(map))
}

/// Decodes the request, runs `method` and encodes its answer as the gRPC
/// routes would: the message, then status OK; or no message and the
/// error's status.
async fn unary<Q, A, F, Fut>(message: Bytes, metadata: tonic::metadata::MetadataMap, method: F) -> Answer
where
    Q: prost::Message + Default,
    A: prost::Message,
    F: FnOnce(Request<Q>) -> Fut,
    Fut: Future<Output = Result<Response<A>, Status>>,
{
    let request = match Q::decode(message) {
        Ok(request) => request,
        // What the codec of the HTTP/2 door answers.
        Err(error) => return (super::status_headers(&quipu_proto::codec::decode_error(error)), Bytes::new()),
    };
    let request = Request::from_parts(metadata, tonic::Extensions::default(), request);
    match method(request).await {
        Ok(response) => {
            let answer = response.into_inner();
            let length = answer.encoded_len();
            let mut body = BytesMut::with_capacity(MESSAGE_PREFIX + length);
            body.put_u8(0);
            body.put_u32(u32::try_from(length).expect("an answer is under 4 GiB"));
            answer.encode_raw(&mut body);
            (super::status_headers(&Status::ok("")), body.freeze())
        }
        Err(status) => (super::status_headers(&status), Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Bytes {
        let mut body = BytesMut::new();
        body.put_u8(flag);
        body.put_u32(u32::try_from(message.len()).expect("small"));
        body.put_slice(message);
        body.freeze()
    }

    #[test]
    fn only_one_whole_uncompressed_message_within_the_limit_goes_the_short_way() {
        let message = |body: &Bytes| message(body, 4);
        assert_eq!(message(&framed(0, b"abcd")).as_deref(), Some(&b"abcd"[..]));
        assert_eq!(message(&framed(0, b"")).as_deref(), Some(&b""[..]));
        assert_eq!(message(&framed(1, b"abcd")), None, "compressed");
        assert_eq!(message(&framed(0, b"abcde")), None, "over the limit");
        let mut two = BytesMut::from(&framed(0, b"ab")[..]);
        two.extend_from_slice(&framed(0, b"cd"));
        assert_eq!(message(&two.freeze()), None, "two messages");
        assert_eq!(message(&framed(0, b"abcd").slice(..6)), None, "cut short");
        assert_eq!(message(&Bytes::from_static(&[0, 0])), None, "no prefix");
    }
}
