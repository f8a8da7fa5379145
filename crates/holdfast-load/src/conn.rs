//! One keep-alive HTTP/1.1 connection per slot, over hyper's low-level
//! client (no pool: the slot is the pool).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::FailureKind;

/// The sending half of a slot's connection; `None` until the first request
/// and after any failure (the next request reconnects).
pub(crate) type Connection = Option<SendRequest<Full<Bytes>>>;

/// A complete answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, FailureKind> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|_| FailureKind::Connect)?;
    // Small requests must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = handshake(TokioIo::new(stream))
        .await
        .map_err(|_| FailureKind::Connect)?;
    // Drives the socket. Ends when the server closes the connection or when
    // the slot drops `sender` (after a failure, or at the end of the run).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` on `connection` (reconnecting first if it is gone or
/// closed) and reads the whole answer. On an error the caller must reset
/// `connection` to `None`.
pub(crate) async fn exchange(
    connection: &mut Connection,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Answer, FailureKind> {
    // A connection the server closed while idle is replaced silently: that
    // is keep-alive housekeeping, not a failed request.
    if let Some(sender) = connection.as_mut()
        && sender.ready().await.is_err()
    {
        *connection = None;
    }
    let sender = match connection {
        Some(sender) => sender,
        None => {
            let mut sender = connect(addr).await?;
            sender.ready().await.map_err(|_| FailureKind::Connect)?;
            connection.insert(sender)
        }
    };
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| FailureKind::Io)?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| FailureKind::Io)?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
