//! One broker connection as a tokio task around the sans-IO [`Connection`] engine.
//!
//! Opening one: the connector's stream, wrapped in TLS when configured
//! ([`wrap_tls`](super::transport::wrap_tls)), then the engine's ApiVersions and SASL
//! exchanges (the task fetches OAUTHBEARER tokens from the provider when the engine asks).
//! An authentication interrupted (ILLEGAL_SASL_STATE, a connection lost mid-exchange) is
//! tried once more on a new connection; the second time it is [`Error::Authentication`].
//!
//! The task owns the read half of the stream; a second task owns the write half, so that a
//! broker busy writing large responses never deadlocks with us writing requests. Callers talk
//! to the task through [`BrokerConnection`] handles (cheap clones): each request carries a
//! closure that builds the body for the version negotiated with this broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, Instrument};

use super::transport::{wrap_tls, BoxedStream, Connector};
use crate::engine::connection::{Connection, ConnectionConfig, ConnectionEvent};
use crate::error::Error;
use crate::proto::versions::BrokerVersions;
use crate::proto::{ApiKey, RequestKind, ResponseKind};

/// Builds a request body for the negotiated version.
pub type BuildRequest = Box<dyn FnOnce(i16) -> Result<RequestKind, Error> + Send>;

/// A response with the version it was requested at.
#[derive(Debug)]
pub struct Response {
    /// The negotiated version.
    pub version: i16,
    /// The body.
    pub body: Box<ResponseKind>,
}

/// A failed request, and whether the broker may have seen it.
#[derive(Debug, Clone)]
pub struct RequestError {
    /// Why it failed.
    pub error: Error,
    /// The request's bytes were handed to the socket: the broker may have acted on it.
    pub sent: bool,
}

impl From<Error> for RequestError {
    fn from(error: Error) -> Self {
        Self { error, sent: false }
    }
}

type Reply = oneshot::Sender<Result<Option<Response>, RequestError>>;

struct Command {
    api: ApiKey,
    /// The highest version to use, when lower than the highest both sides speak.
    max_version: Option<i16>,
    build: BuildRequest,
    expect_response: bool,
    reply: Reply,
}

/// What secures a connection: TLS, and where OAUTHBEARER tokens come from.
#[derive(Clone, Default)]
pub struct Security {
    /// TLS, if the connection uses it.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The OAUTHBEARER token provider (the mechanism and other credentials are in the
    /// connection's `SaslConfig`).
    pub tokens: Option<Arc<dyn crate::security::TokenProvider>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("tokens", &self.tokens.is_some())
            .finish()
    }
}

/// A handle to a live broker connection.
#[derive(Clone)]
pub struct BrokerConnection {
    address: Arc<str>,
    versions: Arc<BrokerVersions>,
    commands: mpsc::Sender<Command>,
    /// Where its requests are counted, if anywhere.
    stats: Option<Arc<crate::stats::Collector>>,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("address", &self.address)
            .finish()
    }
}

impl BrokerConnection {
    /// Connects to `address`, negotiates versions and authenticates, within
    /// `config.request_timeout` (each).
    pub async fn open(
        connector: &dyn Connector,
        address: &str,
        config: ConnectionConfig,
        max_in_flight: usize,
        security: &Security,
    ) -> Result<Self, Error> {
        match Self::open_once(connector, address, config.clone(), max_in_flight, security).await {
            Err(Error::AuthenticationInterrupted { reason, .. }) => {
                debug!(%address, %reason, "authentication interrupted, trying once more");
                let mut config = config;
                if let Some(sasl) = &mut config.sasl {
                    // A fresh nonce for the new exchange.
                    sasl.entropy[0] ^= 0x5a;
                }
                match Self::open_once(connector, address, config, max_in_flight, security).await {
                    Err(Error::AuthenticationInterrupted { reason: again, .. }) => {
                        Err(Error::Authentication {
                            broker: address.to_string(),
                            reason: format!("{reason}, and again on a new connection: {again}"),
                        })
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn open_once(
        connector: &dyn Connector,
        address: &str,
        config: ConnectionConfig,
        max_in_flight: usize,
        security: &Security,
    ) -> Result<Self, Error> {
        let timeout = config.request_timeout;
        let connect = async {
            let stream = connector
                .connect(address)
                .await
                .map_err(|source| Error::Connect {
                    address: address.to_string(),
                    source: Arc::new(source),
                })?;
            match &security.tls {
                Some(tls) => wrap_tls(tls.clone(), address, stream).await,
                None => Ok(stream),
            }
        };
        let stream =
            tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| Error::Connect {
                    address: address.to_string(),
                    source: Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )),
                })??;
        let now = tokio::time::Instant::now().into_std();
        let connection = Connection::new(address, config, now);
        let (commands, receiver) = mpsc::channel(64);
        let (ready_tx, ready_rx) = oneshot::channel();
        let span = tracing::debug_span!("broker_connection", address = %address);
        let tokens = security.tokens.clone();
        tokio::spawn(
            run(
                stream,
                connection,
                receiver,
                max_in_flight.max(1),
                ready_tx,
                tokens,
            )
            .instrument(span),
        );
        // Versions, then authentication (a token fetch and a few round trips).
        let versions =
            match tokio::time::timeout(3 * timeout + Duration::from_millis(100), ready_rx).await {
                Ok(Ok(Ok(versions))) => versions,
                Ok(Ok(Err(error))) => return Err(error),
                Ok(Err(_)) | Err(_) => {
                    return Err(Error::Disconnected {
                        address: address.to_string(),
                    });
                }
            };
        Ok(Self {
            address: address.into(),
            versions: Arc::new(versions),
            commands,
            stats: None,
        })
    }

    /// Counts this connection's requests (and their round trips) in `stats`.
    pub(crate) fn with_stats(mut self, stats: Arc<crate::stats::Collector>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// `host:port` of the broker.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The version that will be used for `api`, or an error if the broker has none we speak.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, Error> {
        self.versions
            .choose(api)
            .ok_or_else(|| Error::UnsupportedVersion {
                address: self.address.to_string(),
                api,
            })
    }

    /// The connection task has ended; a new connection is needed.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Sends a request built for the negotiated version and waits for its response
    /// (`Ok(None)` when `expect_response` is false, once the bytes are on their way).
    pub async fn request(
        &self,
        api: ApiKey,
        build: BuildRequest,
        expect_response: bool,
    ) -> Result<Option<Response>, RequestError> {
        self.submit(api, build, expect_response).await?.await
    }

    /// Queues a request on the connection and returns, without waiting for the answer, a
    /// future of it. Requests go on the wire in the order they were queued, so a caller
    /// that must keep an order (the producer's numbered batches) queues them one after the
    /// other.
    pub async fn submit(
        &self,
        api: ApiKey,
        build: BuildRequest,
        expect_response: bool,
    ) -> Result<
        impl std::future::Future<Output = Result<Option<Response>, RequestError>>,
        RequestError,
    > {
        self.submit_at_most(api, None, build, expect_response).await
    }

    /// As [`BrokerConnection::request`], at a version no higher than `max_version`.
    pub async fn request_at_most(
        &self,
        api: ApiKey,
        max_version: Option<i16>,
        build: BuildRequest,
        expect_response: bool,
    ) -> Result<Option<Response>, RequestError> {
        self.submit_at_most(api, max_version, build, expect_response)
            .await?
            .await
    }

    /// As [`BrokerConnection::submit`], at a version no higher than `max_version`.
    pub async fn submit_at_most(
        &self,
        api: ApiKey,
        max_version: Option<i16>,
        build: BuildRequest,
        expect_response: bool,
    ) -> Result<
        impl std::future::Future<Output = Result<Option<Response>, RequestError>>,
        RequestError,
    > {
        let (reply, answer) = oneshot::channel();
        let command = Command {
            api,
            max_version,
            build,
            expect_response,
            reply,
        };
        let disconnected = || -> RequestError {
            Error::Disconnected {
                address: self.address.to_string(),
            }
            .into()
        };
        if self.commands.send(command).await.is_err() {
            return Err(disconnected());
        }
        let lost = disconnected();
        let counted = self.stats.clone().map(|stats| {
            stats.request_sent(&self.address);
            (stats, self.address.clone(), tokio::time::Instant::now())
        });
        Ok(async move {
            let answer = answer.await.unwrap_or(Err(lost));
            if let Some((stats, address, sent)) = counted {
                stats.request_done(&address, sent.elapsed(), answer.is_ok());
            }
            answer
        })
    }
}

async fn run(
    stream: BoxedStream,
    mut connection: Connection,
    mut commands: mpsc::Receiver<Command>,
    max_in_flight: usize,
    ready: oneshot::Sender<Result<BrokerVersions, Error>>,
    tokens: Option<Arc<dyn crate::security::TokenProvider>>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Bytes>();
    let (write_failed_tx, mut write_failed) = oneshot::channel::<std::io::Error>();
    tokio::spawn(async move {
        while let Some(bytes) = outgoing_rx.recv().await {
            if let Err(error) = writer.write_all(&bytes).await {
                let _ = write_failed_tx.send(error);
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut ready = Some(ready);
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    let mut next_token: u64 = 0;
    let mut read_buf = vec![0u8; 64 * 1024];
    let mut handles_alive = true;
    loop {
        while let Some(bytes) = connection.poll_transmit() {
            if outgoing.send(bytes).is_err() {
                connection.handle_closed();
            }
        }
        while let Some(event) = connection.poll_event() {
            match event {
                ConnectionEvent::Ready => {
                    if let (Some(ready), Some(versions)) =
                        (ready.take(), connection.broker_versions())
                    {
                        let _ = ready.send(Ok(versions.clone()));
                    }
                }
                ConnectionEvent::Response {
                    token,
                    version,
                    response,
                } => {
                    if let Some(reply) = pending.remove(&token) {
                        let _ = reply.send(Ok(Some(Response {
                            version,
                            body: response,
                        })));
                    }
                }
                ConnectionEvent::Failed { token, error, sent } => {
                    if let Some(reply) = pending.remove(&token) {
                        let _ = reply.send(Err(RequestError { error, sent }));
                    }
                }
                ConnectionEvent::TokenNeeded => {
                    // Nothing is in flight while the connection waits for its token.
                    let token = match &tokens {
                        Some(provider) => {
                            let timeout = connection_timeout(&connection);
                            match tokio::time::timeout(timeout, provider.token()).await {
                                Ok(Ok(token)) => Ok(crate::engine::sasl::Credentials::Token {
                                    token: token.value,
                                    extensions: token.extensions,
                                }),
                                Ok(Err(reason)) => Err(reason),
                                Err(_) => Err(format!("the token provider took over {timeout:?}")),
                            }
                        }
                        None => Err("no token provider".to_string()),
                    };
                    let now = tokio::time::Instant::now().into_std();
                    connection.handle_token(token, now);
                }
                ConnectionEvent::Closed { error } => {
                    debug!(%error, "connection closed");
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error));
                    }
                }
            }
        }
        // Handling an event (a token) may have queued bytes.
        while let Some(bytes) = connection.poll_transmit() {
            if outgoing.send(bytes).is_err() {
                connection.handle_closed();
            }
        }
        if connection.is_closed() {
            // Requests queued but never sent cannot have reached the broker.
            commands.close();
            while let Ok(command) = commands.try_recv() {
                let error = Error::Disconnected {
                    address: connection.address().to_string(),
                };
                let _ = command.reply.send(Err(error.into()));
            }
            return;
        }
        let deadline = connection
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        if !handles_alive && pending.is_empty() {
            return;
        }
        let can_send =
            handles_alive && connection.is_ready() && connection.in_flight() < max_in_flight;
        tokio::select! {
            // Biased: a random branch order would make runs with the same seed differ.
            biased;
            read = reader.read(&mut read_buf) => match read {
                Ok(0) | Err(_) => connection.handle_closed(),
                Ok(n) => {
                    let now = tokio::time::Instant::now().into_std();
                    connection.handle_received(&read_buf[..n], now);
                }
            },
            _ = &mut write_failed => connection.handle_closed(),
            command = commands.recv(), if can_send => match command {
                // Every handle is gone: finish what is in flight, then end.
                None => handles_alive = false,
                Some(command) => {
                    let now = tokio::time::Instant::now().into_std();
                    let token = next_token;
                    next_token += 1;
                    let sent = connection
                        .version_at_most(command.api, command.max_version)
                        .and_then(|version| Ok((version, (command.build)(version)?)))
                        .and_then(|(version, body)| {
                            connection.send(token, command.api, version, &body, command.expect_response, now)
                        });
                    match sent {
                        Ok(()) if command.expect_response => {
                            pending.insert(token, command.reply);
                        }
                        Ok(()) => {
                            let _ = command.reply.send(Ok(None));
                        }
                        Err(error) => {
                            let _ = command.reply.send(Err(error.into()));
                        }
                    }
                }
            },
            () = sleep_until_opt(deadline) => {
                connection.handle_timeout(tokio::time::Instant::now().into_std());
            }
        }
    }
}

fn connection_timeout(connection: &Connection) -> Duration {
    connection.request_timeout()
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
