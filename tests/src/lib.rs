//! franzy-tests: fixtures shared by the end-to-end tests in `tests/tests/`.
//!
//! [`RawConnection`] speaks the Kafka protocol frame by frame over any byte stream (a TCP
//! socket or an in-memory connection to the harness), for tests that need to control exactly
//! what goes on the wire: hostile input, version negotiation, fault injection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franzy::proto::frame::{encode_frame, FrameDecoder};
use franzy::proto::message::{decode_response, encode_request};
use franzy::proto::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a fixture waits for the harness before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// Errors of the fixtures; tests unwrap them.
#[derive(Debug)]
pub enum FixtureError {
    /// The peer closed the connection.
    Closed,
    /// Nothing arrived in time.
    TimedOut,
    /// An IO error.
    Io(std::io::Error),
    /// The bytes did not decode.
    Decode(String),
}

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for FixtureError {}

/// A Kafka connection driven by hand.
pub struct RawConnection<S> {
    stream: S,
    buf: BytesMut,
    next_correlation_id: i32,
    client_id: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConnection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            next_correlation_id: 1,
            client_id: "franzy-tests".into(),
        }
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), FixtureError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(FixtureError::Io)?;
        self.stream.flush().await.map_err(FixtureError::Io)
    }

    /// Sends `body` framed with a length prefix but no header processing.
    pub async fn send_frame(&mut self, body: &[u8]) -> Result<(), FixtureError> {
        let mut out = BytesMut::new();
        encode_frame(body, &mut out).map_err(|e| FixtureError::Decode(e.to_string()))?;
        self.send_raw(&out).await
    }

    /// Sends a request and returns its correlation id.
    pub async fn send(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<i32, FixtureError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, body).map_err(|e| FixtureError::Decode(e.to_string()))?;
        self.send_raw(&out).await?;
        Ok(correlation_id)
    }

    /// Reads the next frame, waiting at most [`WAIT`].
    pub async fn read_frame(&mut self) -> Result<Bytes, FixtureError> {
        self.read_frame_within(WAIT).await
    }

    /// Reads the next frame, waiting at most `wait`.
    pub async fn read_frame_within(&mut self, wait: Duration) -> Result<Bytes, FixtureError> {
        let decoder = FrameDecoder::default();
        tokio::time::timeout(wait, async {
            loop {
                if let Some(frame) = decoder
                    .decode(&mut self.buf)
                    .map_err(|e| FixtureError::Decode(e.to_string()))?
                {
                    return Ok(frame);
                }
                let n = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(FixtureError::Io)?;
                if n == 0 {
                    return Err(FixtureError::Closed);
                }
            }
        })
        .await
        .map_err(|_| FixtureError::TimedOut)?
    }

    /// Sends a request and decodes its response, checking the correlation id.
    pub async fn request(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<(ResponseHeader, ResponseKind), FixtureError> {
        let correlation_id = self.send(api, version, body).await?;
        let frame = self.read_frame().await?;
        let (header, response) = decode_response(frame, api, version)
            .map_err(|e| FixtureError::Decode(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(FixtureError::Decode(format!(
                "correlation id {} for request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok((header, response))
    }

    /// Waits for the peer to close the connection: `Ok` on EOF or reset, an error if data
    /// arrives or nothing happens within `wait`.
    pub async fn expect_closed(&mut self, wait: Duration) -> Result<(), FixtureError> {
        match self.read_frame_within(wait).await {
            Err(FixtureError::Closed) => Ok(()),
            Err(FixtureError::Io(_)) => Ok(()),
            Err(other) => Err(other),
            Ok(frame) => Err(FixtureError::Decode(format!(
                "expected a close, got a {}-byte frame",
                frame.len()
            ))),
        }
    }
}

/// An ApiVersions request as a well-behaved client sends it: v3+ requires a software name
/// and version (KIP-511).
pub fn api_versions_request() -> RequestKind {
    RequestKind::ApiVersions(
        franzy::kafka_protocol::messages::ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("franzy-tests"))
            .with_client_software_version(StrBytes::from_static_str("1.0")),
    )
}

/// Installs a tracing subscriber for a test binary once (`RUST_LOG` sets the filter).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Tracing events captured by [`capture_events`]: one line per event, `LEVEL message k=v ...`.
#[derive(Clone, Default, Debug)]
pub struct CapturedEvents(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl CapturedEvents {
    /// The events so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

struct CaptureLayer(CapturedEvents);

struct LineVisitor<'a>(&'a mut String);

impl tracing::field::Visit for LineVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut LineVisitor(&mut line));
        if let Ok(mut lines) = (self.0).0.lock() {
            lines.push(line);
        }
    }
}

/// Captures every tracing event on this thread until the guard is dropped (a
/// `#[tokio::test]` runs its tasks on the test's thread, so the harness's events land here).
pub fn capture_events() -> (CapturedEvents, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt;
    let events = CapturedEvents::default();
    let subscriber = tracing_subscriber::registry().with(CaptureLayer(events.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (events, guard)
}

/// A small seeded generator (SplitMix64) for randomized tests: the same seed gives the same
/// run (print the seed on failure).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}
