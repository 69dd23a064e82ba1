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
    /// Gets a statistics snapshot every `statistics.interval.ms`.
    pub(crate) on_statistics: Option<crate::stats::StatisticsCallback>,
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
            on_statistics: None,
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

    /// Calls `callback` with a snapshot of the client's statistics every
    /// `statistics.interval.ms` ([`Config::statistics_interval`]; nothing is called while it
    /// is 0, its default), as librdkafka's `stats_cb` is called; [`Stats::to_json`] gives
    /// the JSON librdkafka hands over (its schema is in [`crate::stats`]). The snapshot is
    /// the one `Producer::stats` or `Consumer::stats` returns. It runs on a background task
    /// of the client's runtime until the client is closed or dropped: keep it short, or
    /// send the snapshot to a channel. Default: none.
    ///
    /// [`Stats::to_json`]: crate::stats::Stats::to_json
    pub fn on_statistics(
        mut self,
        callback: impl Fn(&crate::stats::Stats) + Send + Sync + 'static,
    ) -> Self {
        self.on_statistics = Some(Arc::new(callback));
        self
    }
}
