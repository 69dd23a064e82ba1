//! One broker connection, without the socket: correlation ids, requests in flight, version
//! negotiation, SASL authentication and re-authentication, per-request timeouts (KIP-35,
//! KIP-511; KIP-43, KIP-152, KIP-368; protocol guide "Requests and Responses" and "SASL
//! Authentication Sequence").
//!
//! Call order, as a driver uses it (TLS, when configured, is below this: the driver wraps
//! the socket before the first byte):
//! 1. [`Connection::new`] queues an ApiVersions request; write [`Connection::poll_transmit`]
//!    to the socket whenever it returns bytes.
//! 2. Feed every read to [`Connection::handle_received`]; after each call, drain
//!    [`Connection::poll_event`]. With SASL configured, the connection then sends
//!    SaslHandshake v1 and SaslAuthenticate requests by itself (the mechanism's messages
//!    come from `engine::sasl`); for OAUTHBEARER it first asks for a token with
//!    [`ConnectionEvent::TokenNeeded`], which the driver answers with
//!    [`Connection::handle_token`]. The first event on a healthy connection is
//!    [`ConnectionEvent::Ready`]; only then, and only while [`Connection::is_ready`], may
//!    [`Connection::send`] be called.
//! 3. Sleep until [`Connection::poll_timeout`] and call [`Connection::handle_timeout`].
//! 4. On EOF or an IO error call [`Connection::handle_closed`]. After any failure the
//!    connection is [`Connection::is_closed`] and every request in flight has been failed:
//!    open a new one.
//!
//! Kafka answers the requests of one connection in the order they were sent, so a response
//! whose correlation id is not the oldest one in flight is a protocol violation. A request
//! that times out breaks the connection (as in the Java client): the responses behind it can
//! no longer be trusted to arrive.
//!
//! Re-authentication (KIP-368): when SaslAuthenticate v1+ reports a session lifetime, the
//! connection re-authenticates at a random point between 85% and 95% of it, as the Java
//! client does. From then it is not ready: the driver holds new requests back, the requests
//! in flight are answered, and the handshake and exchange run again on the same connection
//! (without ApiVersions); then it is ready again. [`Connection::poll_timeout`] includes
//! that moment.
//!
//! Authentication failures (SASL_AUTHENTICATION_FAILED, an unsupported mechanism, a server
//! message that does not verify) close the connection with [`Error::Authentication`], which
//! is fatal; ILLEGAL_SASL_STATE closes it with [`Error::Disconnected`]-like retriable
//! error the driver retries once (`io::broker`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::sasl::{Credentials, Mechanism, SaslClient};
use crate::error::Error;
use crate::proto::frame::{
    grow_frame, FrameDecoder, FramePool, DEFAULT_MAX_FRAME_SIZE, POOLED_FRAME_MIN,
};
use crate::proto::message::{decode_response, encode_request, peek_correlation_id};
use crate::proto::versions::BrokerVersions;
use crate::proto::{ApiKey, ErrorCode, RequestHeader, RequestKind, ResponseKind};

/// The highest ApiVersions version franzy sends first.
const API_VERSIONS_VERSION: i16 = 3;
/// SaslHandshake v1: the tokens go in SaslAuthenticate requests (KIP-152). Kafka 4.0 removed
/// v0, whose tokens followed the handshake unframed (KIP-896), so franzy sends v1 only.
const SASL_HANDSHAKE_VERSION: i16 = 1;

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// `request.timeout.ms`: how long a request may wait for its response.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_response_size: usize,
    /// SASL, if the connection authenticates (`SASL_PLAINTEXT`, `SASL_SSL`).
    pub sasl: Option<SaslConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "franzy".into(),
            request_timeout: Duration::from_secs(30),
            max_response_size: DEFAULT_MAX_FRAME_SIZE,
            sasl: None,
        }
    }
}

/// How a connection authenticates.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user name and password for PLAIN and SCRAM; `None` for OAUTHBEARER, whose token
    /// the driver fetches for each exchange ([`ConnectionEvent::TokenNeeded`]).
    pub credentials: Option<Credentials>,
    /// This connection's randomness: SCRAM nonces and the re-authentication point are
    /// derived from it (the driver draws it from the OS, or from the client's seed).
    pub entropy: [u8; 32],
}

/// What the connection has to tell its driver.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Version negotiation (and authentication) is done; requests may be sent.
    Ready,
    /// OAUTHBEARER needs a token for the exchange about to start: fetch one and hand it to
    /// [`Connection::handle_token`].
    TokenNeeded,
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
    /// `None` for the connection's own requests (ApiVersions, SASL).
    token: Option<u64>,
    /// Whether its bytes have left through `poll_transmit`.
    sent: bool,
}

#[derive(Debug)]
enum State {
    Negotiating,
    Authenticating(AuthStep),
    Ready,
    Closed,
}

/// Where an authentication (or re-authentication) stands.
#[derive(Debug)]
enum AuthStep {
    /// Re-authentication is due: the requests in flight are being answered first.
    Draining,
    /// Waiting for the driver's OAUTHBEARER token.
    AwaitingToken,
    /// SaslHandshake sent, with the exchange that follows it.
    Handshake(Box<SaslClient>),
    /// A SaslAuthenticate request sent.
    Exchange(Box<SaslClient>),
}

/// A broker connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    address: String,
    config: ConnectionConfig,
    state: State,
    /// What the broker supports, once ApiVersions answered.
    versions: Option<BrokerVersions>,
    /// SASL exchanges started on this connection (numbers nonces and jitter).
    exchanges: u32,
    /// When to re-authenticate (KIP-368), if the broker gave the session a lifetime.
    reauthenticate_at: Option<Instant>,
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
            versions: None,
            exchanges: 0,
            reauthenticate_at: None,
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

    /// `request.timeout.ms`, which also bounds the driver's wait for a token.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    /// Version negotiation and authentication are done and the connection is healthy:
    /// requests may be sent. False again while it re-authenticates.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// Authenticating (for the first time or again).
    pub fn is_authenticating(&self) -> bool {
        matches!(self.state, State::Authenticating(_))
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
            State::Ready => self.versions.as_ref(),
            _ => None,
        }
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, Error> {
        self.version_at_most(api, None)
    }

    /// As [`Connection::version_for`], but no higher than `max` when given.
    pub fn version_at_most(&self, api: ApiKey, max: Option<i16>) -> Result<i16, Error> {
        match (&self.state, &self.versions) {
            (State::Closed, _) => Err(Error::Disconnected {
                address: self.address.clone(),
            }),
            (State::Ready | State::Authenticating(_), Some(versions)) => {
                let chosen = match max {
                    None => versions.choose(api),
                    Some(max) => versions.choose_at_most(api, max),
                };
                chosen.ok_or_else(|| Error::UnsupportedVersion {
                    address: self.address.clone(),
                    api,
                })
            }
            _ => Err(Error::Protocol {
                peer: self.address.clone(),
                reason: "request before version negotiation finished".into(),
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
            return Err(self.version_for(api).err().unwrap_or(Error::Protocol {
                peer: self.address.clone(),
                reason: "request while the connection authenticates".into(),
            }));
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
        let reauthenticate = match self.state {
            State::Ready => self.reauthenticate_at,
            _ => None,
        };
        self.in_flight
            .iter()
            .map(|r| r.deadline)
            .chain(reauthenticate)
            .min()
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

    /// Time has passed: fails the connection if a request is overdue; starts
    /// re-authentication when it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Ready) && self.reauthenticate_at.is_some_and(|at| at <= now)
        {
            tracing::debug!(broker = %self.address, "re-authenticating");
            self.reauthenticate_at = None;
            self.state = State::Authenticating(AuthStep::Draining);
            self.continue_reauthentication(now);
        }
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
        if self.is_authenticating() {
            return self.fail_retriable("connection closed during authentication");
        }
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
            None if request.api == ApiKey::ApiVersions => {
                self.handle_api_versions(frame, request.version, now)
            }
            None => {
                let (_, response) = decode_response(frame, request.api, request.version)
                    .map_err(|e| e.to_string())?;
                match response {
                    ResponseKind::SaslHandshake(answer) => self.handle_sasl_handshake(answer, now),
                    ResponseKind::SaslAuthenticate(answer) => {
                        self.handle_sasl_authenticate(answer, now)
                    }
                    _ => return Err(format!("unexpected answer to {:?}", request.api)),
                }
                Ok(())
            }
            Some(token) => {
                let (_, response) = decode_response(frame, request.api, request.version)
                    .map_err(|e| e.to_string())?;
                self.events.push_back(ConnectionEvent::Response {
                    token,
                    version: request.version,
                    response: Box::new(response),
                });
                if matches!(self.state, State::Authenticating(AuthStep::Draining)) {
                    self.continue_reauthentication(now);
                }
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
                self.versions = Some(versions);
                if self.config.sasl.is_some() {
                    self.start_authentication(now);
                } else {
                    self.state = State::Ready;
                    self.events.push_back(ConnectionEvent::Ready);
                }
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

    /// The OAUTHBEARER token asked for by [`ConnectionEvent::TokenNeeded`], or why the
    /// provider could not give one (which fails the connection with an authentication
    /// error).
    pub fn handle_token(&mut self, token: Result<Credentials, String>, now: Instant) {
        if !matches!(self.state, State::Authenticating(AuthStep::AwaitingToken)) {
            return;
        }
        match token {
            Ok(credentials) => self.send_handshake(&credentials, now),
            Err(reason) => self.fail_authentication(format!("no OAUTHBEARER token: {reason}")),
        }
    }

    fn start_authentication(&mut self, now: Instant) {
        let Some(sasl) = &self.config.sasl else {
            return;
        };
        match sasl.credentials.clone() {
            Some(credentials) => self.send_handshake(&credentials, now),
            None => {
                self.state = State::Authenticating(AuthStep::AwaitingToken);
                self.events.push_back(ConnectionEvent::TokenNeeded);
            }
        }
    }

    /// Re-authentication waits for the answers in flight, then starts.
    fn continue_reauthentication(&mut self, now: Instant) {
        let draining = matches!(self.state, State::Authenticating(AuthStep::Draining));
        if draining && self.in_flight.iter().all(|r| r.token.is_none()) {
            self.start_authentication(now);
        }
    }

    fn send_handshake(&mut self, credentials: &Credentials, now: Instant) {
        let Some(sasl) = &self.config.sasl else {
            return;
        };
        let mechanism = sasl.mechanism;
        let nonce = sasl_nonce(&sasl.entropy, self.exchanges);
        self.exchanges = self.exchanges.wrapping_add(1);
        let client = match SaslClient::new(mechanism, credentials, &nonce) {
            Ok(client) => client,
            Err(error) => return self.fail_authentication(error.0),
        };
        let supported = self
            .versions
            .as_ref()
            .and_then(|v| v.range(ApiKey::SaslHandshake))
            .is_some_and(|r| r.min <= SASL_HANDSHAKE_VERSION && SASL_HANDSHAKE_VERSION <= r.max);
        if !supported {
            return self.fail_authentication(
                "the broker does not support SaslHandshake v1 (Kafka 1.0 or later)".into(),
            );
        }
        let body = RequestKind::SaslHandshake(
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(mechanism.name())),
        );
        if self.send_internal(ApiKey::SaslHandshake, SASL_HANDSHAKE_VERSION, &body, now) {
            self.state = State::Authenticating(AuthStep::Handshake(Box::new(client)));
        }
    }

    fn handle_sasl_handshake(&mut self, answer: SaslHandshakeResponse, now: Instant) {
        let State::Authenticating(AuthStep::Handshake(client)) =
            std::mem::replace(&mut self.state, State::Closed)
        else {
            return self.fail_protocol("SaslHandshake answer out of turn".into());
        };
        let mut client = client;
        match ErrorCode::try_from_code(answer.error_code) {
            None => {}
            Some(ErrorCode::UnsupportedSaslMechanism) => {
                let enabled: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
                return self.fail_authentication(format!(
                    "the broker does not enable SASL mechanism {} (it enables {})",
                    client.mechanism(),
                    if enabled.is_empty() {
                        "none".to_string()
                    } else {
                        enabled.join(", ")
                    }
                ));
            }
            Some(ErrorCode::IllegalSaslState) => {
                return self.fail_retriable("ILLEGAL_SASL_STATE answering SaslHandshake");
            }
            Some(code) => {
                return self.fail_authentication(format!("SaslHandshake failed with {code:?}"))
            }
        }
        match client.start() {
            Ok(first) => self.send_authenticate(client, first, now),
            Err(error) => self.fail_authentication(error.0),
        }
    }

    fn send_authenticate(&mut self, client: Box<SaslClient>, message: Vec<u8>, now: Instant) {
        let version = match self
            .versions
            .as_ref()
            .and_then(|v| v.choose(ApiKey::SaslAuthenticate))
        {
            Some(version) => version,
            None => {
                return self
                    .fail_authentication("the broker does not support SaslAuthenticate".into())
            }
        };
        let body = RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
        );
        if self.send_internal(ApiKey::SaslAuthenticate, version, &body, now) {
            self.state = State::Authenticating(AuthStep::Exchange(client));
        }
    }

    fn handle_sasl_authenticate(&mut self, answer: SaslAuthenticateResponse, now: Instant) {
        let State::Authenticating(AuthStep::Exchange(client)) =
            std::mem::replace(&mut self.state, State::Closed)
        else {
            return self.fail_protocol("SaslAuthenticate answer out of turn".into());
        };
        let mut client = client;
        let message = answer
            .error_message
            .as_ref()
            .map(|m| m.chars().take(500).collect::<String>());
        match ErrorCode::try_from_code(answer.error_code) {
            None => {}
            Some(ErrorCode::IllegalSaslState) => {
                return self.fail_retriable("ILLEGAL_SASL_STATE answering SaslAuthenticate");
            }
            Some(code) => {
                let reason = match message {
                    Some(message) => format!("{code:?}: {message}"),
                    None => format!("{code:?}"),
                };
                return self.fail_authentication(reason);
            }
        }
        match client.handle_server(&answer.auth_bytes) {
            Ok(Some(next)) => self.send_authenticate(client, next, now),
            Ok(None) => self.authenticated(answer.session_lifetime_ms, now),
            Err(error) => self.fail_authentication(error.0),
        }
    }

    fn authenticated(&mut self, session_lifetime_ms: i64, now: Instant) {
        let first = self.exchanges <= 1;
        self.reauthenticate_at = None;
        if session_lifetime_ms > 0 {
            let lifetime = Duration::from_millis(session_lifetime_ms.unsigned_abs())
                .min(crate::config::FOREVER);
            let entropy = self.config.sasl.as_ref().map_or([0; 32], |s| s.entropy);
            let fraction = reauthentication_fraction(&entropy, self.exchanges);
            self.reauthenticate_at = Some(now + lifetime.mul_f64(fraction));
            tracing::debug!(broker = %self.address, ?lifetime, "authenticated; session expires");
        } else {
            tracing::debug!(broker = %self.address, "authenticated");
        }
        self.state = State::Ready;
        if first {
            self.events.push_back(ConnectionEvent::Ready);
        }
    }

    /// Encodes one of the connection's own requests; false if it could not (the
    /// connection is then failed).
    fn send_internal(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
        now: Instant,
    ) -> bool {
        match self.encode(api, version, body) {
            Ok(correlation_id) => {
                self.in_flight.push_back(InFlight {
                    correlation_id,
                    api,
                    version,
                    deadline: now + self.config.request_timeout,
                    token: None,
                    sent: false,
                });
                true
            }
            Err(error) => {
                self.fail_with(error);
                false
            }
        }
    }

    fn fail_authentication(&mut self, reason: String) {
        self.fail_with(Error::Authentication {
            broker: self.address.clone(),
            reason,
        });
    }

    /// A failure the driver may retry once on a new connection.
    fn fail_retriable(&mut self, reason: &str) {
        tracing::debug!(broker = %self.address, reason, "authentication interrupted");
        self.fail_with(Error::AuthenticationInterrupted {
            broker: self.address.clone(),
            reason: reason.to_string(),
        });
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

/// The SCRAM client nonce of exchange `n`: 32 letters and digits derived from the
/// connection's entropy (as Kafka's base-36 nonces: some peers mishandle `+` and `/`).
fn sasl_nonce(entropy: &[u8; 32], n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    derive(entropy, b"nonce", n)
        .iter()
        .map(|b| char::from(DIGITS[usize::from(*b) % DIGITS.len()]))
        .collect()
}

/// Where in the session lifetime to re-authenticate: between 85% and 95%, as the Java
/// client (`SaslClientAuthenticator`).
fn reauthentication_fraction(entropy: &[u8; 32], n: u32) -> f64 {
    let digest = derive(entropy, b"reauth", n);
    let draw = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    0.85 + 0.10 * draw
}

fn derive(entropy: &[u8; 32], label: &[u8], n: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(entropy);
    hash.update(label);
    hash.update(n.to_be_bytes());
    hash.finalize().to_vec()
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
