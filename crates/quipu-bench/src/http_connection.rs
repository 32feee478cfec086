//! One keep-alive HTTP/1.1 connection to the server, as a JSON client
//! holds it: requests go one at a time over the same TCP connection
//! (hyper's client, no pool), and each answer is read whole. `connection`
//! speaks the API's JSON over it.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// An open HTTP/1.1 connection.
pub struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
    /// The `Host` header: the server's address.
    host: String,
}

impl HttpConnection {
    /// Connects to `address` (with `TCP_NODELAY`, so a small request is not
    /// held back waiting for an acknowledgement) and starts the connection's
    /// task on the current runtime.
    ///
    /// # Errors
    /// Nothing answers at `address`, or the handshake fails.
    pub async fn open(address: SocketAddr) -> anyhow::Result<HttpConnection> {
        let stream =
            tokio::net::TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "bench HTTP connection ended");
            }
        });
        Ok(HttpConnection { sender, host: address.to_string() })
    }

    /// `POST path` with a JSON `body`; the status and the whole answer.
    ///
    /// # Errors
    /// The connection failed or closed.
    pub async fn post_json(&mut self, path: &str, body: String) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `GET path`; the status and the whole answer.
    ///
    /// # Errors
    /// The connection failed or closed.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::GET, path, None).await
    }

    /// Sends one request, with a JSON body when there is one, and reads
    /// the whole answer.
    async fn send(&mut self, method: Method, path: &str, json: Option<String>) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(path).header(HOST, &self.host);
        if json.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let body = Full::new(json.map(Bytes::from).unwrap_or_default());
        let request = request.body(body).with_context(|| format!("building a request for {path}"))?;
        self.sender.ready().await.context("the HTTP connection closed")?;
        let response = self.sender.send_request(request).await.with_context(|| format!("requesting {path}"))?;
        let status = response.status();
        let answer = response.into_body().collect().await.with_context(|| format!("reading the answer of {path}"))?;
        Ok((status, answer.to_bytes()))
    }
}
