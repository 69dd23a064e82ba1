//! The thin loop around the pure cluster: socket -> frame -> handler -> frame -> socket.
//!
//! One task per connection. Requests on a connection are handled one at a time and answered
//! in order, as a Kafka broker does (it mutes a channel while a request is in flight), so a
//! delayed or parked request holds back the ones behind it on the same connection.
//!
//! A request whose handler answers `Reply::Park` (a fetch short of `min_bytes`) moves into
//! the cluster's purgatory under the state lock, and the connection waits for its answer on
//! a channel: whoever makes it ready (a produce on another connection touching its
//! partition, the timer task at its deadline, see `waiting.rs`) looks at it again under the
//! lock and delivers the answer. No handler runs again with a copy of the request. While it
//! waits, the connection keeps reading (up to [`ALLOWANCE`]), so a peer that goes away takes
//! its waiting request with it.
//!
//! Anything that cannot be a Kafka request (a bad length prefix, an unknown API key, a body
//! that does not decode, an API or version we do not implement other than ApiVersions)
//! closes the connection with a tracing event; the broker keeps serving everyone else.
//!
//! Memory: a frame's buffer grows with the bytes received, never with the length the frame
//! announces. Bytes past a connection's first [`ALLOWANCE`] count against the cluster's
//! frame budget (`frame_budget.rs`) until their request has been handled; a connection
//! that would exceed it stops reading. A connection that holds part of a frame and receives
//! nothing for the idle timeout is closed.
//!
//! The state lock: a request takes it briefly to resolve topic ids and read what it needs
//! (for Produce, the topics' append limits), then once more to run its handler. A produce
//! request's batches are validated between the two, without the lock ([`prepare`]):
//! CRCs, records, decompression, timestamps; a Metadata request's names are sorted out
//! there too. Answers that the handler left unfinished ([`Reply::Finish`]) are built after
//! the lock. Large or compressed batches are validated on the pool of heavy work
//! (`heavy.rs`), and a large request ([`heavy`]) is decoded, planned, finished and encoded
//! there, so that neither a request that inflates hundreds of megabytes nor one of 200,000
//! entries stalls the other connections.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use franzy::proto::frame::FrameDecoder;
use franzy::proto::message::{decode_request, encode_response, peek_request_prefix};
use franzy::proto::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, info_span, warn, Instrument};
use uuid::Uuid;

use crate::cluster::WaiterId;
use crate::control::{Action, RequestSummary};
use crate::handlers::produce::{self, TopicLimits};
use crate::handlers::{self, api_versions, Prepared, Reply, RequestContext};
use crate::security::{Session, Verdict};
use crate::trace::Direction;
use crate::waiting::{Parking, WaitGuard};
use crate::Shared;

/// Bytes a connection may buffer without drawing on the frame budget, and the most it reads
/// at once while no large frame is being assembled: enough for any small request, and about
/// what the kernel already buffers per socket.
const ALLOWANCE: usize = 64 * 1024;

/// The most a connection reads at once into a large frame.
const LARGE_READ: usize = 1024 * 1024;

/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest request frame before authentication (Kafka's
/// `sasl.server.max.receive.size`).
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

/// Largest response buffer a connection keeps for its next response.
const MAX_SPARE_RESPONSE_BUFFER: usize = 64 * 1024 * 1024;

/// Most bytes of response buffers kept by all connections together: past it, a
/// connection's buffer is freed after its response.
const MAX_SPARE_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Accepts connections for broker `broker_id` until `cancel` fires.
pub(crate) async fn run_listener(
    shared: Arc<Shared>,
    broker_id: i32,
    listener: TcpListener,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
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
        let serve = async {
            match shared.security.as_ref().and_then(|s| s.tls.as_ref()) {
                // TLS listeners: the handshake first (bounded), then the same loop.
                Some(tls) => {
                    let handshake = tls.acceptor.accept(stream);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => connection_loop(&shared, broker_id, stream, &peer).await,
                        Ok(Err(error)) => End::Tls(error.to_string()),
                        Err(_) => End::Tls("handshake timed out".into()),
                    }
                }
                None => connection_loop(&shared, broker_id, stream, &peer).await,
            }
        };
        // Biased everywhere: tokio's default random branch order would make a run
        // depend on more than its seed (the fault lab replays runs byte for byte).
        tokio::select! {
            biased;
            () = cancel.cancelled() => debug!("connection closed by broker shutdown"),
            end = serve => match end {
                End::PeerClosed => debug!("peer closed the connection"),
                End::Closed(reason) => warn!(%reason, "closing connection"),
                End::Io(error) => debug!(%error, "connection error"),
                End::Tls(reason) => debug!(%reason, "TLS handshake failed"),
                End::Unauthenticated(reason) => debug!(%reason, "authentication failed"),
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
    Tls(String),
    Unauthenticated(String),
}

enum Outcome {
    Send(BytesMut),
    /// Answer, then close (a failed authentication, as Kafka does).
    SendThenClose(BytesMut, String),
    Nothing,
    Close(String),
    /// The peer went away while its request waited.
    PeerClosed,
    Hang,
}

/// The connection's reading side while one of its requests waits: bytes that arrive are
/// kept for the requests pipelined behind it (up to the [`ALLOWANCE`], which needs no frame
/// budget), and the end of the stream is noticed, so that a client that goes away takes its
/// waiting request with it instead of leaving it until its deadline.
struct Peer<'a, R> {
    reader: &'a mut R,
    buf: &'a mut BytesMut,
    /// Where the connection comes from, as Kafka reports a client's host.
    client_host: &'a Arc<str>,
}

impl<R: AsyncRead + Unpin> Peer<'_, R> {
    /// Resolves when the peer closed the connection (or reading failed); never while it is
    /// open. Cancel-safe: bytes are only taken when they are there.
    async fn gone(&mut self) {
        loop {
            let room = ALLOWANCE.saturating_sub(self.buf.len());
            if room == 0 {
                // Enough is waiting to be handled: read no more until it is.
                return std::future::pending().await;
            }
            if self.buf.capacity() - self.buf.len() < room {
                self.buf.reserve(room);
            }
            let mut limited = (&mut *self.buf).limit(room);
            match self.reader.read_buf(&mut limited).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

async fn connection_loop<S>(shared: &Shared, broker_id: i32, stream: S, address: &str) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // As Kafka reports a client's host (`InetAddress.toString()` of an address without a
    // name): "/" and the IP.
    let client_host: Arc<str> = match address.parse::<std::net::SocketAddr>() {
        Ok(socket) => Arc::from(format!("/{}", socket.ip())),
        Err(_) => Arc::from(format!("/{address}")),
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let decoder = FrameDecoder::new(shared.max_frame_size);
    // A connection answers in order, so at most one of its requests waits at a time.
    let waiter = WaiterId(shared.next_waiter.fetch_add(1, Ordering::Relaxed));
    let mut buf = BytesMut::new();
    let mut share = shared.frame_budget.share();
    // The last response's buffer, emptied, for the next one: a fetch response of tens of
    // megabytes encoded into fresh memory each time cost more in page faults and regrowth
    // copies than the encoding itself.
    let mut spare = SpareBuffer::new(shared);
    let mut session = Session::new();
    loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return End::Closed(format!("bad frame: {error}")),
            };
            let mut peer = Peer {
                reader: &mut reader,
                buf: &mut buf,
                client_host: &client_host,
            };
            shared.stats.request(&frame);
            if let Some(trace) = &shared.trace {
                trace.feed(waiter.0, broker_id, Direction::Request, &frame);
            }
            let outcome = handle_frame(
                shared,
                broker_id,
                waiter,
                frame,
                spare.take(),
                &mut peer,
                &mut session,
            )
            .await;
            // The request is handled and its frame dropped: its bytes leave the budget.
            share.end_overdraft();
            share.shrink_to(over_allowance(buf.len()));
            if let Some(trace) = &shared.trace {
                let (direction, bytes): (_, &[u8]) = match &outcome {
                    Outcome::Send(bytes) => (Some(Direction::Response), bytes),
                    Outcome::SendThenClose(bytes, _) => {
                        // The close that follows is not traced: it always does.
                        (Some(Direction::Response), bytes)
                    }
                    Outcome::Close(_) | Outcome::PeerClosed => (Some(Direction::Closed), &[]),
                    Outcome::Hang => (Some(Direction::Silenced), &[]),
                    Outcome::Nothing => (None, &[]),
                };
                if let Some(direction) = direction {
                    trace.feed(waiter.0, broker_id, direction, bytes);
                }
            }
            if let Outcome::Send(bytes) | Outcome::SendThenClose(bytes, _) = &outcome {
                shared.stats.response(bytes.len());
            }
            match outcome {
                Outcome::Send(bytes) => {
                    if let Err(error) = writer.write_all(&bytes).await {
                        return End::Io(error);
                    }
                    spare.keep(bytes);
                }
                Outcome::SendThenClose(bytes, reason) => {
                    if let Err(error) = writer.write_all(&bytes).await {
                        return End::Io(error);
                    }
                    let _ = writer.flush().await;
                    return End::Unauthenticated(reason);
                }
                Outcome::Nothing => {}
                Outcome::Close(reason) => return End::Closed(reason),
                Outcome::PeerClosed => return End::PeerClosed,
                Outcome::Hang => {
                    // Read and discard until the peer gives up, answering nothing.
                    drop(buf);
                    share.shrink_to(0);
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
        if buf.is_empty() && buf.capacity() > ALLOWANCE {
            // A large frame's memory goes with it, not with the connection.
            buf = BytesMut::new();
        }
        // Read only what the frame being assembled can use (and, for small frames, the
        // start of the next ones): a frame's length reserves nothing, its bytes do.
        let frame_length = match decoder.peek_length(&buf) {
            Ok(length) => length.map(|n| n.saturating_add(4)),
            Err(error) => return End::Closed(format!("bad frame: {error}")),
        };
        let mut chunk = match frame_length {
            Some(total) if total > ALLOWANCE => total.saturating_sub(buf.len()).min(LARGE_READ),
            _ => ALLOWANCE.saturating_sub(buf.len()).max(1),
        };
        let partial = !buf.is_empty();
        let needed = over_allowance(buf.len().saturating_add(chunk));
        if needed > share.held() {
            let Some(covered) = idle_limit(shared, partial, share.grow_to(needed)).await else {
                return End::Closed(format!(
                    "no room in the frame budget for {:?}, {} bytes of a frame received",
                    shared.idle_timeout.unwrap_or_default(),
                    buf.len()
                ));
            };
            chunk = chunk.min(
                covered
                    .saturating_add(ALLOWANCE)
                    .saturating_sub(buf.len())
                    .max(1),
            );
        }
        if buf.capacity() - buf.len() < chunk {
            // Grow by doubling, but never past the frame's end.
            let room = match frame_length {
                Some(total) => buf.len().min(total.saturating_sub(buf.len())).max(chunk),
                None => chunk,
            };
            buf.reserve(room);
        }
        let mut limited = (&mut buf).limit(chunk);
        let read = idle_limit(shared, partial, reader.read_buf(&mut limited)).await;
        match read {
            None => {
                return End::Closed(format!(
                    "nothing received for {:?} in the middle of a frame ({} of {} bytes)",
                    shared.idle_timeout.unwrap_or_default(),
                    buf.len(),
                    frame_length.map_or_else(|| "?".to_string(), |n| n.to_string())
                ))
            }
            Some(Ok(0)) => return End::PeerClosed,
            Some(Ok(_)) => share.shrink_to(over_allowance(buf.len())),
            Some(Err(error)) => return End::Io(error),
        }
    }
}

/// Bytes of `buffered` that count against the frame budget.
fn over_allowance(buffered: usize) -> usize {
    buffered.saturating_sub(ALLOWANCE)
}

/// `wait`, bounded by the idle timeout when the connection holds part of a frame; `None`
/// when it ran out.
async fn idle_limit<F: std::future::Future>(
    shared: &Shared,
    partial: bool,
    wait: F,
) -> Option<F::Output> {
    match shared.idle_timeout {
        Some(idle) if partial => tokio::time::timeout(idle, wait).await.ok(),
        _ => Some(wait.await),
    }
}

/// A connection's response buffer between responses, its capacity counted in
/// [`Shared::spare_response_bytes`] so that all connections together keep at most
/// [`MAX_SPARE_RESPONSE_BYTES`].
struct SpareBuffer<'a> {
    shared: &'a Shared,
    buffer: BytesMut,
    counted: usize,
}

impl<'a> SpareBuffer<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            buffer: BytesMut::new(),
            counted: 0,
        }
    }

    fn take(&mut self) -> BytesMut {
        self.uncount();
        std::mem::take(&mut self.buffer)
    }

    fn keep(&mut self, mut buffer: BytesMut) {
        self.uncount();
        let capacity = buffer.capacity();
        if capacity > MAX_SPARE_RESPONSE_BUFFER {
            return;
        }
        let kept = self.shared.spare_response_bytes.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |total| {
                total
                    .checked_add(capacity)
                    .filter(|&t| t <= MAX_SPARE_RESPONSE_BYTES)
            },
        );
        if kept.is_ok() {
            buffer.clear();
            self.buffer = buffer;
            self.counted = capacity;
        }
    }

    fn uncount(&mut self) {
        if self.counted > 0 {
            self.shared
                .spare_response_bytes
                .fetch_sub(self.counted, Ordering::Relaxed);
            self.counted = 0;
        }
    }
}

impl Drop for SpareBuffer<'_> {
    fn drop(&mut self) {
        self.uncount();
    }
}

/// Handles one request frame; a response is encoded into `out` (empty, possibly with
/// capacity left from an earlier response).
async fn handle_frame<R: AsyncRead + Unpin>(
    shared: &Shared,
    broker_id: i32,
    waiter: WaiterId,
    frame: Bytes,
    out: BytesMut,
    peer: &mut Peer<'_, R>,
    session: &mut Session,
) -> Outcome {
    let sasl = shared.security.as_deref().filter(|s| s.uses_sasl());
    if sasl.is_some() && !session.is_authenticated() && frame.len() > MAX_UNAUTHENTICATED_FRAME {
        return Outcome::Close(format!(
            "a {}-byte request before authentication",
            frame.len()
        ));
    }
    let prefix = match peek_request_prefix(&frame) {
        Ok(prefix) => prefix,
        Err(error) => return Outcome::Close(error.to_string()),
    };
    let Ok(api) = ApiKey::try_from(prefix.api_key) else {
        return Outcome::Close(format!("unknown api key {}", prefix.api_key));
    };
    let version = prefix.api_version;
    // At debug level: at info (`franzy serve`'s default) a span per request cost the
    // formatting of its fields, a few percent of the broker's time under load. Warnings
    // from handlers name their API themselves; the connection's span (broker, peer) stays.
    let span = debug_span!(
        "request",
        api = ?api,
        version,
        correlation_id = prefix.correlation_id
    );
    async move {
        // What this cluster serves: the API's entry within its caps (the Kafka release it
        // poses as, per-API maxima). An API it does not serve closes the connection, as
        // Kafka closes it for an API key it does not know.
        let served = handlers::spec(api)
            .and_then(|spec| Some((spec, handlers::served_range(&shared.config, api)?)));
        let Some((spec, served)) = served else {
            return Outcome::Close(format!("{api:?} is not served by this broker"));
        };
        if version < served.min || version > served.max {
            if api == ApiKey::ApiVersions {
                // KIP-511: answer in v0 with ApiVersions' range, so the client can retry.
                shared.record(api, version, broker_id, None, prefix.correlation_id, &[]);
                let body =
                    ResponseKind::ApiVersions(api_versions::unsupported_version_response(served));
                return encode(out, api, 0, prefix.correlation_id, &body);
            }
            return Outcome::Close(format!("unsupported version {version} of {api:?}"));
        }
        // Work proportional to a large request runs where it does not hold up the others.
        let frame_bytes = frame.len();
        let large = frame_bytes > ALLOWANCE;
        let request = match heavy(shared, large, move || decode_request(frame)).await {
            Some(Ok(request)) => request,
            Some(Err(error)) => return Outcome::Close(error.to_string()),
            None => return Outcome::Close("decoding the request failed".into()),
        };
        let client_id = request.header.client_id.as_ref().map(|s| s.to_string());
        let body = request.body;
        // Topic ids are resolved under the lock; the partitions are listed without it.
        let ids = handlers::topic_ids_of(spec, &body, version);
        let names: HashMap<Uuid, Arc<str>> = if ids.is_empty() {
            HashMap::new()
        } else {
            let core = shared.lock_core();
            ids.into_iter()
                .filter_map(|id| Some((id, Arc::from(core.state.topic_by_id(id)?.name()))))
                .collect()
        };
        let listed = heavy(shared, large, move || {
            let partitions = (spec.partitions)(&body, version, &|id| names.get(&id).cloned());
            (body, partitions)
        })
        .await;
        let Some((body, partitions)) = listed else {
            return Outcome::Close("listing the request's partitions failed".into());
        };
        let named_ids = (spec.named_ids)(&body, version);
        let topic_limits = match &body {
            RequestKind::Produce(req) => Some(TopicLimits::read(
                &shared.lock_core().state,
                req,
                version,
                shared.config.max_partitions_per_request,
            )),
            _ => None,
        };
        // Recorded and matched against the interceptors under one hold of the control lock.
        let decision = {
            let mut control = shared.lock_control();
            control.record(RequestSummary {
                api_key: api,
                api_version: version,
                broker_id,
                client_id: client_id.as_deref(),
                correlation_id: prefix.correlation_id,
                at: shared.clock.uptime(),
                partitions: &partitions,
            });
            control.decide_with_body(api, broker_id, &partitions, &named_ids, Some(&body))
        };
        drop(partitions);
        let action = decision.request_action;
        // SASL listeners: the connection's session decides first (authentication,
        // re-authentication, expiry), unless an interceptor takes the request.
        let intercepted = matches!(
            action,
            Some(Action::Disconnect | Action::NeverAnswer | Action::Error(_))
        );
        if let (Some(security), false) = (sasl, intercepted) {
            let now = shared.clock.now();
            let verdict = session.decide(
                security,
                api,
                version,
                &body,
                shared.clock.uptime(),
                shared.clock.wall_ms(now),
            );
            match verdict {
                Verdict::Pass => {}
                Verdict::Respond { response, close } => {
                    let outcome = encode(out, api, version, prefix.correlation_id, &response);
                    return match (close, outcome) {
                        (Some(reason), Outcome::Send(bytes)) => {
                            Outcome::SendThenClose(bytes, reason)
                        }
                        (_, outcome) => outcome,
                    };
                }
                Verdict::Close(reason) => return Outcome::Close(reason),
            }
        }
        let reply = match &action {
            Some(Action::Disconnect) => return Outcome::Close("interceptor: disconnect".into()),
            Some(Action::NeverAnswer) => return Outcome::Hang,
            Some(Action::Error(code)) => match (spec.error_response)(&body, version, *code) {
                Some(response) => Reply::Respond(response),
                None => {
                    return Outcome::Close(format!("interceptor: {api:?} cannot carry {code:?}"))
                }
            },
            _ => {
                let now = shared.clock.now();
                let ctx = RequestContext {
                    api_key: api,
                    api_version: version,
                    broker_id,
                    client_id,
                    waiter,
                    client_host: peer.client_host.clone(),
                    now,
                    now_ms: shared.clock.wall_ms(now),
                    partition_errors: decision.partition_errors,
                };
                let (body, prepared) = prepare(shared, &ctx, body, topic_limits, large).await;
                match run_handler(shared, ctx, body, prepared, large, frame_bytes, peer).await {
                    Some(reply) => reply,
                    None => return Outcome::PeerClosed,
                }
            }
        };
        let response = match reply {
            Reply::Respond(response) => response,
            Reply::NoResponse => return Outcome::Nothing,
            Reply::Close { reason } => return Outcome::Close(reason),
            Reply::Park(_) => return Outcome::Close("handler parked outside the purgatory".into()),
            Reply::Finish(_) => return Outcome::Close("handler left its answer unfinished".into()),
        };
        match action {
            Some(Action::DisconnectAfterHandling) => {
                return Outcome::Close("interceptor: disconnect after handling".into())
            }
            Some(Action::Delay(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let correlation_id = prefix.correlation_id;
        let mut outcome = heavy(shared, large, move || {
            encode(out, api, version, correlation_id, &response)
        })
        .await
        .unwrap_or_else(|| Outcome::Close("encoding the response failed".into()));
        if let (Some(Action::AlterResponse(alter)), Outcome::Send(bytes)) = (&action, &mut outcome)
        {
            alter(bytes);
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Does a request's work that needs no state lock: a produce request's batches are
/// validated against the topic limits read under the lock before (`limits`), on a blocking
/// thread unless they are few, small and uncompressed; a Metadata request's names are
/// sorted out (repeated, invalid, past the cap).
async fn prepare(
    shared: &Shared,
    ctx: &RequestContext,
    body: RequestKind,
    limits: Option<TopicLimits>,
    large: bool,
) -> (RequestKind, Prepared) {
    let (req, limits) = match (body, limits) {
        (RequestKind::Produce(req), Some(limits)) => (req, limits),
        (RequestKind::Metadata(req), _) => {
            let config = shared.config.clone();
            let planned = heavy(shared, large, move || {
                let plan = handlers::metadata::plan(&req, &config);
                (req, plan)
            })
            .await;
            return match planned {
                Some((req, plan)) => (RequestKind::Metadata(req), Prepared::Metadata(plan)),
                None => (
                    RequestKind::Metadata(Default::default()),
                    Prepared::Failed("planning the metadata request failed".into()),
                ),
            };
        }
        (body, _) => return (body, Prepared::Nothing),
    };
    if produce::is_light(&req) {
        let prepared = produce::prepare(&req, ctx, &limits, &shared.config);
        return (RequestKind::Produce(req), Prepared::Produce(prepared));
    }
    // On the pool of heavy work: one thread per core but one, so validation never takes
    // every core from the connections.
    let ctx = ctx.clone();
    let config = shared.config.clone();
    #[cfg(test)]
    let hook = shared
        .prepare_hook
        .lock()
        .ok()
        .and_then(|mut hook| hook.take());
    let work = shared.heavy.run(move || {
        #[cfg(test)]
        if let Some(hook) = hook {
            hook();
        }
        let prepared = produce::prepare(&req, &ctx, &limits, &config);
        (req, prepared)
    });
    match work.await {
        Some((req, prepared)) => (RequestKind::Produce(req), Prepared::Produce(prepared)),
        // The validation panicked (a bug) and took the request with it: close, saying so.
        None => (
            RequestKind::Produce(Default::default()),
            Prepared::Failed("produce validation failed".into()),
        ),
    }
}

/// Runs the handler under the cluster lock. A request that waits (a fetch short of
/// `min_bytes`) moves into the purgatory, and this connection waits for its answer, which
/// whoever completes it (a produce on another connection, the timer at its deadline)
/// delivers. The answer is finished after the lock. `None` if the peer went away while
/// its request waited (the request left the purgatory with it).
async fn run_handler<R: AsyncRead + Unpin>(
    shared: &Shared,
    ctx: RequestContext,
    body: RequestKind,
    prepared: Prepared,
    large: bool,
    frame_bytes: usize,
    peer: &mut Peer<'_, R>,
) -> Option<Reply> {
    let waiter = ctx.waiter;
    let parking = {
        let mut core = shared.lock_core();
        let reply = handlers::dispatch_prepared(&mut core.state, &ctx, body, prepared);
        let parking = match reply {
            Reply::Park(park) => core.park(ctx, park, frame_bytes),
            reply => Parking::Answered(reply),
        };
        shared.settle(&mut core);
        parking
    };
    let reply = match parking {
        Parking::Answered(reply) => reply,
        Parking::Waiting(answer) => {
            // Dropped with this task (broker stopped, cluster shut down) or when the peer
            // goes: either way the request leaves the purgatory.
            let guard = WaitGuard::new(shared, waiter);
            let reply = tokio::select! {
                biased;
                reply = answer => reply,
                () = peer.gone() => {
                    debug!("peer closed the connection while its request waited");
                    return None;
                }
            };
            guard.disarm();
            reply.unwrap_or_else(|_| Reply::Close {
                reason: "a waiting request lost its answer".into(),
            })
        }
    };
    // The lock is released: what is left of the answer is built without it.
    Some(match reply {
        Reply::Finish(unfinished) => heavy(shared, large, move || handlers::finish(unfinished))
            .await
            .unwrap_or_else(|| Reply::Close {
                reason: "building the answer failed".into(),
            }),
        reply => reply,
    })
}

/// Runs `work`, which may take a while when `large` (decoding, planning or encoding a large
/// request), on the pool of heavy work (`heavy.rs`): a worker busy for 50 ms on a request of
/// 200,000 partitions also stopped it polling the sockets, and delayed every other request
/// as long. `None` if the work panicked (a bug; the caller closes the connection).
async fn heavy<R: Send + 'static>(
    shared: &Shared,
    large: bool,
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    if !large {
        return Some(work());
    }
    shared.heavy.run(work).await
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
        client_id: Option<&str>,
        correlation_id: i32,
        partitions: &[(Arc<str>, i32)],
    ) {
        let at = self.clock.uptime();
        self.lock_control().record(RequestSummary {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::BytesMut;
    use franzy::proto::message::{decode_response, encode_request};
    use franzy::proto::{ErrorCode, RequestHeader, StrBytes};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest,
    };
    use tokio::io::DuplexStream;

    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::cluster::WaitStats;
    use crate::handlers::topic_name;
    use crate::Cluster;

    fn frame(api: ApiKey, version: i16, body: &RequestKind, padding: usize) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("server-tests")));
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, body).expect("encodes");
        // Bytes after the body are ignored, as by Kafka: a way to make a frame large.
        out.resize(out.len() + padding, 0);
        let length = i32::try_from(out.len() - 4).expect("fits");
        out[..4].copy_from_slice(&length.to_be_bytes());
        out
    }

    async fn read_frame(stream: &mut DuplexStream) -> Option<Bytes> {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).await.ok()?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(length)).ok()?];
        stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    async fn ask(
        stream: &mut DuplexStream,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
        padding: usize,
    ) -> Option<ResponseKind> {
        stream
            .write_all(&frame(api, version, body, padding))
            .await
            .ok()?;
        let response = read_frame(stream).await?;
        decode_response(response, api, version).ok().map(|(_, r)| r)
    }

    fn metadata(topic: &str) -> RequestKind {
        RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
        ])))
    }

    fn fetch(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> RequestKind {
        RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20)])]),
        )
    }

    fn produce_one(cluster: &Cluster, topic: &str, partition: i32) -> RequestKind {
        let batch = BatchBuilder::new(cluster.inner.shared.now_ms())
            .record(b"v")
            .bytes();
        RequestKind::Produce(ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))]),
        ]))
    }

    fn records_of(answer: Option<ResponseKind>) -> usize {
        let Some(ResponseKind::Fetch(r)) = answer else {
            panic!("no fetch response: {answer:?}");
        };
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, Bytes::len)
    }

    fn waits(cluster: &Cluster) -> WaitStats {
        cluster.with_state(|s| s.waiting().stats())
    }

    /// Yields (bounded) until `cluster` has `n` requests waiting.
    async fn until_waiting(cluster: &Cluster, n: usize) {
        for _ in 0..1000 {
            if cluster.with_state(|s| s.waiting().len()) == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never {n} waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_answers_a_long_poll_at_its_deadline() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 1)
            .build()
            .await
            .expect("cluster");
        let mut conn = cluster.connect(0).expect("connect");
        let started = tokio::time::Instant::now();
        let answer = ask(&mut conn, ApiKey::Fetch, 12, &fetch("t", 0, 0, 500), 0).await;
        assert_eq!(records_of(answer), 0);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        let stats = waits(&cluster);
        assert_eq!((stats.parked, stats.touched, stats.due), (1, 0, 1));
        assert_eq!(cluster.with_state(|s| s.poll_timeout()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_is_answered_by_a_produce_on_another_connection_and_looked_at_only_then() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 2)
            .build()
            .await
            .expect("cluster");
        let mut consumer = cluster.connect(0).expect("connect");
        let started = tokio::time::Instant::now();
        let polled = tokio::spawn(async move {
            ask(
                &mut consumer,
                ApiKey::Fetch,
                12,
                &fetch("t", 0, 0, 10_000),
                0,
            )
            .await
        });
        until_waiting(&cluster, 1).await;
        // Requests that touch nothing it waits on leave it alone: it is not looked at again.
        let mut producer = cluster.connect(0).expect("connect");
        let answer = ask(&mut producer, ApiKey::Metadata, 1, &metadata("t"), 0).await;
        assert!(matches!(answer, Some(ResponseKind::Metadata(_))));
        let other = produce_one(&cluster, "t", 1);
        assert!(ask(&mut producer, ApiKey::Produce, 9, &other, 0)
            .await
            .is_some());
        assert!(!polled.is_finished());
        assert_eq!(waits(&cluster).touched, 0);
        // A record on its partition answers it at once, looked at exactly once more.
        let mine = produce_one(&cluster, "t", 0);
        assert!(ask(&mut producer, ApiKey::Produce, 9, &mine, 0)
            .await
            .is_some());
        let answer = polled.await.expect("joins");
        assert!(records_of(answer) > 0);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no waiting for the deadline"
        );
        let stats = waits(&cluster);
        assert_eq!((stats.parked, stats.touched, stats.due), (1, 1, 0));
        assert!(cluster.with_state(|s| s.waiting().is_empty()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_goes_away_takes_its_waiting_request_with_it() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 1)
            .build()
            .await
            .expect("cluster");
        let mut consumer = cluster.connect(0).expect("connect");
        consumer
            .write_all(&frame(ApiKey::Fetch, 12, &fetch("t", 0, 0, 60_000), 0))
            .await
            .expect("write");
        until_waiting(&cluster, 1).await;
        drop(consumer);
        until_waiting(&cluster, 0).await;
        assert_eq!(waits(&cluster).removed, 1);
        assert_eq!(cluster.with_state(|s| s.poll_timeout()), None);
        // Its broker stopping does the same.
        let mut consumer = cluster.connect(0).expect("connect");
        consumer
            .write_all(&frame(ApiKey::Fetch, 12, &fetch("t", 0, 0, 60_000), 0))
            .await
            .expect("write");
        until_waiting(&cluster, 1).await;
        cluster.stop_broker(0).expect("stops");
        until_waiting(&cluster, 0).await;
        let mut rest = Vec::new();
        let _ = consumer.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "closed without an answer");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_behind_a_waiting_one_are_answered_after_it_in_order() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 1)
            .build()
            .await
            .expect("cluster");
        let mut conn = cluster.connect(0).expect("connect");
        let mut both = frame(ApiKey::Fetch, 12, &fetch("t", 0, 0, 300), 0);
        both.extend_from_slice(&frame(ApiKey::Metadata, 1, &metadata("t"), 0));
        conn.write_all(&both).await.expect("write");
        let started = tokio::time::Instant::now();
        let first = read_frame(&mut conn).await.expect("fetch answer");
        assert!(decode_response(first, ApiKey::Fetch, 12).is_ok());
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        let second = read_frame(&mut conn).await.expect("metadata answer");
        assert!(decode_response(second, ApiKey::Metadata, 1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_waiting_limit_a_long_poll_is_answered_at_once() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 1)
            .max_waiting_requests(1)
            .build()
            .await
            .expect("cluster");
        let mut first = cluster.connect(0).expect("connect");
        first
            .write_all(&frame(ApiKey::Fetch, 12, &fetch("t", 0, 0, 60_000), 0))
            .await
            .expect("write");
        until_waiting(&cluster, 1).await;
        let mut second = cluster.connect(0).expect("connect");
        let started = tokio::time::Instant::now();
        let answer = ask(&mut second, ApiKey::Fetch, 12, &fetch("t", 0, 0, 60_000), 0).await;
        assert_eq!(records_of(answer), 0);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(waits(&cluster).refused, 1);
    }

    #[tokio::test]
    async fn a_produce_being_validated_leaves_the_state_to_other_requests() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(2)
            .topic("t", 1)
            .max_decompressed_bytes_per_request(1_000_000)
            .build()
            .await
            .expect("cluster");
        let leader = cluster.with_state(|s| s.partition("t", 0).map(|p| p.leader()));
        let (started_tx, mut started) = tokio::sync::mpsc::channel(1);
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        *cluster.inner.shared.prepare_hook.lock().expect("hook") = Some(Box::new(move || {
            let _ = started_tx.blocking_send(());
            if let Ok(rx) = release_rx.lock() {
                let _ = rx.recv();
            }
        }));
        // Four batches of about 400 KB once inflated, sharing a budget of 1 MB.
        let gzip = BatchBuilder::new(cluster.inner.shared.now_ms())
            .records(100, 4000)
            .compression_id(1)
            .bytes();
        let topic_data = (0..4)
            .map(|_| {
                TopicProduceData::default()
                    .with_name(topic_name("t"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(gzip.clone()))])
            })
            .collect();
        let produce = RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_topic_data(topic_data),
        );
        let mut producer = cluster.connect(leader.unwrap_or(0)).expect("connect");
        let produced =
            tokio::spawn(async move { ask(&mut producer, ApiKey::Produce, 9, &produce, 0).await });
        started.recv().await.expect("validation started");
        // The produce is being validated (and held there): another broker still answers,
        // so the state lock is free.
        let mut other = cluster.connect(1).expect("connect");
        let answer = ask(&mut other, ApiKey::Metadata, 1, &metadata("t"), 0).await;
        assert!(matches!(answer, Some(ResponseKind::Metadata(_))));
        assert!(!produced.is_finished());
        release.send(()).expect("hook waits");
        let Some(ResponseKind::Produce(response)) = produced.await.expect("joins") else {
            panic!("no produce response");
        };
        let codes: Vec<i16> = response
            .responses
            .iter()
            .map(|t| t.partition_responses[0].error_code)
            .collect();
        let refused = ErrorCode::PolicyViolation.code();
        assert_eq!(codes, vec![0, 0, refused, refused]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_stops_arriving_is_closed_after_the_idle_timeout_and_idle_ones_are_not() {
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .connections_max_idle(Duration::from_secs(30))
            .build()
            .await
            .expect("cluster");
        let mut between_requests = cluster.connect(0).expect("connect");
        let versions = RequestKind::ApiVersions(ApiVersionsRequest::default());
        assert!(
            ask(&mut between_requests, ApiKey::ApiVersions, 0, &versions, 0)
                .await
                .is_some()
        );
        let mut partial = cluster.connect(0).expect("connect");
        let mut bytes = 100i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 10]);
        partial.write_all(&bytes).await.expect("write");
        let started = tokio::time::Instant::now();
        let mut rest = [0u8; 16];
        assert_eq!(partial.read(&mut rest).await.expect("closed, not reset"), 0);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
        // Ten minutes later, the connection that sent nothing half-way still works.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(
            ask(&mut between_requests, ApiKey::ApiVersions, 0, &versions, 0)
                .await
                .is_some()
        );
    }

    /// Waits (bounded) until `used` holds for the budget of `cluster`.
    async fn until_budget(cluster: &Cluster, used: impl Fn(usize) -> bool) -> usize {
        for _ in 0..2000 {
            let now = cluster.inner.shared.frame_budget.used();
            if used(now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!(
            "budget never got there: {}",
            cluster.inner.shared.frame_budget.used()
        );
    }

    #[tokio::test]
    async fn stalled_frames_hold_at_most_the_budget_and_small_requests_pass() {
        const MIB: usize = 1024 * 1024;
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .max_frame_size(MIB)
            .queued_max_request_bytes(2 * MIB)
            .build()
            .await
            .expect("cluster");
        let mut writers = Vec::new();
        for _ in 0..4 {
            let mut stream = cluster.connect(0).expect("connect");
            writers.push(tokio::spawn(async move {
                let mut bytes = i32::try_from(MIB).expect("fits").to_be_bytes().to_vec();
                bytes.resize(4 + 900 * 1024, 0);
                let _ = stream.write_all(&bytes).await;
                // Keep the connection open without sending the rest.
                std::future::pending::<()>().await;
            }));
        }
        let used = until_budget(&cluster, |used| used >= 2 * MIB).await;
        assert_eq!(used, 2 * MIB, "never past the budget for frames that stall");
        // A small request on another connection is read from its allowance.
        let mut other = cluster.connect(0).expect("connect");
        let answer = ask(&mut other, ApiKey::Metadata, 1, &metadata("x"), 0).await;
        assert!(matches!(answer, Some(ResponseKind::Metadata(_))));
        for writer in writers {
            writer.abort();
        }
        until_budget(&cluster, |used| used == 0).await;
    }

    #[tokio::test]
    async fn large_frames_that_wait_for_each_other_all_get_through() {
        const MIB: usize = 1024 * 1024;
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .max_frame_size(MIB)
            .queued_max_request_bytes(MIB + MIB / 2)
            .build()
            .await
            .expect("cluster");
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut stream = cluster.connect(0).expect("connect");
            clients.push(tokio::spawn(async move {
                let padded = metadata("t");
                ask(&mut stream, ApiKey::Metadata, 1, &padded, MIB - 100).await
            }));
        }
        for client in clients {
            let answer = tokio::time::timeout(Duration::from_secs(30), client)
                .await
                .expect("answered, not deadlocked")
                .expect("joins");
            assert!(matches!(answer, Some(ResponseKind::Metadata(_))));
        }
        until_budget(&cluster, |used| used == 0).await;
    }

    #[tokio::test]
    async fn large_frames_arrive_whole_over_many_reads() {
        const MIB: usize = 1024 * 1024;
        let cluster = Cluster::builder()
            .in_memory()
            .brokers(1)
            .topic("t", 2)
            .max_frame_size(8 * MIB)
            .build()
            .await
            .expect("cluster");
        let mut stream = cluster.connect(0).expect("connect");
        // Frames of several reads, then a small one, then frames around a read's size.
        for padding in [3 * MIB + MIB / 2, 0, LARGE_READ - 40, 2 * LARGE_READ] {
            let answer = ask(&mut stream, ApiKey::Metadata, 1, &metadata("t"), padding).await;
            let Some(ResponseKind::Metadata(response)) = answer else {
                panic!("no answer with {padding} bytes of padding");
            };
            assert_eq!(response.topics[0].partitions.len(), 2, "{padding}");
        }
        until_budget(&cluster, |used| used == 0).await;
    }
}
