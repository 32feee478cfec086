//! The limits on the messages a client sends, checked as the bytes
//! arrive: a message whose 5-byte gRPC prefix announces more than the
//! limit fails its call with `RESOURCE_EXHAUSTED`, as `streams.proto`
//! promises, before any of it is buffered (tonic's own check, which
//! stays at the same limit behind this one, says `OUT_OF_RANGE`). Each
//! message also reserves its length from the door's [`ByteBudget`] while
//! it arrives: when many large messages are in flight at once, the next
//! fails with `RESOURCE_EXHAUSTED` (`server_busy`) instead of taking
//! memory past the budget.
//!
//! The check wraps each request's body ([`limited`] wraps the routes), so
//! it holds for unary and streaming calls alike, on HTTP/2 and on the
//! native transport: a streaming call reads its earlier messages, then
//! its next read fails with the status.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use http_body::{Frame, SizeHint};
use quipu_node::byte_budget::{ByteBudget, BytesReserved};
use tonic::Status;

/// Bytes of the prefix of each gRPC message: a compression flag and a
/// big-endian length.
const PREFIX_BYTES: usize = 5;

/// What each request's messages are held to.
#[derive(Debug, Clone)]
struct Limits {
    /// The largest message.
    message_max: usize,
    /// The bytes of messages the door buffers at once.
    budget: Arc<ByteBudget>,
}

/// `routes`, each request's messages held to `message_max` bytes and,
/// together, to `budget`.
#[must_use]
pub fn limited(routes: tonic::service::Routes, message_max: usize, budget: Arc<ByteBudget>) -> tonic::service::Routes {
    let limits = Limits { message_max, budget };
    let router = routes.into_axum_router().layer(axum::middleware::map_request_with_state(limits, limit));
    tonic::service::Routes::from(router)
}

/// `request` with its body's messages checked against `limits`.
async fn limit(State(limits): State<Limits>, request: Request) -> Request {
    request.map(|body| Body::new(LimitedBody { inner: body, limits, framing: Framing::default(), reserved: None }))
}

/// Where a body is in its stream of messages.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current message's prefix seen so far.
    prefix: [u8; PREFIX_BYTES],
    /// How many of them (`PREFIX_BYTES` once it is whole).
    prefix_seen: usize,
    /// Bytes of the current message still to come after its prefix.
    message_left: usize,
}

impl Framing {
    /// Follows `data`, the next bytes of the body, calling `on_message`
    /// with the announced length of each message whose prefix is among
    /// them; stops at its first error.
    fn follow(
        &mut self,
        mut data: &[u8],
        mut on_message: impl FnMut(usize) -> Result<(), Status>,
    ) -> Result<(), Status> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let taken = self.message_left.min(data.len());
                self.message_left -= taken;
                data = data.get(taken..).unwrap_or_default();
                continue;
            }
            let taken = (PREFIX_BYTES - self.prefix_seen).min(data.len());
            let (head, rest) = data.split_at(taken);
            if let Some(unfilled) = self.prefix.get_mut(self.prefix_seen..self.prefix_seen + taken) {
                unfilled.copy_from_slice(head);
            }
            self.prefix_seen += taken;
            data = rest;
            if self.prefix_seen < PREFIX_BYTES {
                continue;
            }
            let [_, a, b, c, d] = self.prefix;
            let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
            on_message(length)?;
            (self.prefix_seen, self.message_left) = (0, length);
        }
        Ok(())
    }

    /// Whether the bytes so far end a message (or none began).
    fn between_messages(&self) -> bool {
        self.prefix_seen == 0 && self.message_left == 0
    }
}

/// A request body whose messages are checked as they arrive.
struct LimitedBody {
    inner: Body,
    limits: Limits,
    framing: Framing,
    /// The bytes of the message arriving now, reserved from the budget.
    reserved: Option<BytesReserved>,
}

impl LimitedBody {
    /// Follows `data` (see [`Framing::follow`]), refusing a message over
    /// the limit or beyond the budget.
    fn check(&mut self, data: &[u8]) -> Result<(), Status> {
        let Limits { message_max, budget } = &self.limits;
        let mut reserved = self.reserved.take();
        let checked = self.framing.follow(data, |length| {
            if length > *message_max {
                return Err(Status::resource_exhausted(format!(
                    "message_too_large: a message of {length} bytes; the server takes messages of at most \
                     {message_max} bytes"
                )));
            }
            // The message before has arrived whole.
            reserved = None;
            let taken = budget.try_reserve(length).map_err(|error| {
                Status::resource_exhausted(format!("server_busy: {error} (--max-request-bytes-in-flight)"))
            })?;
            reserved = Some(taken);
            Ok(())
        });
        if !self.framing.between_messages() {
            self.reserved = reserved;
        }
        checked
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = this.check(data)
        {
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes
    }

    /// The lengths `framing` announces as `body` arrives in pieces of
    /// `piece` bytes.
    fn lengths(body: &[u8], piece: usize) -> Vec<usize> {
        let mut framing = Framing::default();
        let mut lengths = Vec::new();
        for chunk in body.chunks(piece) {
            framing
                .follow(chunk, |length| {
                    lengths.push(length);
                    Ok(())
                })
                .expect("no refusal");
        }
        assert!(framing.between_messages(), "the body ends a message");
        lengths
    }

    #[test]
    fn each_message_is_announced_once_whatever_the_pieces() {
        let mut body = prefixed(3);
        body.extend_from_slice(b"abc");
        body.extend(prefixed(10));
        body.extend_from_slice(&[7; 10]);
        body.extend(prefixed(0));
        for piece in [1, 2, 4, 7, body.len()] {
            assert_eq!(lengths(&body, piece), vec![3, 10, 0], "pieces of {piece}");
        }
    }

    fn limited_body(message_max: usize, budget_bytes: usize) -> LimitedBody {
        let limits = Limits { message_max, budget: ByteBudget::new(budget_bytes) };
        LimitedBody { inner: Body::empty(), limits, framing: Framing::default(), reserved: None }
    }

    #[test]
    fn a_prefix_announcing_more_than_the_limit_is_refused_even_split() {
        let mut body = prefixed(2);
        body.extend_from_slice(b"ok");
        body.extend(prefixed(11));
        let mut limited = limited_body(10, 1024);
        let (first, second) = body.split_at(8);
        assert!(limited.check(first).is_ok());
        let refused = limited.check(second).expect_err("too large");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().starts_with("message_too_large"), "{refused:?}");
    }

    #[test]
    fn a_message_holds_its_bytes_of_the_budget_until_it_has_arrived() {
        let mut first = limited_body(4096, 4096);
        let mut second = LimitedBody { limits: first.limits.clone(), ..limited_body(4096, 4096) };
        assert!(first.check(&prefixed(3000)).is_ok());
        let refused = second.check(&prefixed(3000)).expect_err("no room");
        assert!(refused.message().starts_with("server_busy"), "{refused:?}");
        assert!(first.check(&[0; 3000]).is_ok());
        let mut third = LimitedBody { limits: first.limits.clone(), ..limited_body(4096, 4096) };
        assert!(third.check(&prefixed(3000)).is_ok(), "the first gave its bytes back");
    }
}
