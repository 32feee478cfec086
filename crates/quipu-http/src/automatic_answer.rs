//! hyper's automatic answers, given the JSON bodies every other error of
//! the API has.
//!
//! hyper answers a request it cannot parse by itself, before the router
//! sees anything: `400` for a malformed request line or header, `414` for
//! a request target over 65,534 bytes, `431` for headers over the read
//! buffer ([`HEADER_BYTES_MAX`]) or over 100 of them; each with an empty
//! body, then it closes the connection. hyper has no hook for these
//! answers, so [`JsonAnswers`] wraps the connection and rewrites them as
//! they are written: a response head of one of these statuses with
//! `content-length: 0`, written whole in one write, is what hyper writes
//! then and nothing else (the router's answers of these statuses all
//! carry a JSON body), and it is the last thing written on the
//! connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Bytes;
use quipu_node::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The size of hyper's read buffer, which a request's head must fit:
/// hyper's default, named so that the `431` answer can say it.
pub const HEADER_BYTES_MAX: usize = 8192 + 4096 * 100;

/// A connection whose automatic answers carry JSON bodies.
#[derive(Debug)]
pub struct JsonAnswers<S> {
    inner: S,
    /// A rewritten answer not yet wholly written.
    pending: Bytes,
}

impl<S> JsonAnswers<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> JsonAnswers<S> {
        JsonAnswers { inner, pending: Bytes::new() }
    }
}

/// The code and message of the automatic answer whose status line begins
/// `head`, if it is one.
fn automatic(head: &[u8]) -> Option<(ErrorCode, String)> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..4)?;
    match status {
        b"400 " => Some((
            ErrorCode::MalformedRequest,
            "the request does not parse as HTTP/1.1: its request line or a header is malformed".to_owned(),
        )),
        b"414 " => {
            Some((ErrorCode::UriTooLong, "the request target is longer than the server takes (65534 bytes)".to_owned()))
        }
        b"431 " => Some((
            ErrorCode::HeadersTooLarge,
            format!("the request's headers are larger than the server takes ({HEADER_BYTES_MAX} bytes, 100 headers)"),
        )),
        _ => None,
    }
}

/// `written` rewritten with a JSON body when it is a whole automatic
/// answer (see the module's documentation); `None` otherwise.
fn rewritten(written: &[u8]) -> Option<Bytes> {
    let (code, message) = automatic(written)?;
    let text = std::str::from_utf8(written).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut headers: Vec<&str> = lines.collect();
    let empty = headers.iter().position(|line| line.eq_ignore_ascii_case("content-length: 0"))?;
    headers.remove(empty);
    let body = serde_json::json!({"code": code.as_str(), "message": message}).to_string();
    let mut answer = format!("{status_line}\r\n");
    for line in headers {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()));
    Some(Bytes::from(answer))
}

impl<S: AsyncWrite + Unpin> JsonAnswers<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending = self.pending.slice(written.min(self.pending.len())..);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonAnswers<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonAnswers<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = rewritten(data) {
            // Taken whole now, written by this call and the flush after.
            self.pending = answer;
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = data.iter().find(|slice| !slice.is_empty());
        if first.is_some_and(|slice| automatic(slice).is_some()) {
            // Rare (an automatic answer's status line, or a body that
            // begins so): gathered and looked at whole.
            let gathered: Vec<u8> = data.iter().flat_map(|slice| slice.iter().copied()).collect();
            return self.poll_write(cx, &gathered);
        }
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_automatic_answer_gets_a_json_body_and_keeps_its_other_headers() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
        let answer = rewritten(hyper).expect("rewritten");
        let text = std::str::from_utf8(&answer).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("date: Mon, 01 Jan 2024"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(!head.contains("content-length: 0"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["code"], "headers_too_large");
    }

    #[test]
    fn answers_with_a_body_or_of_other_statuses_are_left_alone() {
        let router = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(rewritten(router).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(rewritten(ok).is_none());
        let partial = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n";
        assert!(rewritten(partial).is_none());
    }
}
