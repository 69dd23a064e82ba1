//! The thin loop around the pure cluster: socket -> frame -> handler -> frame -> socket.
//!
//! One task per connection. Requests on a connection are handled one at a time and answered
//! in order, as a Kafka broker does (it mutes a channel while a request is in flight), so a
//! delayed or parked request holds back the ones behind it on the same connection.
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
//! the lock. Large or compressed batches are validated on a blocking thread, and a large
//! request ([`heavy`]) is decoded, planned, finished and encoded on one, so that neither a
//! request that inflates hundreds of megabytes nor one of 200,000 entries stalls the
//! other connections.

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
use tracing::{debug, info_span, warn, Instrument};
use uuid::Uuid;

use crate::control::{Action, RequestSummary};
use crate::handlers::produce::{self, TopicLimits};
use crate::handlers::{self, api_versions, Prepared, Reply, RequestContext};
use crate::Shared;

/// Bytes a connection may buffer without drawing on the frame budget, and the most it reads
/// at once while no large frame is being assembled: enough for any small request, and about
/// what the kernel already buffers per socket.
const ALLOWANCE: usize = 64 * 1024;

/// The most a connection reads at once into a large frame.
const LARGE_READ: usize = 1024 * 1024;

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
    let mut buf = BytesMut::new();
    let mut share = shared.frame_budget.share();
    // The last response's buffer, emptied, for the next one: a fetch response of tens of
    // megabytes encoded into fresh memory each time cost more in page faults and regrowth
    // copies than the encoding itself.
    let mut spare = SpareBuffer::new(shared);
    loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return End::Closed(format!("bad frame: {error}")),
            };
            let outcome = handle_frame(shared, broker_id, frame, spare.take()).await;
            // The request is handled and its frame dropped: its bytes leave the budget.
            share.end_overdraft();
            share.shrink_to(over_allowance(buf.len()));
            match outcome {
                Outcome::Send(bytes) => {
                    if let Err(error) = writer.write_all(&bytes).await {
                        return End::Io(error);
                    }
                    spare.keep(bytes);
                }
                Outcome::Nothing => {}
                Outcome::Close(reason) => return End::Closed(reason),
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
                shared.record(api, version, broker_id, None, prefix.correlation_id, &[]);
                let body = ResponseKind::ApiVersions(api_versions::unsupported_version_response());
                return encode(out, api, 0, prefix.correlation_id, &body);
            }
            return Outcome::Close(format!("unsupported version {version} of {api:?}"));
        }
        // Work proportional to a large request runs where it does not hold up the others.
        let large = frame.len() > ALLOWANCE;
        let request = match heavy(large, move || decode_request(frame)).await {
            Some(Ok(request)) => request,
            Some(Err(error)) => return Outcome::Close(error.to_string()),
            None => return Outcome::Close("decoding the request failed".into()),
        };
        let client_id = request.header.client_id.as_ref().map(|s| s.to_string());
        let body = request.body;
        // Topic ids are resolved under the lock; the partitions are listed without it.
        let ids = handlers::topic_ids_of(&body);
        let names: HashMap<Uuid, Arc<str>> = if ids.is_empty() {
            HashMap::new()
        } else {
            let state = shared.lock_state();
            ids.into_iter()
                .filter_map(|id| Some((id, Arc::from(state.topic_by_id(id)?.name()))))
                .collect()
        };
        let listed = heavy(large, move || {
            let partitions = handlers::partitions_named(&body, &|id| names.get(&id).cloned());
            (body, partitions)
        })
        .await;
        let Some((body, partitions)) = listed else {
            return Outcome::Close("listing the request's partitions failed".into());
        };
        let topic_limits = match &body {
            RequestKind::Produce(req) => Some(TopicLimits::read(
                &shared.lock_state(),
                req,
                version,
                shared.config.max_partitions_per_request,
            )),
            _ => None,
        };
        shared.record(
            api,
            version,
            broker_id,
            client_id.as_deref(),
            prefix.correlation_id,
            &partitions,
        );
        let decision = shared.lock_control().decide(api, broker_id, &partitions);
        drop(partitions);
        let action = decision.request_action;
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
                let (body, prepared) = prepare(shared, &ctx, body, topic_limits, large).await;
                run_handler(shared, ctx, body, prepared, large).await
            }
        };
        let response = match reply {
            Reply::Respond(response) => response,
            Reply::NoResponse => return Outcome::Nothing,
            Reply::Close { reason } => return Outcome::Close(reason),
            Reply::Park { .. } => return Outcome::Close("handler parked past its deadline".into()),
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
        let mut outcome = heavy(large, move || {
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
            let planned = heavy(large, move || {
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
    // One slot per core but one: validation never takes every core from the connections.
    // (The semaphore is never closed; if it were, the work would just run unthrottled.)
    let _slot = shared.prepare_slots.acquire().await.ok();
    let ctx = ctx.clone();
    let config = shared.config.clone();
    #[cfg(test)]
    let hook = shared
        .prepare_hook
        .lock()
        .ok()
        .and_then(|mut hook| hook.take());
    let work = tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        if let Some(hook) = hook {
            hook();
        }
        let prepared = produce::prepare(&req, &ctx, &limits, &config);
        (req, prepared)
    });
    match work.await {
        Ok((req, prepared)) => (RequestKind::Produce(req), Prepared::Produce(prepared)),
        // The validation panicked (a bug) and took the request with it: close, saying so.
        Err(error) => (
            RequestKind::Produce(Default::default()),
            Prepared::Failed(format!("produce validation failed: {error}")),
        ),
    }
}

/// Runs the handler; a fetch that parks is run again whenever the cluster changes, and a
/// last time when its wait is over.
async fn run_handler(
    shared: &Shared,
    mut ctx: RequestContext,
    body: RequestKind,
    prepared: Prepared,
    large: bool,
) -> Reply {
    let retryable = matches!(body, RequestKind::Fetch(_));
    if !retryable {
        let reply = handlers::dispatch_prepared(&mut shared.lock_state(), &ctx, body, prepared);
        shared.changed.notify_waiters();
        // The lock is released: what is left of the answer is built without it.
        return match reply {
            Reply::Finish(unfinished) => heavy(large, move || handlers::finish(unfinished))
                .await
                .unwrap_or_else(|| Reply::Close {
                    reason: "building the answer failed".into(),
                }),
            reply => reply,
        };
    }

    let mut deadline = None;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        // Registered before looking at the state, so a change between the look and the
        // wait is not missed.
        notified.as_mut().enable();
        // Cloned before the lock: a request of many partitions costs as much to copy.
        let attempt = body.clone();
        let reply =
            handlers::dispatch_prepared(&mut shared.lock_state(), &ctx, attempt, Prepared::Nothing);
        let reply = match reply {
            Reply::Finish(unfinished) => {
                return heavy(large, move || handlers::finish(unfinished))
                    .await
                    .unwrap_or_else(|| Reply::Close {
                        reason: "building the answer failed".into(),
                    })
            }
            reply => reply,
        };
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

/// Runs `work`, which may take a while when `large` (decoding, planning or encoding a large
/// request), on a blocking thread: a worker busy for 50 ms on a request of 200,000
/// partitions also stopped it polling the sockets, and delayed every other request as
/// long. `None` if the work panicked (a bug; the caller closes the connection).
async fn heavy<R: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    if !large {
        return Some(work());
    }
    tokio::task::spawn_blocking(work).await.ok()
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
        let at = self.started.elapsed();
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
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
    use tokio::io::DuplexStream;

    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
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
