//! How the client reaches the server: gRPC over HTTP/2 (`http://` and
//! `https://` addresses, any gRPC server or proxy), or the same gRPC
//! calls over Quipu's framed TCP transport (`quipu://host:port`, see
//! [`quipu_proto::frame`]), which costs a fraction of the CPU per call and
//! a thread wake-up less per round trip. The generated service clients
//! run over either unchanged: [`Transport`] is the tower service they
//! send their HTTP requests to.
//!
//! Over the native transport one TCP connection carries every call of a
//! client (and its clones). A task reads the connection and hands each
//! frame to its call; a call writes its frames itself. A connection that
//! fails fails its calls with `UNAVAILABLE`, and the next call connects
//! again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use quipu_proto::frame::{self, CANCEL, END, Frame, OPEN, PREFACE};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// What a call's future gives.
type Reply = Result<http::Response<tonic::body::Body>, Box<dyn std::error::Error + Send + Sync>>;

/// The connection the service clients send their calls over.
#[derive(Debug, Clone)]
pub enum Transport {
    /// gRPC over HTTP/2.
    Http2(Channel),
    /// gRPC over Quipu's framed TCP transport.
    Native(Native),
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<tonic::body::Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Transport::Http2(channel) => channel.poll_ready(cx).map_err(Into::into),
            Transport::Native(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Transport::Http2(channel) => {
                let call = channel.call(request);
                Box::pin(async move { Ok(call.await?.map(tonic::body::Body::new)) })
            }
            Transport::Native(native) => Box::pin(native.clone().call(request)),
        }
    }
}

/// The native transport: an address and the connection to it, made on
/// the first call and again after it fails.
#[derive(Debug, Clone)]
pub struct Native {
    address: String,
    connection: Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>,
}

/// One open connection.
#[derive(Debug)]
struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    calls: Mutex<HashMap<u32, mpsc::UnboundedSender<Frame>>>,
    next_stream: AtomicU32,
    broken: AtomicBool,
}

fn unavailable(message: String) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(tonic::Status::unavailable(message))
}

impl Native {
    /// Connects to `address` (`host:port`) and checks that a Quipu server
    /// answers there.
    ///
    /// # Errors
    /// `UNAVAILABLE` when nothing answers or something else does.
    pub async fn connect(address: String) -> Result<Native, tonic::Status> {
        let native = Native { address, connection: Arc::default() };
        native.connection().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(native)
    }

    /// The open connection, connecting when there is none or it broke.
    async fn connection(&self) -> Result<Arc<Connection>, Box<dyn std::error::Error + Send + Sync>> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.broken.load(Ordering::Acquire)) {
            return Ok(Arc::clone(connection));
        }
        let connection = Connection::open(&self.address).await?;
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    async fn call(self, request: http::Request<tonic::body::Body>) -> Reply {
        let connection = self.connection().await?;
        let (parts, mut body) = request.into_parts();
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream = connection.register(sender);
        let mut first = Frame {
            stream,
            flags: OPEN,
            path: parts.uri.path().to_owned(),
            headers: metadata(&parts.headers),
            ..Frame::default()
        };
        let (data, ended) = ready_body(&mut body).await?;
        first.data = data;
        if ended {
            first.flags |= END;
        }
        if let Err(error) = connection.send(&first).await {
            connection.forget(stream);
            return Err(unavailable(format!("sending a call to {}: {error}", self.address)));
        }
        if !ended {
            tokio::spawn(forward_body(Arc::clone(&connection), stream, body));
        }
        let mut answer = Answer { receiver, connection, stream, first: None, trailers: None, done: false };
        // As over HTTP/2, a call refused outright is an error of the call,
        // not of its first message: wait for the server's first frame.
        let Some(first) = answer.receiver.recv().await else {
            answer.done = true;
            return Err(unavailable(format!("the connection to {} was lost", self.address)));
        };
        let response = http::Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/grpc");
        if first.has(END) && first.data.is_empty() {
            answer.done = true;
            let mut response = response.body(tonic::body::Body::empty())?;
            response.headers_mut().extend(trailers(&first.headers));
            return Ok(response);
        }
        answer.first = Some(first);
        Ok(response.body(tonic::body::Body::new(answer))?)
    }
}

impl Native {
    /// Runs the unary call `path` with `request` without the gRPC
    /// client's HTTP request and body machinery: the message goes in one
    /// frame, the answer comes back in one or more, and errors are the
    /// statuses the gRPC client would give (the same limits, the same
    /// server statuses, `UNAVAILABLE` for a lost connection).
    ///
    /// # Errors
    /// The call's status when it is not OK.
    pub async fn unary<Q, A>(&self, path: &str, request: &Q, message_max: usize) -> Result<A, tonic::Status>
    where
        Q: prost::Message,
        A: prost::Message + Default,
    {
        let length = request.encoded_len();
        if length > message_max {
            return Err(tonic::Status::out_of_range(format!(
                "Error, encoded message length too large: found {length} bytes, the limit is: {message_max} bytes"
            )));
        }
        let mut data = BytesMut::with_capacity(MESSAGE_PREFIX + length);
        data.put_u8(0);
        data.put_u32(u32::try_from(length).map_err(|_| tonic::Status::out_of_range("a message over 4 GiB"))?);
        request.encode_raw(&mut data);
        let connection = self.connection().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream = connection.register(sender);
        let mut pending = Pending { receiver, connection, stream, done: false };
        let open = Frame { stream, flags: OPEN | END, path: path.to_owned(), data: data.freeze(), ..Frame::default() };
        if let Err(error) = pending.connection.send(&open).await {
            pending.done = true;
            pending.connection.forget(stream);
            return Err(tonic::Status::unavailable(format!("sending a call to {}: {error}", self.address)));
        }
        let (headers, body) = pending
            .answer()
            .await
            .map_err(|()| tonic::Status::unavailable(format!("the connection to {} was lost", self.address)))?;
        if let Some(status) = tonic::Status::from_header_map(&trailers(&headers))
            && status.code() != tonic::Code::Ok
        {
            return Err(status);
        }
        decode_one(&body, message_max)
    }
}

/// Bytes before each gRPC message: a compression flag and a big-endian
/// length.
const MESSAGE_PREFIX: usize = 5;

/// The one message of a unary answer's body.
fn decode_one<A: prost::Message + Default>(body: &[u8], message_max: usize) -> Result<A, tonic::Status> {
    let malformed = || tonic::Status::internal("the server's answer is not one gRPC message");
    let mut prefix = body.get(..MESSAGE_PREFIX).ok_or_else(malformed)?;
    let compressed = prefix.get_u8();
    let length = usize::try_from(prefix.get_u32()).map_err(|_| malformed())?;
    if compressed != 0 || body.len() != MESSAGE_PREFIX + length {
        return Err(malformed());
    }
    if length > message_max {
        return Err(tonic::Status::out_of_range(format!(
            "Error, decoded message length too large: found {length} bytes, the limit is: {message_max} bytes"
        )));
    }
    A::decode(body.get(MESSAGE_PREFIX..).unwrap_or_default()).map_err(|e| tonic::Status::internal(e.to_string()))
}

/// A unary call waiting for its answer; a call given up on is cancelled.
struct Pending {
    receiver: mpsc::UnboundedReceiver<Frame>,
    connection: Arc<Connection>,
    stream: u32,
    done: bool,
}

impl Pending {
    /// The status headers and the whole body of the answer; `Err` when
    /// the connection was lost first.
    async fn answer(&mut self) -> Result<(Vec<(String, Bytes)>, Bytes), ()> {
        let mut body = BytesMut::new();
        loop {
            let frame = self.receiver.recv().await.ok_or(())?;
            if !frame.has(END) {
                body.extend_from_slice(&frame.data);
                continue;
            }
            self.done = true;
            if body.is_empty() {
                return Ok((frame.headers, frame.data));
            }
            body.extend_from_slice(&frame.data);
            return Ok((frame.headers, body.freeze()));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            cancel(&self.connection, self.stream);
        }
    }
}

/// Tells the server the caller gave up on the call `stream`.
fn cancel(connection: &Arc<Connection>, stream: u32) {
    connection.forget(stream);
    let connection = Arc::clone(connection);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = connection.send(&Frame { stream, flags: CANCEL, ..Frame::default() }).await;
        });
    }
}

/// The request's metadata worth sending (what HTTP/2 framing adds, the
/// server adds again).
fn metadata(headers: &http::HeaderMap) -> Vec<(String, Bytes)> {
    headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "content-type" | "te" | "user-agent"))
        .map(|(name, value)| (name.as_str().to_owned(), Bytes::copy_from_slice(value.as_bytes())))
        .collect()
}

/// The body pieces ready now, and whether that is all of it (a unary
/// call's body is ready at once: it goes in the call's first frame).
async fn ready_body(body: &mut tonic::body::Body) -> Result<(Bytes, bool), Box<dyn std::error::Error + Send + Sync>> {
    let mut data = BytesMut::new();
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None if data.is_empty() => body.frame().await,
            None => return Ok((data.freeze(), false)),
        };
        match next {
            Some(Ok(piece)) => {
                if let Ok(piece) = piece.into_data() {
                    data.extend_from_slice(&piece);
                }
            }
            Some(Err(error)) => return Err(error.into()),
            None => return Ok((data.freeze(), true)),
        }
    }
}

/// Sends the rest of a streaming call's body, then its end.
async fn forward_body(connection: Arc<Connection>, stream: u32, mut body: tonic::body::Body) {
    loop {
        let piece = match body.frame().await {
            Some(Ok(piece)) => piece.into_data().unwrap_or_default(),
            Some(Err(_)) => {
                let _ = connection.send(&Frame { stream, flags: CANCEL, ..Frame::default() }).await;
                return;
            }
            None => {
                let _ = connection.send(&Frame { stream, flags: END, ..Frame::default() }).await;
                return;
            }
        };
        if connection.send(&Frame { stream, flags: 0, data: piece, ..Frame::default() }).await.is_err() {
            return;
        }
    }
}

/// Longest a new connection waits for the server's preface: a Quipu
/// server answers at once; anything else (an HTTP/1 server waiting for
/// the rest of a request line) may never answer.
const PREFACE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Connection {
    async fn open(address: &str) -> Result<Arc<Connection>, Box<dyn std::error::Error + Send + Sync>> {
        let socket = TcpStream::connect(address)
            .await
            .map_err(|e| unavailable(format!("connecting to quipu://{address}: {e}")))?;
        socket.set_nodelay(true)?;
        let (reader, mut writer) = socket.into_split();
        writer.write_all(PREFACE).await?;
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut preface = [0u8; 8];
        tokio::time::timeout(PREFACE_WAIT, reader.read_exact(&mut preface))
            .await
            .map_err(|_| {
                unavailable(format!("quipu://{address} did not answer as a Quipu server within {PREFACE_WAIT:?}"))
            })?
            .map_err(|e| unavailable(format!("quipu://{address} did not answer as a Quipu server: {e}")))?;
        if &preface != PREFACE {
            return Err(unavailable(format!("quipu://{address} is not a Quipu native door")));
        }
        let connection = Arc::new(Connection {
            writer: tokio::sync::Mutex::new(writer),
            calls: Mutex::default(),
            next_stream: AtomicU32::new(1),
            broken: AtomicBool::new(false),
        });
        tokio::spawn(read_answers(Arc::clone(&connection), reader));
        Ok(connection)
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<Frame>>> {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, sender: mpsc::UnboundedSender<Frame>) -> u32 {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.calls().insert(stream, sender);
        stream
    }

    fn forget(&self, stream: u32) {
        self.calls().remove(&stream);
    }

    async fn send(&self, frame: &Frame) -> std::io::Result<()> {
        let mut bytes = BytesMut::with_capacity(frame.data.len() + frame.path.len() + 32);
        frame.encode(&mut bytes);
        let result = self.writer.lock().await.write_all(&bytes).await;
        if result.is_err() {
            self.broken.store(true, Ordering::Release);
        }
        result
    }
}

/// Hands every frame the server sends to its call; when the connection
/// ends, its calls end too (their answers then fail).
async fn read_answers(connection: Arc<Connection>, mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>) {
    loop {
        let frame = match frame::read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        let ends = frame.has(END);
        let stream = frame.stream;
        let mut calls = connection.calls();
        if let Some(call) = calls.get(&stream) {
            let _ = call.send(frame);
        }
        if ends {
            calls.remove(&stream);
        }
    }
    connection.broken.store(true, Ordering::Release);
    connection.calls().clear();
}

/// The answer of a call, as the HTTP body the service clients decode.
struct Answer {
    receiver: mpsc::UnboundedReceiver<Frame>,
    connection: Arc<Connection>,
    stream: u32,
    /// The frame that came before the answer was handed out.
    first: Option<Frame>,
    /// Status that came with the last data, to give after it.
    trailers: Option<http::HeaderMap>,
    done: bool,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if let Some(trailers) = self.trailers.take() {
            self.done = true;
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match self.first.take() {
            Some(frame) => frame,
            None => match std::task::ready!(self.receiver.poll_recv(cx)) {
                Some(frame) => frame,
                None => {
                    self.done = true;
                    let lost = tonic::Status::unavailable("the connection to the server was lost");
                    return Poll::Ready(Some(Err(lost)));
                }
            },
        };
        if frame.has(END) {
            self.done = true;
            let trailers = trailers(&frame.headers);
            if frame.data.is_empty() {
                return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
            }
            self.trailers = Some(trailers);
        }
        Poll::Ready(Some(Ok(http_body::Frame::data(frame.data))))
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The caller gave up (a dropped subscription): tell the server.
        cancel(&self.connection, self.stream);
    }
}

fn trailers(headers: &[(String, Bytes)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value))
        {
            map.insert(name, value);
        }
    }
    map
}
