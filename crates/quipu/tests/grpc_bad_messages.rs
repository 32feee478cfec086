//! Both gRPC doors (the Quipu API and the KurrentDB door) against
//! messages that are not what they claim, through the real binary and a
//! gRPC client sending raw bytes: a message that does not decode is
//! `INVALID_ARGUMENT`, and one over the size limit is `RESOURCE_EXHAUSTED`
//! (as `streams.proto` promises), in unary calls and in client and
//! bidirectional streams alike.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use bytes::{Buf, BufMut};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

use common::Server;

/// Over the server's message limit (twice the 4 MiB append limit, with
/// 64 KiB of room).
const OVERSIZE_BYTES: usize = 9 * 1024 * 1024;

/// A field header announcing 16 bytes of field 1, then none: no message
/// decodes from it.
const MALFORMED: [u8; 2] = [0x0a, 0x10];

/// A codec sending and receiving messages as the bytes they are.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// A gRPC client of the server at `address` (`host:port`).
async fn client(address: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    tonic::client::Grpc::new(channel)
}

/// The status of the unary call `method` sending `message`.
async fn unary(address: &str, method: &'static str, message: Vec<u8>) -> Status {
    let mut grpc = client(address).await;
    grpc.ready().await.unwrap();
    let call = grpc.unary(tonic::Request::new(message), PathAndQuery::from_static(method), RawCodec).await;
    call.expect_err("the call is refused")
}

/// The status that ends the streaming call `method` sending `messages`
/// (client-streaming or bidirectional), whether the call or its first
/// answer carries it.
async fn streaming(address: &str, method: &'static str, messages: Vec<Vec<u8>>) -> Status {
    let mut grpc = client(address).await;
    grpc.ready().await.unwrap();
    let request = tonic::Request::new(futures_util::stream::iter(messages));
    match grpc.streaming(request, PathAndQuery::from_static(method), RawCodec).await {
        Err(status) => status,
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Err(status) => return status,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{method} ended without an error"),
                }
            }
        }
    }
}

/// Asserts that `status` has `code` and says why.
fn assert_status(status: &Status, code: Code, says: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_doors_refuse_malformed_messages_as_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_every_door(dir.path());
    let kurrent = server.kurrent_address.clone().unwrap();
    let quipu = unary(&server.grpc_address, "/quipu.v1.Streams/Append", MALFORMED.to_vec()).await;
    assert_status(&quipu, Code::InvalidArgument, "does not decode");
    let batch = streaming(&server.grpc_address, "/quipu.v1.Streams/AppendBatch", vec![MALFORMED.to_vec()]).await;
    assert_status(&batch, Code::InvalidArgument, "does not decode");
    let delete = unary(&kurrent, "/event_store.client.streams.Streams/Delete", MALFORMED.to_vec()).await;
    assert_status(&delete, Code::InvalidArgument, "does not decode");
    let append = streaming(&kurrent, "/event_store.client.streams.Streams/Append", vec![MALFORMED.to_vec()]).await;
    assert_status(&append, Code::InvalidArgument, "does not decode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_doors_refuse_oversize_messages_as_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_every_door(dir.path());
    let kurrent = server.kurrent_address.clone().unwrap();
    let oversize = vec![0u8; OVERSIZE_BYTES];
    let quipu = unary(&server.grpc_address, "/quipu.v1.Streams/Append", oversize.clone()).await;
    assert_status(&quipu, Code::ResourceExhausted, "message_too_large");
    // A first message that decodes (an empty request), then one too big.
    let batch =
        streaming(&server.grpc_address, "/quipu.v1.Streams/AppendBatch", vec![Vec::new(), oversize.clone()]).await;
    assert_status(&batch, Code::ResourceExhausted, "message_too_large");
    let delete = unary(&kurrent, "/event_store.client.streams.Streams/Delete", oversize.clone()).await;
    assert_status(&delete, Code::ResourceExhausted, "message_too_large");
    let batch_append = streaming(&kurrent, "/event_store.client.streams.Streams/BatchAppend", vec![oversize]).await;
    assert_status(&batch_append, Code::ResourceExhausted, "message_too_large");
    let (status, body) = server.request("GET", "/v1/all?from=0", None);
    assert_eq!((status, body["events"].as_array().map(Vec::len)), (200, Some(0)), "nothing was written: {body}");
}
