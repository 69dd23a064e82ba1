//! One broker connection, without the socket: correlation ids, requests in flight, version
//! negotiation, per-request timeouts (KIP-35, KIP-511; protocol guide "Requests and
//! Responses").
//!
//! Call order, as a driver uses it:
//! 1. [`Connection::new`] queues an ApiVersions request; write [`Connection::poll_transmit`]
//!    to the socket whenever it returns bytes.
//! 2. Feed every read to [`Connection::handle_received`]; after each call, drain
//!    [`Connection::poll_event`]. The first event on a healthy connection is
//!    [`ConnectionEvent::Ready`]; only then may [`Connection::send`] be called.
//! 3. Sleep until [`Connection::poll_timeout`] and call [`Connection::handle_timeout`].
//! 4. On EOF or an IO error call [`Connection::handle_closed`]. After any failure the
//!    connection is [`Connection::is_closed`] and every request in flight has been failed:
//!    open a new one.
//!
//! Kafka answers the requests of one connection in the order they were sent, so a response
//! whose correlation id is not the oldest one in flight is a protocol violation. A request
//! that times out breaks the connection (as in the Java client): the responses behind it can
//! no longer be trusted to arrive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::Error;
use crate::proto::frame::{
    grow_frame, FrameDecoder, FramePool, DEFAULT_MAX_FRAME_SIZE, POOLED_FRAME_MIN,
};
use crate::proto::message::{decode_response, encode_request, peek_correlation_id};
use crate::proto::versions::BrokerVersions;
use crate::proto::{ApiKey, ErrorCode, RequestHeader, RequestKind, ResponseKind};

/// The highest ApiVersions version franzy sends first.
const API_VERSIONS_VERSION: i16 = 3;

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// `request.timeout.ms`: how long a request may wait for its response.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_response_size: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "franzy".into(),
            request_timeout: Duration::from_secs(30),
            max_response_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

/// What the connection has to tell its driver.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Version negotiation is done; requests may be sent.
    Ready,
    /// The response to the request sent with `token`.
    Response {
        /// The caller's token.
        token: u64,
        /// The version the request was sent with.
        version: i16,
        /// The decoded body (boxed: response structs are large, events are many).
        response: Box<ResponseKind>,
    },
    /// The request sent with `token` failed; `sent` tells whether its bytes were handed
    /// to the driver (so the broker may have acted on it).
    Failed {
        /// The caller's token.
        token: u64,
        /// Why.
        error: Error,
        /// Whether the request may have reached the broker.
        sent: bool,
    },
    /// The connection is closed for good, for this reason; it follows the `Failed` events of
    /// every request that was in flight.
    Closed {
        /// Why the connection ended.
        error: Error,
    },
}

#[derive(Debug)]
struct InFlight {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    deadline: Instant,
    /// `None` for the connection's own ApiVersions request.
    token: Option<u64>,
    /// Whether its bytes have left through `poll_transmit`.
    sent: bool,
}

#[derive(Debug)]
enum State {
    Negotiating,
    Ready(BrokerVersions),
    Closed,
}

/// A broker connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    address: String,
    config: ConnectionConfig,
    state: State,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight>,
    /// Bytes queued for the socket; the first `unsent_from` requests in `in_flight` are
    /// covered by bytes already handed out.
    transmit: BytesMut,
    received: BytesMut,
    /// A large frame being read into a pooled buffer, and its length.
    assembling: Option<(Vec<u8>, usize)>,
    frames: FramePool,
    decoder: FrameDecoder,
    events: VecDeque<ConnectionEvent>,
}

impl Connection {
    /// A new connection to `address` (for messages), which starts by asking the broker
    /// which versions it supports.
    pub fn new(address: impl Into<String>, config: ConnectionConfig, now: Instant) -> Self {
        let decoder = FrameDecoder::new(config.max_response_size);
        let mut connection = Self {
            address: address.into(),
            config,
            state: State::Negotiating,
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            transmit: BytesMut::new(),
            received: BytesMut::new(),
            assembling: None,
            frames: FramePool::default(),
            decoder,
            events: VecDeque::new(),
        };
        connection.send_api_versions(API_VERSIONS_VERSION, now);
        connection
    }

    /// The peer's address, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Version negotiation is done and the connection is healthy.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// The connection failed or was closed; it will never be usable again.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Requests sent and not yet answered (the connection's own included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What the broker said it supports, once ready.
    pub fn broker_versions(&self) -> Option<&BrokerVersions> {
        match &self.state {
            State::Ready(versions) => Some(versions),
            _ => None,
        }
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, Error> {
        self.version_at_most(api, None)
    }

    /// As [`Connection::version_for`], but no higher than `max` when given.
    pub fn version_at_most(&self, api: ApiKey, max: Option<i16>) -> Result<i16, Error> {
        match &self.state {
            State::Ready(versions) => {
                let chosen = match max {
                    None => versions.choose(api),
                    Some(max) => versions.choose_at_most(api, max),
                };
                chosen.ok_or_else(|| Error::UnsupportedVersion {
                    address: self.address.clone(),
                    api,
                })
            }
            State::Negotiating => Err(Error::Protocol {
                peer: self.address.clone(),
                reason: "request before version negotiation finished".into(),
            }),
            State::Closed => Err(Error::Disconnected {
                address: self.address.clone(),
            }),
        }
    }

    /// Queues a request. With `expect_response` false (a produce with acks=0) nothing is
    /// tracked: the request is done once its bytes are handed out.
    pub fn send(
        &mut self,
        token: u64,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
        expect_response: bool,
        now: Instant,
    ) -> Result<(), Error> {
        if !self.is_ready() {
            return Err(self.version_for(api).err().unwrap_or(Error::Closed));
        }
        let correlation_id = self.encode(api, version, body)?;
        if expect_response {
            self.in_flight.push_back(InFlight {
                correlation_id,
                api,
                version,
                deadline: now + self.config.request_timeout,
                token: Some(token),
                sent: false,
            });
        }
        Ok(())
    }

    /// Bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.transmit.is_empty() {
            return None;
        }
        for request in self.in_flight.iter_mut() {
            request.sent = true;
        }
        Some(self.transmit.split().freeze())
    }

    /// When [`Connection::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.iter().map(|r| r.deadline).min()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }

    /// Bytes read from the socket.
    pub fn handle_received(&mut self, mut bytes: &[u8], now: Instant) {
        while !self.is_closed() {
            // A large frame goes to a pooled buffer (see `FramePool`), the rest through
            // `received`.
            if let Some((buffer, length)) = &mut self.assembling {
                let take = (*length - buffer.len()).min(bytes.len());
                grow_frame(buffer, take, *length);
                buffer.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if buffer.len() < *length {
                    return;
                }
                let Some((buffer, _)) = self.assembling.take() else {
                    return;
                };
                let frame = self.frames.frame(buffer);
                if let Err(reason) = self.handle_frame(frame, now) {
                    return self.fail_protocol(reason);
                }
                continue;
            }
            self.received.extend_from_slice(bytes);
            bytes = &[];
            let length = match self.decoder.peek_length(&self.received) {
                Ok(Some(length)) => length,
                Ok(None) => return,
                Err(error) => return self.fail_protocol(error.to_string()),
            };
            if length >= POOLED_FRAME_MIN {
                // Sized by what arrives, never by the announced length alone.
                let mut buffer = self.frames.take(length);
                self.received.advance(4);
                let have = self.received.len().min(length);
                grow_frame(&mut buffer, have, length);
                buffer.extend_from_slice(&self.received[..have]);
                self.received.advance(have);
                self.assembling = Some((buffer, length));
                continue;
            }
            let frame = match self.decoder.decode(&mut self.received) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => return self.fail_protocol(error.to_string()),
            };
            if let Err(reason) = self.handle_frame(frame, now) {
                return self.fail_protocol(reason);
            }
        }
    }

    /// Time has passed: fails the connection if a request is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue = self.in_flight.iter().any(|r| r.deadline <= now);
        if overdue {
            let timeout = self.config.request_timeout;
            self.fail_all(Error::RequestTimeout(timeout), |request| {
                if request.deadline <= now {
                    Error::RequestTimeout(timeout)
                } else {
                    Error::Disconnected {
                        address: String::new(),
                    }
                }
            });
        }
    }

    /// The socket closed or failed.
    pub fn handle_closed(&mut self) {
        if !self.is_closed() {
            let error = Error::Disconnected {
                address: self.address.clone(),
            };
            self.fail_all(error, |_| Error::Disconnected {
                address: String::new(),
            });
        }
    }

    fn encode(&mut self, api: ApiKey, version: i16, body: &RequestKind) -> Result<i32, Error> {
        let correlation_id = self.next_correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.config.client_id.clone())));
        encode_request(&mut self.transmit, &header, body).map_err(|e| Error::Protocol {
            peer: self.address.clone(),
            reason: format!("cannot encode request: {e}"),
        })?;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(0);
        Ok(correlation_id)
    }

    fn send_api_versions(&mut self, version: i16, now: Instant) {
        let body = RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("franzy"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
        );
        match self.encode(ApiKey::ApiVersions, version, &body) {
            Ok(correlation_id) => self.in_flight.push_back(InFlight {
                correlation_id,
                api: ApiKey::ApiVersions,
                version,
                deadline: now + self.config.request_timeout,
                token: None,
                sent: false,
            }),
            Err(error) => self.fail_with(error),
        }
    }

    fn handle_frame(&mut self, frame: Bytes, now: Instant) -> Result<(), String> {
        let correlation_id = peek_correlation_id(&frame).map_err(|e| e.to_string())?;
        match self.in_flight.front() {
            None => {
                return Err(format!(
                    "response {correlation_id} with no request in flight"
                ))
            }
            Some(oldest) if oldest.correlation_id != correlation_id => {
                return Err(format!(
                    "response {correlation_id} out of order: expected {}",
                    oldest.correlation_id
                ))
            }
            Some(_) => {}
        }
        let Some(request) = self.in_flight.pop_front() else {
            return Err("in-flight queue changed underneath".into());
        };
        match request.token {
            None => self.handle_api_versions(frame, request.version, now),
            Some(token) => {
                let (_, response) = decode_response(frame, request.api, request.version)
                    .map_err(|e| e.to_string())?;
                self.events.push_back(ConnectionEvent::Response {
                    token,
                    version: request.version,
                    response: Box::new(response),
                });
                Ok(())
            }
        }
    }

    fn handle_api_versions(
        &mut self,
        frame: Bytes,
        version: i16,
        now: Instant,
    ) -> Result<(), String> {
        // A broker that does not know our ApiVersions version answers in v0 (KIP-511), so a
        // body that does not parse at our version is read again as v0, as Java does.
        let response = match decode_response(frame.clone(), ApiKey::ApiVersions, version) {
            Ok((_, ResponseKind::ApiVersions(response))) => response,
            Ok(_) => return Err("ApiVersions answered with another API".into()),
            Err(first) => match decode_response(frame, ApiKey::ApiVersions, 0) {
                Ok((_, ResponseKind::ApiVersions(response))) => response,
                _ => return Err(first.to_string()),
            },
        };
        self.apply_api_versions(response, version, now)
    }

    fn apply_api_versions(
        &mut self,
        response: ApiVersionsResponse,
        version: i16,
        now: Instant,
    ) -> Result<(), String> {
        let versions = BrokerVersions::new(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        );
        match ErrorCode::try_from_code(response.error_code) {
            None => {
                if versions.range(ApiKey::ApiVersions).is_none() {
                    return Err("ApiVersions response does not list ApiVersions".into());
                }
                self.state = State::Ready(versions);
                self.events.push_back(ConnectionEvent::Ready);
                Ok(())
            }
            Some(ErrorCode::UnsupportedVersion) => {
                let theirs = versions
                    .range(ApiKey::ApiVersions)
                    .map(|r| r.max)
                    .unwrap_or(0);
                let retry = theirs.min(version - 1).max(0);
                if version == 0 {
                    return Err("broker does not support ApiVersions v0".into());
                }
                self.send_api_versions(retry, now);
                Ok(())
            }
            Some(code) => {
                self.fail_with(Error::Broker {
                    code,
                    context: Some("ApiVersions".into()),
                });
                Ok(())
            }
        }
    }

    fn fail_protocol(&mut self, reason: String) {
        let error = Error::Protocol {
            peer: self.address.clone(),
            reason,
        };
        self.fail_with(error);
    }

    fn fail_with(&mut self, error: Error) {
        self.fail_all(error.clone(), |_| error.clone());
    }

    fn fail_all(&mut self, connection_error: Error, error_for: impl Fn(&InFlight) -> Error) {
        let address = self.address.clone();
        self.state = State::Closed;
        self.transmit.clear();
        self.received.clear();
        self.assembling = None;
        for request in std::mem::take(&mut self.in_flight) {
            let mut error = error_for(&request);
            if let Error::Disconnected { address: a } = &mut error {
                a.clone_from(&address);
            }
            if let Some(token) = request.token {
                self.events.push_back(ConnectionEvent::Failed {
                    token,
                    error,
                    sent: request.sent,
                });
            }
        }
        self.events.push_back(ConnectionEvent::Closed {
            error: connection_error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::{decode_request, encode_response};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    fn broker_versions_response(
        error: ErrorCode,
        keys: &[(ApiKey, i16, i16)],
    ) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(if error == ErrorCode::Unknown(0) {
                0
            } else {
                error.code()
            })
            .with_api_keys(
                keys.iter()
                    .map(|(k, min, max)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*min)
                            .with_max_version(*max)
                    })
                    .collect(),
            )
    }

    /// Plays the broker: decodes what the connection sent, returns (api, version, corr id).
    fn take_request(conn: &mut Connection) -> (ApiKey, i16, i32) {
        let bytes = conn.poll_transmit().expect("something to send");
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = FrameDecoder::default()
            .decode(&mut buf)
            .expect("frame")
            .expect("whole");
        let request = decode_request(frame).expect("valid request");
        (
            request.api_key,
            request.header.request_api_version,
            request.header.correlation_id,
        )
    }

    fn respond(
        conn: &mut Connection,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        body: ResponseKind,
        now: Instant,
    ) {
        let mut out = BytesMut::new();
        encode_response(&mut out, api, version, correlation_id, &body).expect("encode");
        // Deliver in two pieces to exercise reassembly.
        let split = out.len() / 2;
        conn.handle_received(&out[..split], now);
        conn.handle_received(&out[split..], now);
    }

    /// Plays the broker for two requests sent at once: their correlation ids.
    fn take_two_correlation_ids(conn: &mut Connection) -> [i32; 2] {
        let bytes = conn.poll_transmit().expect("two requests");
        let mut buf = BytesMut::from(&bytes[..]);
        let mut correlation = || {
            let frame = FrameDecoder::default().decode(&mut buf).ok().flatten();
            decode_request(frame.expect("frame"))
                .expect("decodes")
                .header
                .correlation_id
        };
        [correlation(), correlation()]
    }

    fn ready_connection(now: Instant) -> Connection {
        let mut conn = Connection::new("b0:9092", ConnectionConfig::default(), now);
        let (api, version, corr) = take_request(&mut conn);
        assert_eq!((api, version), (ApiKey::ApiVersions, 3));
        let keys = [(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)];
        respond(
            &mut conn,
            api,
            version,
            corr,
            ResponseKind::ApiVersions(broker_versions_response(ErrorCode::Unknown(0), &keys)),
            now,
        );
        assert!(matches!(conn.poll_event(), Some(ConnectionEvent::Ready)));
        conn
    }

    #[test]
    fn negotiates_then_matches_responses_to_tokens() {
        let now = Instant::now();
        let mut conn = ready_connection(now);
        assert_eq!(conn.version_for(ApiKey::Metadata).expect("listed"), 12);
        assert!(matches!(
            conn.version_for(ApiKey::Produce),
            Err(Error::UnsupportedVersion { .. })
        ));
        let body = RequestKind::Metadata(MetadataRequest::default());
        conn.send(7, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        conn.send(8, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        let [c1, c2] = take_two_correlation_ids(&mut conn);
        assert_ne!(c1, c2);
        let md = || ResponseKind::Metadata(MetadataResponse::default());
        respond(&mut conn, ApiKey::Metadata, 12, c1, md(), now);
        respond(&mut conn, ApiKey::Metadata, 12, c2, md(), now);
        let tokens: Vec<u64> = std::iter::from_fn(|| conn.poll_event())
            .map(|e| match e {
                ConnectionEvent::Response { token, .. } => token,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(tokens, vec![7, 8]);
        assert_eq!(conn.in_flight(), 0);
    }

    #[test]
    fn large_frames_are_read_into_pooled_buffers_across_reads() {
        use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
        use kafka_protocol::messages::TopicName;
        let now = Instant::now();
        let mut conn = ready_connection(now);
        let body = RequestKind::Metadata(MetadataRequest::default());
        conn.send(7, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        conn.send(8, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        let [c1, c2] = take_two_correlation_ids(&mut conn);
        let topics: Vec<MetadataResponseTopic> = (0..5000)
            .map(|i| {
                MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(
                    format!("a-topic-with-a-rather-long-name-{i:08}"),
                ))))
            })
            .collect();
        let large = ResponseKind::Metadata(MetadataResponse::default().with_topics(topics));
        let small = ResponseKind::Metadata(MetadataResponse::default());
        let mut wire = BytesMut::new();
        encode_response(&mut wire, ApiKey::Metadata, 12, c1, &large).expect("encode");
        assert!(wire.len() > POOLED_FRAME_MIN, "{} bytes", wire.len());
        encode_response(&mut wire, ApiKey::Metadata, 12, c2, &small).expect("encode");
        // Cut inside the first prefix, inside the large body, and across both frames.
        let cuts = [2, 70_000, wire.len() - 10, wire.len()];
        let mut from = 0;
        for to in cuts {
            conn.handle_received(&wire[from..to], now);
            from = to;
        }
        let responses: Vec<(u64, usize)> = std::iter::from_fn(|| conn.poll_event())
            .map(|e| match e {
                ConnectionEvent::Response {
                    token, response, ..
                } => match *response {
                    ResponseKind::Metadata(m) => (token, m.topics.len()),
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(responses, vec![(7, 5000), (8, 0)]);
        assert!(!conn.is_closed());
    }

    #[test]
    fn an_announced_length_reserves_nothing_before_the_bytes_arrive() {
        let now = Instant::now();
        let mut conn = ready_connection(now);
        let body = RequestKind::Metadata(MetadataRequest::default());
        conn.send(7, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        let (_, _, correlation_id) = take_request(&mut conn);
        // A 100 MiB frame (the largest accepted) of which ten bytes arrive.
        let announced = DEFAULT_MAX_FRAME_SIZE;
        let mut start = (announced as i32).to_be_bytes().to_vec();
        start.extend(correlation_id.to_be_bytes());
        start.extend([0u8; 2]);
        conn.handle_received(&start, now);
        let capacity = |conn: &Connection| conn.assembling.as_ref().map(|(b, _)| b.capacity());
        assert!(
            capacity(&conn).is_some_and(|c| c <= POOLED_FRAME_MIN),
            "{:?} bytes reserved",
            capacity(&conn)
        );
        // Then it grows with what comes, doubling.
        conn.handle_received(&[0u8; 300_000], now);
        let grown = capacity(&conn).expect("still assembling");
        assert!((300_006..=4 * POOLED_FRAME_MIN).contains(&grown), "{grown}");
        assert!(!conn.is_closed());
    }

    #[test]
    fn a_large_frame_reuses_the_buffer_of_the_last_one_without_growing() {
        use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
        use kafka_protocol::messages::TopicName;
        let now = Instant::now();
        let mut conn = ready_connection(now);
        let topics: Vec<MetadataResponseTopic> = (0..5000)
            .map(|i| {
                MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(
                    format!("a-topic-with-a-rather-long-name-{i:08}"),
                ))))
            })
            .collect();
        let large = MetadataResponse::default().with_topics(topics);
        let body = RequestKind::Metadata(MetadataRequest::default());
        for round in 0..2 {
            conn.send(round, ApiKey::Metadata, 12, &body, true, now)
                .expect("send");
            let (_, _, correlation_id) = take_request(&mut conn);
            let mut wire = BytesMut::new();
            let response = ResponseKind::Metadata(large.clone());
            encode_response(&mut wire, ApiKey::Metadata, 12, correlation_id, &response)
                .expect("encode");
            let length = wire.len() - 4;
            conn.handle_received(&wire[..70_000], now);
            let capacity = conn.assembling.as_ref().map(|(b, _)| b.capacity());
            if round == 0 {
                assert!(capacity.is_some_and(|c| c < length), "{capacity:?}");
            } else {
                assert_eq!(conn.frames.spares(), 0, "the spare was taken");
                assert!(capacity.is_some_and(|c| c >= length), "{capacity:?}");
            }
            conn.handle_received(&wire[70_000..], now);
            match conn.poll_event() {
                Some(ConnectionEvent::Response { token, .. }) => assert_eq!(token, round),
                other => panic!("unexpected {other:?}"),
            }
            // The response (and every slice of the frame) is gone: the buffer is back.
            assert_eq!(conn.frames.spares(), 1);
        }
    }

    #[test]
    fn falls_back_when_the_broker_answers_api_versions_in_v0() {
        let now = Instant::now();
        let mut conn = Connection::new("b0:9092", ConnectionConfig::default(), now);
        let (_, _, corr) = take_request(&mut conn);
        // An old broker: UNSUPPORTED_VERSION, v0 body, ApiVersions up to 2.
        let keys = [(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 9)];
        respond(
            &mut conn,
            ApiKey::ApiVersions,
            0,
            corr,
            ResponseKind::ApiVersions(broker_versions_response(
                ErrorCode::UnsupportedVersion,
                &keys,
            )),
            now,
        );
        assert!(conn.poll_event().is_none());
        let (api, version, corr) = take_request(&mut conn);
        assert_eq!((api, version), (ApiKey::ApiVersions, 2));
        respond(
            &mut conn,
            api,
            version,
            corr,
            ResponseKind::ApiVersions(broker_versions_response(ErrorCode::Unknown(0), &keys)),
            now,
        );
        assert!(matches!(conn.poll_event(), Some(ConnectionEvent::Ready)));
        assert_eq!(conn.version_for(ApiKey::Metadata).expect("listed"), 9);
    }

    #[test]
    fn a_timeout_fails_the_overdue_request_and_everything_behind_it() {
        let now = Instant::now();
        let mut conn = ready_connection(now);
        let body = RequestKind::Metadata(MetadataRequest::default());
        conn.send(1, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        let _ = conn.poll_transmit();
        let later = now + Duration::from_secs(10);
        conn.send(2, ApiKey::Metadata, 12, &body, true, later)
            .expect("send");
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(30)));
        conn.handle_timeout(now + Duration::from_secs(29));
        assert!(conn.poll_event().is_none());
        conn.handle_timeout(now + Duration::from_secs(30));
        assert!(conn.is_closed());
        match conn.poll_event() {
            Some(ConnectionEvent::Failed {
                token: 1,
                error: Error::RequestTimeout(_),
                sent: true,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        match conn.poll_event() {
            Some(ConnectionEvent::Failed {
                token: 2,
                error: Error::Disconnected { .. },
                sent: false,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            conn.poll_event(),
            Some(ConnectionEvent::Closed {
                error: Error::RequestTimeout(_)
            })
        ));
    }

    #[test]
    fn an_out_of_order_or_unsolicited_response_is_a_protocol_violation() {
        let now = Instant::now();
        let mut conn = ready_connection(now);
        let body = RequestKind::Metadata(MetadataRequest::default());
        conn.send(1, ApiKey::Metadata, 12, &body, true, now)
            .expect("send");
        let _ = conn.poll_transmit();
        respond(
            &mut conn,
            ApiKey::Metadata,
            12,
            999,
            ResponseKind::Metadata(MetadataResponse::default()),
            now,
        );
        assert!(conn.is_closed());
        assert!(matches!(
            conn.poll_event(),
            Some(ConnectionEvent::Failed {
                token: 1,
                error: Error::Protocol { .. },
                ..
            })
        ));
    }

    #[test]
    fn garbage_and_oversized_frames_close_the_connection() {
        let now = Instant::now();
        let config = ConnectionConfig {
            max_response_size: 1024,
            ..ConnectionConfig::default()
        };
        let mut conn = Connection::new("b0:9092", config, now);
        let _ = conn.poll_transmit();
        conn.handle_received(&1_000_000i32.to_be_bytes(), now);
        assert!(conn.is_closed());
        // The internal ApiVersions request has no token: only the close is reported.
        assert!(matches!(
            conn.poll_event(),
            Some(ConnectionEvent::Closed {
                error: Error::Protocol { .. }
            })
        ));
        assert!(conn.poll_event().is_none());
        assert!(matches!(
            conn.version_for(ApiKey::Metadata),
            Err(Error::Disconnected { .. })
        ));
    }
}
