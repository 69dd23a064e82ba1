//! One TCP connection to a broker, one request at a time: frames out, frames in, each wait
//! bounded. No policy: the oracle (`oracle.rs`) judges what comes back.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franzy::proto::message::{decode_response, encode_request};
use franzy::proto::{ApiKey, RequestHeader, RequestKind, ResponseKind, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame read; a longer announced size is reported as undecodable.
pub const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// The client id of every request the fuzzer builds itself.
pub const CLIENT_ID: &str = "franzy-fuzz";

/// What came back for one request.
#[derive(Debug)]
pub enum Reply {
    /// A whole response frame (without its size prefix).
    Frame(Bytes),
    /// The broker closed the connection before a whole frame came.
    Closed,
    /// Nothing (or not all of a frame) within the wait.
    TimedOut,
    /// The announced size is negative or above [`MAX_RESPONSE`].
    BadSize(i64),
}

/// A connection to one broker.
pub struct Wire {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Wire {
    /// Connects within `wait`.
    pub async fn connect(address: &str, wait: Duration) -> Result<Self, String> {
        let stream = tokio::time::timeout(wait, TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            next_correlation_id: 1,
        })
    }

    /// A fresh correlation id.
    pub fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    /// Sends `frame` (size prefix included) and waits up to `wait` for the reply, or only
    /// sends when `wait` is `None` (a request the broker does not answer).
    pub async fn exchange(&mut self, frame: &[u8], wait: Option<Duration>) -> Reply {
        if self.stream.write_all(frame).await.is_err() {
            return Reply::Closed;
        }
        match wait {
            Some(wait) => match tokio::time::timeout(wait, self.read_frame()).await {
                Ok(reply) => reply,
                Err(_) => Reply::TimedOut,
            },
            None => Reply::TimedOut,
        }
    }

    async fn read_frame(&mut self) -> Reply {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).await.is_err() {
            return Reply::Closed;
        }
        let size = i32::from_be_bytes(size);
        let Ok(len) = usize::try_from(size) else {
            return Reply::BadSize(i64::from(size));
        };
        if len > MAX_RESPONSE {
            return Reply::BadSize(i64::from(size));
        }
        let mut body = vec![0u8; len];
        if self.stream.read_exact(&mut body).await.is_err() {
            return Reply::Closed;
        }
        Reply::Frame(body.into())
    }

    /// Sends a well-formed request and decodes its response. For the conversations that
    /// build the corpus; returns the request's frame too.
    pub async fn call(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
        wait: Duration,
    ) -> Result<(Bytes, ResponseKind), String> {
        let frame = request_frame(api_key, version, self.correlation_id(), &body)?;
        match self.exchange(&frame, Some(wait)).await {
            Reply::Frame(response) => {
                let (_, decoded) = decode_response(response, api_key, version)
                    .map_err(|e| format!("{api_key:?} v{version}: {e}"))?;
                Ok((frame, decoded))
            }
            other => Err(format!("{api_key:?} v{version}: {other:?}")),
        }
    }
}

/// A request frame, size prefix included.
pub fn request_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &RequestKind,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut out = BytesMut::new();
    encode_request(&mut out, &header, body).map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

/// `frame` (size prefix included) with its correlation id set, when it is long enough to
/// have one.
pub fn with_correlation_id(frame: &[u8], correlation_id: i32) -> Vec<u8> {
    let mut out = frame.to_vec();
    if let Some(slot) = out.get_mut(8..12) {
        slot.copy_from_slice(&correlation_id.to_be_bytes());
    }
    out
}

/// `body` (a frame without size prefix) with a size prefix.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}
