//! The native door: the gRPC services, served over Quipu's framed TCP
//! transport (see [`quipu_proto::frame`]) instead of HTTP/2, on the gRPC
//! port: a connection that opens with the native preface is served here,
//! any other goes on to the HTTP/2 server. Each call's
//! frames become an HTTP request handed to the same routes the gRPC
//! server runs, and the response's body and status go back as frames, so
//! every call, error and limit is the gRPC door's, byte for byte; only
//! the framing is cheaper (no HPACK, no HTTP/2 stream and flow-control
//! machinery, one write per unary answer).
//!
//! The hot unary calls (appends, stream loads) take a shorter way (see
//! [`unary`]): the service method is called with the decoded message, no
//! HTTP request is built.
//!
//! A connection is read by one task; each call runs in a task of its own
//! (calls on one connection may overlap), and answers are written whole
//! frames at a time under a lock.

pub mod unary;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use quipu_proto::frame::{self, CANCEL, END, Frame, OPEN, PREFACE};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower_service::Service;
use unary::Unary;

use crate::opening::{self, Admitted};
use quipu_node::connection_cap::{ConnectionCap, ConnectionPermit};

/// Accepted HTTP/2 connections waiting for the gRPC server.
const ACCEPT_QUEUE: usize = 64;
/// Request body pieces a streaming call may have waiting.
const BODY_QUEUE: usize = 16;
/// Answer bytes gathered before they are sent while more are ready.
const ANSWER_CHUNK_BYTES: usize = 1024 * 1024;
/// Answer messages of this size or more are sent as they are, not
/// gathered: copying them would cost more than a frame head.
const GATHER_BYTES_MAX: usize = 16 * 1024;
/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The routes every call goes to: the gRPC services.
pub type Routes = tonic::service::Routes;

/// Accepts connections on the gRPC `listener` until `stopping` turns
/// true, at most `cap` open at once: native ones are served here with
/// `unary` and `routes`, the others come out of the returned stream for
/// the HTTP/2 server. Each must send its preface within
/// `limits.http_header_timeout`, and is probed with TCP keepalive every
/// `limits.keepalive` (see [`crate::opening`]).
pub fn accept(
    listener: TcpListener,
    routes: Routes,
    unary: Unary,
    stopping: watch::Receiver<bool>,
    limits: crate::ConnectionLimits,
    cap: Arc<ConnectionCap>,
) -> impl futures_util::Stream<Item = std::io::Result<Admitted>> + Send + 'static {
    let routes = routes.prepare();
    let (http2, incoming) = mpsc::channel::<Admitted>(ACCEPT_QUEUE);
    let connections = stopping.clone();
    opening::accept_each(listener, stopping, cap, move |socket, peer, permit| {
        let (routes, unary, stopping, http2) = (routes.clone(), unary.clone(), connections.clone(), http2.clone());
        async move {
            let door = Door { routes, unary };
            let opening = Opening { stopping, http2, limits };
            if let Err(error) = sort(socket, permit, door, opening).await {
                tracing::debug!(%error, %peer, "gRPC connection ended");
            }
        }
    });
    opening::receiver_stream(incoming)
}

/// Where a new connection goes, and how long it has to open.
struct Opening {
    stopping: watch::Receiver<bool>,
    /// The HTTP/2 server's incoming connections.
    http2: mpsc::Sender<Admitted>,
    limits: crate::ConnectionLimits,
}

/// Serves `socket` here if it opens with the native preface, or hands it
/// to the HTTP/2 server once its whole HTTP/2 preface is in; closes it
/// when either does not arrive within the header timeout. `permit` is
/// its place under the port's cap, held until it closes.
async fn sort(socket: TcpStream, permit: ConnectionPermit, door: Door, opening: Opening) -> std::io::Result<()> {
    let Opening { stopping, http2, limits } = opening;
    let (preface_timeout, keepalive) = (limits.http_header_timeout, limits.keepalive);
    let begun = tokio::time::Instant::now();
    // Every client sends at least this much before it waits for the
    // server: the native preface, or the start of the HTTP/2 one.
    if !opening::prepared(&socket, PREFACE.len(), preface_timeout, keepalive).await? {
        tracing::debug!("a gRPC connection sent no preface in {preface_timeout:?}; closing it");
        return Ok(());
    }
    let mut preface = [0u8; 8];
    socket.peek(&mut preface).await?;
    if &preface == PREFACE {
        let served = connection(socket, door, stopping).await;
        drop(permit);
        return served;
    }
    let left = preface_timeout.saturating_sub(begun.elapsed());
    if !opening::arrived(&socket, opening::HTTP2_PREFACE_BYTES, left).await? {
        tracing::debug!("a gRPC connection sent no whole HTTP/2 preface in {preface_timeout:?}; closing it");
        return Ok(());
    }
    // The HTTP/2 server is stopping when it takes no more.
    let _ = http2.send(Admitted::new(socket, permit)).await;
    Ok(())
}

/// What serves a connection's calls.
struct Door {
    /// Every call.
    routes: Routes,
    /// The calls that take the short way.
    unary: Unary,
}

/// The writing half of a connection, shared by its calls.
struct Writer(tokio::sync::Mutex<OwnedWriteHalf>);

impl Writer {
    /// Writes `frame`: its head and its data in one vectored write, the
    /// data not copied.
    async fn send(&self, frame: &Frame) -> std::io::Result<()> {
        let mut head = BytesMut::with_capacity(64);
        frame.encode_head(&mut head);
        let mut bytes = bytes::Buf::chain(head.freeze(), frame.data.clone());
        self.0.lock().await.write_all_buf(&mut bytes).await
    }
}

/// What the reading task keeps of a call: where more body goes, and how
/// to stop it.
struct Call {
    body: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::AbortHandle,
}

type Calls = Arc<Mutex<HashMap<u32, Call>>>;

fn lock(calls: &Calls) -> std::sync::MutexGuard<'_, HashMap<u32, Call>> {
    calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connection(socket: TcpStream, door: Door, mut stopping: watch::Receiver<bool>) -> std::io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let mut preface = [0u8; 8];
    reader.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a Quipu native client"));
    }
    writer.write_all(PREFACE).await?;
    let writer = Arc::new(Writer(tokio::sync::Mutex::new(writer)));
    let calls: Calls = Arc::default();
    let result = loop {
        let frame = tokio::select! {
            frame = frame::read_frame(&mut reader) => frame,
            _ = stopping.wait_for(|stop| *stop) => break Ok(()),
        };
        match frame {
            Ok(Some(frame)) => dispatch(frame, &door, &writer, &calls).await,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    for (_, call) in lock(&calls).drain() {
        call.task.abort();
    }
    result
}

async fn dispatch(frame: Frame, door: &Door, writer: &Arc<Writer>, calls: &Calls) {
    if frame.has(OPEN) {
        open(frame, door, writer, calls);
        return;
    }
    if frame.has(CANCEL) {
        if let Some(call) = lock(calls).remove(&frame.stream) {
            call.task.abort();
        }
        return;
    }
    let body = lock(calls).get(&frame.stream).and_then(|c| c.body.clone());
    let ends = frame.has(END);
    if let Some(body) = body
        && !frame.data.is_empty()
    {
        // A call that stopped reading its body has ended; nothing to do.
        let _ = body.send(frame.data).await;
    }
    if ends && let Some(call) = lock(calls).get_mut(&frame.stream) {
        call.body = None;
    }
}

/// Starts the call `frame` opens.
fn open(frame: Frame, door: &Door, writer: &Arc<Writer>, calls: &Calls) {
    let stream = frame.stream;
    if let Some(call) = door.unary.call(&frame) {
        let (writer, finished) = (Arc::clone(writer), Arc::clone(calls));
        start(calls, stream, None, async move {
            let (headers, data) = call.await;
            let _ = writer.send(&end_frame(stream, &headers, data)).await;
            lock(&finished).remove(&stream);
        });
        return;
    }
    let (body, sender) = if frame.has(END) {
        (tonic::body::Body::new(http_body_util::Full::new(frame.data.clone())), None)
    } else {
        let (sender, receiver) = mpsc::channel::<Bytes>(BODY_QUEUE);
        if !frame.data.is_empty() && sender.try_send(frame.data.clone()).is_err() {
            tracing::warn!(stream, "a native call's first body piece did not fit");
        }
        let pieces = tokio_stream_of(receiver);
        (tonic::body::Body::new(http_body_util::StreamBody::new(pieces)), Some(sender))
    };
    let request = match request(&frame, body) {
        Ok(request) => request,
        Err(message) => {
            let writer = Arc::clone(writer);
            tokio::spawn(async move {
                let status = tonic::Status::invalid_argument(message);
                let _ = writer.send(&end_frame(stream, &status_headers(&status), Bytes::new())).await;
            });
            return;
        }
    };
    let (routes, writer, finished) = (door.routes.clone(), Arc::clone(writer), Arc::clone(calls));
    start(calls, stream, sender, async move {
        answer(routes, request, stream, &writer).await;
        lock(&finished).remove(&stream);
    });
}

/// Runs `call` (which removes itself from `calls` when done) as the call
/// `stream`, taking more request body through `body`.
fn start(
    calls: &Calls,
    stream: u32,
    body: Option<mpsc::Sender<Bytes>>,
    call: impl std::future::Future<Output = ()> + Send + 'static,
) {
    // Held while the task starts: a call that ends at once removes itself
    // only after it was put in, never leaving an entry behind.
    let mut calls = lock(calls);
    let task = tokio::spawn(call);
    calls.insert(stream, Call { body, task: task.abort_handle() });
}

/// The frames of a body as a stream of HTTP body frames.
fn tokio_stream_of(
    mut receiver: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>> + Send {
    futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx).map(|piece| piece.map(|p| Ok(http_body::Frame::data(p))))
    })
}

/// The HTTP request a call's first frame stands for.
fn request(frame: &Frame, body: tonic::body::Body) -> Result<http::Request<tonic::body::Body>, String> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(&frame.path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    for (name, value) in &frame.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
        let value = http::HeaderValue::from_bytes(value).map_err(|_| format!("bad value of header {name}"))?;
        request = request.header(name, value);
    }
    request.body(body).map_err(|error| format!("bad call {:?}: {error}", frame.path))
}

/// Runs the call and sends its answer: body pieces as they come (several
/// that are ready at once in one frame), then the status.
async fn answer(mut routes: Routes, request: http::Request<tonic::body::Body>, stream: u32, writer: &Writer) {
    let response = match routes.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    if parts.headers.contains_key("grpc-status") {
        // Trailers only: an error before any message.
        let _ = writer.send(&end_frame(stream, &grpc_headers(&parts.headers), Bytes::new())).await;
        return;
    }
    let mut pending = BytesMut::new();
    // The client learns the call was taken (HTTP/2 sends headers) with
    // the first frame; an answer ready at once is one frame in all.
    let mut sent_any = false;
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                if !pending.is_empty() || !sent_any {
                    let piece = Frame { stream, flags: 0, data: pending.split().freeze(), ..Frame::default() };
                    if writer.send(&piece).await.is_err() {
                        return;
                    }
                    sent_any = true;
                }
                body.frame().await
            }
        };
        match next {
            Some(Ok(piece)) => match piece.into_data() {
                Ok(data) => {
                    // Small messages are gathered into fewer frames; a
                    // large one goes out as it is (not copied), after what
                    // was gathered.
                    if data.len() >= GATHER_BYTES_MAX {
                        if !pending.is_empty() {
                            let piece = Frame { stream, flags: 0, data: pending.split().freeze(), ..Frame::default() };
                            if writer.send(&piece).await.is_err() {
                                return;
                            }
                        }
                        if writer.send(&Frame { stream, flags: 0, data, ..Frame::default() }).await.is_err() {
                            return;
                        }
                        sent_any = true;
                        continue;
                    }
                    pending.extend_from_slice(&data);
                    if pending.len() >= ANSWER_CHUNK_BYTES {
                        let piece = Frame { stream, flags: 0, data: pending.split().freeze(), ..Frame::default() };
                        if writer.send(&piece).await.is_err() {
                            return;
                        }
                        sent_any = true;
                    }
                }
                Err(piece) => {
                    let trailers = piece.into_trailers().map(|t| grpc_headers(&t)).unwrap_or_default();
                    let _ = writer.send(&end_frame(stream, &trailers, pending.freeze())).await;
                    return;
                }
            },
            Some(Err(error)) => {
                let status = tonic::Status::internal(format!("answering the call: {error}"));
                let _ = writer.send(&end_frame(stream, &status_headers(&status), pending.freeze())).await;
                return;
            }
            None => {
                let _ =
                    writer.send(&end_frame(stream, &status_headers(&tonic::Status::ok("")), pending.freeze())).await;
                return;
            }
        }
    }
}

fn end_frame(stream: u32, headers: &[(String, Bytes)], data: Bytes) -> Frame {
    Frame { stream, flags: END, headers: headers.to_vec(), data, ..Frame::default() }
}

/// The gRPC status headers of `headers`.
fn grpc_headers(headers: &http::HeaderMap) -> Vec<(String, Bytes)> {
    ["grpc-status", "grpc-message", "grpc-status-details-bin"]
        .into_iter()
        .filter_map(|name| headers.get(name).map(|v| (name.to_owned(), Bytes::copy_from_slice(v.as_bytes()))))
        .collect()
}

fn status_headers(status: &tonic::Status) -> Vec<(String, Bytes)> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        return vec![("grpc-status".into(), Bytes::from_static(b"13"))];
    }
    grpc_headers(&headers)
}
