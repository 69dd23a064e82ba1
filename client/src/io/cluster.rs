//! The part of a client that every role shares: the metadata cache, one connection per
//! broker (opened on demand, reopened with exponential backoff and jitter), and requests
//! routed to a broker by id or to any broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::debug;

use super::broker::{BrokerConnection, BuildRequest, RequestError, Response, Security};
use super::transport::Connector;
use crate::config::Config;
use crate::engine::backoff::{Backoff, Rng};
use crate::engine::connection::{ConnectionConfig, SaslConfig};
use crate::engine::metadata::Metadata;
use crate::error::Error;
use crate::proto::{ApiKey, RequestKind, ResponseKind};

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Slot {
    connection: Option<BrokerConnection>,
    backoff: Backoff,
    retry_at: Option<tokio::time::Instant>,
}

/// Shared client core: configuration, connections, metadata.
pub struct ClusterClient {
    config: Config,
    connector: Arc<dyn Connector>,
    metadata: Mutex<Metadata>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    rng: Mutex<Rng>,
    /// Serializes metadata refreshes; holds the number of refreshes done so far.
    refresh: tokio::sync::Mutex<u64>,
    /// Rotates the broker tried first by [`ClusterClient::request_any`].
    rotation: Mutex<usize>,
    /// TLS and SASL, resolved from the configuration when the client started.
    security: crate::security::settings::Resolved,
    /// SASL randomness comes from `rng` (a test's seed) rather than the OS.
    seeded: bool,
    /// What the client's requests and connections did.
    stats: Arc<crate::stats::Collector>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("bootstrap", &self.config.bootstrap_servers)
            .finish()
    }
}

/// What every client's `build()` starts from.
#[derive(Debug)]
pub struct ClientStart {
    /// The runtime the client's background task runs on.
    pub runtime: tokio::runtime::Handle,
    /// The seed of everything random in the client (given, or drawn from the clock).
    pub seed: u64,
    /// The shared cluster client.
    pub cluster: Arc<ClusterClient>,
}

impl ClusterClient {
    /// The common start of a producer's or consumer's `build()`: it must run inside a tokio
    /// runtime; the connector defaults to TCP and the seed to the clock; the configuration is
    /// validated.
    pub fn start(
        role: &str,
        config: Config,
        connector: Option<Arc<dyn Connector>>,
        seed: Option<u64>,
    ) -> Result<ClientStart, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidArgument(format!("a {role} must be built within a tokio runtime"))
        })?;
        let seeded = seed.is_some();
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
        });
        let connector = connector.unwrap_or_else(|| Arc::new(super::transport::TcpConnector));
        let mut cluster = ClusterClient::new(config, connector, seed)?;
        cluster.seeded = seeded;
        let cluster = Arc::new(cluster);
        Ok(ClientStart {
            runtime,
            seed,
            cluster,
        })
    }

    /// A client core; `seed` drives backoff jitter.
    pub fn new(config: Config, connector: Arc<dyn Connector>, seed: u64) -> Result<Self, Error> {
        config.validate()?;
        let security = config.security.resolve()?;
        Ok(Self {
            security,
            seeded: true,
            metadata: Mutex::new(Metadata::new(config.metadata_max_age)),
            config,
            connector,
            slots: Mutex::new(HashMap::new()),
            rng: Mutex::new(Rng::new(seed)),
            refresh: tokio::sync::Mutex::new(0),
            rotation: Mutex::new(0),
            stats: Arc::default(),
        })
    }

    /// The client's live statistics.
    pub(crate) fn stats(&self) -> &crate::stats::Collector {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Locks the metadata cache. Never hold the guard across an await.
    pub fn metadata(&self) -> MutexGuard<'_, Metadata> {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connection_config(&self) -> ConnectionConfig {
        let sasl = self.security.sasl.as_ref().map(|sasl| SaslConfig {
            mechanism: sasl.mechanism(),
            credentials: sasl.engine_credentials(),
            entropy: self.entropy(),
        });
        ConnectionConfig {
            client_id: self.config.client_id.clone(),
            request_timeout: self.config.request_timeout,
            max_response_size: self.config.max_response_size,
            sasl,
        }
    }

    /// Randomness for one connection's SASL exchanges: from the seed in tests (so that
    /// runs replay), from the OS otherwise (SCRAM nonces must not be guessable).
    fn entropy(&self) -> [u8; 32] {
        let mut entropy = [0u8; 32];
        if self.seeded || getrandom::fill(&mut entropy).is_err() {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            for chunk in entropy.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
        }
        entropy
    }

    fn connection_security(&self) -> Security {
        Security {
            tls: self.security.tls.clone(),
            tokens: self.security.sasl.as_ref().and_then(|s| s.token_provider()),
        }
    }

    /// The live connection to `address`, opening one if needed (after the reconnect
    /// backoff of a previous failure).
    pub async fn connection(&self, address: &str) -> Result<BrokerConnection, Error> {
        self.connection_in(address, address, self.connection_config())
            .await
    }

    /// A connection to `address` of its own, kept under `purpose` apart from the one
    /// fetches and produce requests share, with its own request timeout: Java talks to a
    /// group coordinator on a separate connection, so that a JoinGroup the broker holds
    /// for a whole rebalance never stalls the fetches behind it (a broker answers one
    /// connection's requests in order).
    pub async fn dedicated_connection(
        &self,
        purpose: &str,
        address: &str,
        request_timeout: std::time::Duration,
    ) -> Result<BrokerConnection, Error> {
        let config = ConnectionConfig {
            request_timeout,
            ..self.connection_config()
        };
        self.connection_in(&format!("{purpose}@{address}"), address, config)
            .await
    }

    async fn connection_in(
        &self,
        key: &str,
        address: &str,
        config: ConnectionConfig,
    ) -> Result<BrokerConnection, Error> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry(key.to_string())
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(Slot {
                        connection: None,
                        backoff: Backoff::new(
                            self.config.reconnect_backoff,
                            self.config.reconnect_backoff_max,
                        ),
                        retry_at: None,
                    }))
                })
                .clone()
        };
        let mut slot = slot.lock().await;
        if let Some(connection) = &slot.connection {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
            slot.connection = None;
        }
        if let Some(at) = slot.retry_at {
            tokio::time::sleep_until(at).await;
        }
        match BrokerConnection::open(
            self.connector.as_ref(),
            address,
            config,
            self.config.max_in_flight,
            &self.connection_security(),
        )
        .await
        {
            Ok(connection) => {
                debug!(%address, "connected");
                self.stats.connection(address, true);
                let connection = connection.with_stats(self.stats.clone());
                slot.backoff.reset();
                slot.retry_at = None;
                slot.connection = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                let delay = {
                    let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                    slot.backoff.next_delay(&mut rng)
                };
                debug!(%address, %error, ?delay, "connection failed");
                self.stats.connection(address, false);
                self.stats.error(crate::stats::error_class(&error));
                slot.retry_at = Some(tokio::time::Instant::now() + delay);
                Err(error)
            }
        }
    }

    /// Sends a request to broker `broker_id` (looked up in the metadata).
    pub async fn request_broker(
        &self,
        broker_id: i32,
        api: ApiKey,
        build: BuildRequest,
        expect_response: bool,
    ) -> Result<Option<Response>, RequestError> {
        let address = self
            .metadata()
            .broker(broker_id)
            .map(|b| b.address())
            .ok_or_else(|| Error::Protocol {
                peer: format!("broker {broker_id}"),
                reason: "broker not in metadata".into(),
            })?;
        let connection = self.connection(&address).await?;
        connection.request(api, build, expect_response).await
    }

    /// Sends a request that any broker can answer, trying known brokers (or the bootstrap
    /// servers) in turn until one answers.
    pub async fn request_any<F>(&self, api: ApiKey, build: F) -> Result<Response, Error>
    where
        F: Fn(i16) -> Result<RequestKind, Error> + Send + Sync + Clone + 'static,
    {
        let mut candidates: Vec<String> = self.metadata().brokers().map(|b| b.address()).collect();
        for server in &self.config.bootstrap_servers {
            if !candidates.contains(server) {
                candidates.push(server.clone());
            }
        }
        let start = {
            let mut rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
            *rotation = rotation.wrapping_add(1);
            *rotation
        };
        let mut last_error = Error::Closed;
        for i in 0..candidates.len() {
            let address = &candidates[(start + i) % candidates.len()];
            let connection = match self.connection(address).await {
                Ok(connection) => connection,
                Err(error) => {
                    last_error = error;
                    continue;
                }
            };
            let build = build.clone();
            match connection.request(api, Box::new(build), true).await {
                Ok(Some(response)) => return Ok(response),
                Ok(None) => {
                    return Err(Error::Protocol {
                        peer: address.clone(),
                        reason: "no response to a request that expects one".into(),
                    })
                }
                Err(RequestError { error, .. }) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Refreshes the metadata for the wanted topics. Concurrent callers share one refresh.
    pub async fn refresh_metadata(&self) -> Result<(), Error> {
        let seen = *self.refresh.lock().await;
        let mut done = self.refresh.lock().await;
        if *done != seen {
            // Someone refreshed while we waited for the lock.
            return Ok(());
        }
        let request = self.metadata().request();
        let build = move |_version: i16| Ok(RequestKind::Metadata(request.clone()));
        let response = self.request_any(ApiKey::Metadata, build).await?;
        let ResponseKind::Metadata(body) = *response.body else {
            return Err(Error::Protocol {
                peer: "broker".into(),
                reason: "Metadata answered with another API".into(),
            });
        };
        self.metadata().handle_response(&body, now());
        *done += 1;
        Ok(())
    }

    /// The number of partitions of `topic`, refreshing the metadata (with backoff) until the
    /// topic is known, a non-retriable error comes back, or `timeout` passes.
    pub async fn partitions_for(
        &self,
        topic: &str,
        timeout: std::time::Duration,
    ) -> Result<usize, Error> {
        self.metadata().want(topic);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max);
        loop {
            if let Some(count) = self.metadata().partition_count(topic) {
                return Ok(count);
            }
            let refreshed = self.refresh_metadata().await;
            if let Some(count) = self.metadata().partition_count(topic) {
                return Ok(count);
            }
            let topic_error = self.metadata().topic_error(topic);
            if let Some(code) = topic_error.filter(|code| !code.is_retriable()) {
                return Err(Error::Broker {
                    code,
                    context: Some(topic.to_string()),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match (refreshed, topic_error) {
                    (Err(error), _) => error,
                    (Ok(()), code) => Error::Broker {
                        code: code.unwrap_or(crate::proto::ErrorCode::UnknownTopicOrPartition),
                        context: Some(topic.to_string()),
                    },
                });
            }
            let delay = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                backoff.next_delay(&mut rng)
            };
            tokio::time::sleep_until((tokio::time::Instant::now() + delay).min(deadline)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_must_start_inside_a_runtime_and_with_a_valid_config() {
        let outside = ClusterClient::start("producer", Config::new("a:1"), None, Some(1));
        assert!(matches!(&outside, Err(Error::InvalidArgument(m)) if m.contains("producer")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let started = ClusterClient::start("consumer", Config::new("a:1"), None, Some(9));
            assert_eq!(started.map(|s| s.seed).ok(), Some(9));
            let invalid = ClusterClient::start("consumer", Config::new(""), None, None);
            assert!(
                matches!(invalid, Err(Error::Config { key, .. }) if key == "bootstrap.servers")
            );
        });
    }
}
