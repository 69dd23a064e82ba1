//! [`ClientBuilder`]: what every client collects before it starts (configuration,
//! transport, seed). `ProducerBuilder` and `ConsumerBuilder` are this type; each client's
//! module adds its own `build()`.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::config::Config;
use crate::io::transport::Connector;

/// Builds a client of type `C` ([`crate::Producer`] or [`crate::Consumer`]) with a custom
/// transport or seed.
pub struct ClientBuilder<C> {
    pub(crate) config: Config,
    pub(crate) connector: Option<Arc<dyn Connector>>,
    pub(crate) seed: Option<u64>,
    /// A consumer's rebalance listener.
    pub(crate) listener: Option<Arc<dyn crate::consumer::RebalanceListener>>,
    /// A consumer's assignors, replacing `partition.assignment.strategy`.
    pub(crate) assignors: Option<Vec<Box<dyn crate::assignor::PartitionAssignor>>>,
    client: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish()
    }
}

impl<C> ClientBuilder<C> {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            connector: None,
            seed: None,
            listener: None,
            assignors: None,
            client: PhantomData,
        }
    }

    /// How connections to brokers are opened. Default [`TcpConnector`](crate::transport::TcpConnector).
    pub fn connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Seed of everything random in the client (backoff jitter, sticky partition choice),
    /// so that a test replays the same run. Default: drawn from the clock.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}
