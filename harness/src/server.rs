//! The thin loop around the pure cluster: socket -> frame -> handler -> frame -> socket.
//!
//! One task per connection. Requests on a connection are handled one at a time and answered
//! in order, as a Kafka broker does (it mutes a channel while a request is in flight), so a
//! delayed or parked request holds back the ones behind it on the same connection.
//!
//! Anything that cannot be a Kafka request (a bad length prefix, an unknown API key, a body
//! that does not decode, an API or version we do not implement other than ApiVersions)
//! closes the connection with a tracing event; the broker keeps serving everyone else.
//! Memory per connection is bounded by the largest frame accepted plus one read.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use franzy::proto::frame::FrameDecoder;
use franzy::proto::message::{decode_request, encode_response, peek_request_prefix};
use franzy::proto::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::control::{Action, RecordedRequest};
use crate::handlers::{self, api_versions, Reply, RequestContext};
use crate::Shared;

/// Accepts connections for broker `broker_id` until `cancel` fires.
pub(crate) async fn run_listener(
    shared: Arc<Shared>,
    broker_id: i32,
    listener: TcpListener,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(broker = broker_id, %error, "could not set TCP_NODELAY");
                }
                tokio::spawn(serve_connection(
                    shared.clone(),
                    broker_id,
                    stream,
                    peer.to_string(),
                    cancel.clone(),
                ));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(broker = broker_id, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection, TCP or in-memory, until the peer closes it, it misbehaves, or
/// `cancel` fires (broker stopped or cluster shut down).
pub(crate) async fn serve_connection<S>(
    shared: Arc<Shared>,
    broker_id: i32,
    stream: S,
    peer: String,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = info_span!("connection", broker = broker_id, peer = %peer);
    async move {
        tokio::select! {
            () = cancel.cancelled() => debug!("connection closed by broker shutdown"),
            end = connection_loop(&shared, broker_id, stream) => match end {
                End::PeerClosed => debug!("peer closed the connection"),
                End::Closed(reason) => warn!(%reason, "closing connection"),
                End::Io(error) => debug!(%error, "connection error"),
            },
        }
    }
    .instrument(span)
    .await
}

enum End {
    PeerClosed,
    Closed(String),
    Io(std::io::Error),
}

enum Outcome {
    Send(BytesMut),
    Nothing,
    Close(String),
    Hang,
}

async fn connection_loop<S>(shared: &Shared, broker_id: i32, stream: S) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let decoder = FrameDecoder::new(shared.max_frame_size);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // The last response's buffer, emptied, for the next one: a fetch response of tens of
    // megabytes encoded into fresh memory each time cost more in page faults and regrowth
    // copies than the encoding itself.
    let mut spare = BytesMut::new();
    loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return End::Closed(format!("bad frame: {error}")),
            };
            match handle_frame(shared, broker_id, frame, std::mem::take(&mut spare)).await {
                Outcome::Send(mut bytes) => {
                    if let Err(error) = writer.write_all(&bytes).await {
                        return End::Io(error);
                    }
                    if bytes.capacity() <= MAX_SPARE_RESPONSE_BUFFER {
                        bytes.clear();
                        spare = bytes;
                    }
                }
                Outcome::Nothing => {}
                Outcome::Close(reason) => return End::Closed(reason),
                Outcome::Hang => {
                    // Read and discard until the peer gives up, answering nothing.
                    let mut sink = [0u8; 4096];
                    loop {
                        match reader.read(&mut sink).await {
                            Ok(0) => return End::PeerClosed,
                            Ok(_) => {}
                            Err(error) => return End::Io(error),
                        }
                    }
                }
            }
        }
        // Never read more than the frame being assembled can still use, so a peer that
        // announces a large frame costs only the bytes it actually sends.
        match reader.read_buf(&mut buf).await {
            Ok(0) => return End::PeerClosed,
            Ok(_) => {}
            Err(error) => return End::Io(error),
        }
    }
}

/// Largest response buffer a connection keeps for its next response.
const MAX_SPARE_RESPONSE_BUFFER: usize = 64 * 1024 * 1024;

/// Handles one request frame; a response is encoded into `out` (empty, possibly with
/// capacity left from an earlier response).
async fn handle_frame(shared: &Shared, broker_id: i32, frame: Bytes, out: BytesMut) -> Outcome {
    let prefix = match peek_request_prefix(&frame) {
        Ok(prefix) => prefix,
        Err(error) => return Outcome::Close(error.to_string()),
    };
    let Ok(api) = ApiKey::try_from(prefix.api_key) else {
        return Outcome::Close(format!("unknown api key {}", prefix.api_key));
    };
    let version = prefix.api_version;
    let span = info_span!(
        "request",
        api = ?api,
        version,
        correlation_id = prefix.correlation_id
    );
    async move {
        let Some(range) = handlers::supported_range(api) else {
            return Outcome::Close(format!("{api:?} is not implemented by this broker"));
        };
        if version < range.min || version > range.max {
            if api == ApiKey::ApiVersions {
                // KIP-511: answer in v0 with the list, so the client can pick a version.
                shared.record(
                    api,
                    version,
                    broker_id,
                    None,
                    prefix.correlation_id,
                    Vec::new(),
                );
                let body = ResponseKind::ApiVersions(api_versions::unsupported_version_response());
                return encode(out, api, 0, prefix.correlation_id, &body);
            }
            return Outcome::Close(format!("unsupported version {version} of {api:?}"));
        }
        let request = match decode_request(frame) {
            Ok(request) => request,
            Err(error) => return Outcome::Close(error.to_string()),
        };
        let client_id = request.header.client_id.as_ref().map(|s| s.to_string());
        let partitions = handlers::partitions_of(&shared.lock_state(), &request.body);
        shared.record(
            api,
            version,
            broker_id,
            client_id.clone(),
            prefix.correlation_id,
            partitions.clone(),
        );
        let decision = shared.lock_control().decide(api, broker_id, &partitions);
        let action = decision.request_action;
        let body = request.body;
        let reply = match &action {
            Some(Action::Disconnect) => return Outcome::Close("interceptor: disconnect".into()),
            Some(Action::NeverAnswer) => return Outcome::Hang,
            Some(Action::Error(code)) => match handlers::error_response(&body, version, *code) {
                Some(response) => Reply::Respond(response),
                None => {
                    return Outcome::Close(format!("interceptor: {api:?} cannot carry {code:?}"))
                }
            },
            _ => {
                let ctx = RequestContext {
                    broker_id,
                    api_version: version,
                    client_id,
                    now_ms: shared.now_ms(),
                    partition_errors: decision.partition_errors,
                    deadline_reached: false,
                };
                run_handler(shared, ctx, body).await
            }
        };
        let response = match reply {
            Reply::Respond(response) => response,
            Reply::NoResponse => return Outcome::Nothing,
            Reply::Close { reason } => return Outcome::Close(reason),
            Reply::Park { .. } => return Outcome::Close("handler parked past its deadline".into()),
        };
        match action {
            Some(Action::DisconnectAfterHandling) => {
                return Outcome::Close("interceptor: disconnect after handling".into())
            }
            Some(Action::Delay(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let mut outcome = encode(out, api, version, prefix.correlation_id, &response);
        if let (Some(Action::AlterResponse(alter)), Outcome::Send(bytes)) = (&action, &mut outcome)
        {
            alter(bytes);
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Runs the handler; a fetch that parks is run again whenever the cluster changes, and a
/// last time when its wait is over.
async fn run_handler(shared: &Shared, mut ctx: RequestContext, body: RequestKind) -> Reply {
    let retryable = matches!(body, RequestKind::Fetch(_));
    if !retryable {
        let reply = handlers::dispatch(&mut shared.lock_state(), &ctx, body);
        shared.changed.notify_waiters();
        return reply;
    }
    let mut deadline = None;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        // Registered before looking at the state, so a change between the look and the
        // wait is not missed.
        notified.as_mut().enable();
        let reply = handlers::dispatch(&mut shared.lock_state(), &ctx, body.clone());
        let Reply::Park { max_wait } = reply else {
            return reply;
        };
        if ctx.deadline_reached {
            return reply;
        }
        let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + max_wait);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(until) => ctx.deadline_reached = true,
        }
        if tokio::time::Instant::now() >= until {
            ctx.deadline_reached = true;
        }
        ctx.now_ms = shared.now_ms();
    }
}

fn encode(
    mut out: BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Outcome {
    match encode_response(&mut out, api, version, correlation_id, body) {
        Ok(()) => Outcome::Send(out),
        Err(error) => Outcome::Close(format!("could not encode the response: {error}")),
    }
}

impl Shared {
    fn record(
        &self,
        api_key: ApiKey,
        api_version: i16,
        broker_id: i32,
        client_id: Option<String>,
        correlation_id: i32,
        partitions: Vec<(String, i32)>,
    ) {
        let at = self.started.elapsed();
        self.lock_control().record(RecordedRequest {
            api_key,
            api_version,
            broker_id,
            client_id,
            correlation_id,
            at,
            partitions,
        });
    }
}
