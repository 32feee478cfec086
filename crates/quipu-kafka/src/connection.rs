//! One client connection: length-prefixed frames in, answers out, one at
//! a time and in order (as a Kafka broker answers a connection). A
//! frame's bytes are reserved from the door's budget of bytes in flight
//! before they are read, and given back once it is answered.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

use std::time::Duration;

use quipu_node::byte_budget::{ByteBudget, BytesReserved};

use crate::Door;
use crate::api::{self, ApiError};

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`
/// default).
const FRAME_BYTES_MAX: i32 = 100 * 1024 * 1024;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent a frame length out of bounds.
    #[error("a request frame of {0} bytes (at most {FRAME_BYTES_MAX})")]
    FrameSize(i32),
    /// The door's budget of bytes in flight had no room for the frame.
    #[error("a request frame refused: {0}")]
    Budget(#[from] quipu_node::byte_budget::BudgetError),
    /// The client sent nothing for the door's idle timeout.
    #[error("idle for {0:?}")]
    Idle(std::time::Duration),
    /// A request began and did not finish within the request timeout.
    #[error("a request unfinished after {0:?}")]
    Unfinished(std::time::Duration),
    /// The request could not be answered; the connection closes.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Serves `socket` until the client leaves, a request is refused, the
/// client is idle past [`crate::DoorConfig::idle_timeout`] or leaves a
/// request unfinished past [`crate::DoorConfig::request_timeout`], or the
/// door stops.
pub async fn run(
    door: Arc<Door>,
    socket: TcpStream,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let local = socket.local_addr()?;
    let (idle, unfinished) = (door.config.idle_timeout, door.config.request_timeout);
    let (mut reader, mut writer) = socket.into_split();
    let mut first = [0u8; 1];
    loop {
        // The next request's first byte, looked at and left unread.
        let arrived = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => return Ok(()),
            arrived = tokio::time::timeout(idle, reader.peek(&mut first)) => {
                arrived.map_err(|_| ConnectionError::Idle(idle))??
            }
        };
        if arrived == 0 {
            return Ok(());
        }
        let frame = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => return Ok(()),
            frame = tokio::time::timeout(unfinished, read_frame(&mut reader, &door.frames, unfinished)) => {
                frame.map_err(|_| ConnectionError::Unfinished(unfinished))??
            }
        };
        let Some((frame, reserved)) = frame else { return Ok(()) };
        let answer = api::answer(&door, local, frame).await?;
        drop(reserved);
        let Some(answer) = answer else {
            continue;
        };
        let len = i32::try_from(answer.len()).map_err(|_| ApiError::Encode("an answer over 2 GiB".into()))?;
        writer.write_i32(len).await?;
        writer.write_all(&answer).await?;
    }
}

/// The next length-prefixed frame, with its bytes reserved from `budget`
/// (waiting up to `wait` for room) before they are allocated and read;
/// `None` when the client closed the connection before one began.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    budget: &ByteBudget,
    wait: Duration,
) -> Result<Option<(Bytes, BytesReserved)>, ConnectionError> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if !(0..=FRAME_BYTES_MAX).contains(&size) {
        return Err(ConnectionError::FrameSize(size));
    }
    let size = usize::try_from(size).unwrap_or_default();
    let reserved = budget.reserve(size, wait).await?;
    let mut frame = vec![0; size];
    reader.read_exact(&mut frame).await?;
    Ok(Some((Bytes::from(frame), reserved)))
}
