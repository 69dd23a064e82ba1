//! Pure broker state: brokers, topics, partitions and their logs. No IO, no clock: every
//! mutation takes what it needs (time, ids) as arguments, so the same calls give the same
//! state every run.

/// Settings fixed when the cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Broker ids, in order (0, 1, 2, ... by default).
    pub broker_ids: Vec<i32>,
    /// The cluster id reported by Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Create unknown topics on Metadata/Produce (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (`num.partitions`).
    pub default_partitions: i32,
    /// Largest record batch accepted by Produce (`message.max.bytes`).
    pub message_max_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            broker_ids: vec![0, 1, 2],
            cluster_id: "franzy-harness".to_string(),
            auto_create_topics: true,
            default_partitions: 1,
            message_max_bytes: 1024 * 1024,
        }
    }
}

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port (0 until the listener is bound).
    pub port: i32,
    /// Whether the broker is up; a down broker is left out of Metadata.
    pub up: bool,
}

/// The whole cluster's state.
#[derive(Debug)]
pub struct ClusterState {
    config: ClusterConfig,
    brokers: Vec<BrokerInfo>,
}

impl ClusterState {
    /// An empty cluster with the configured brokers, none of them bound yet.
    pub fn new(config: ClusterConfig) -> Self {
        let brokers = config
            .broker_ids
            .iter()
            .map(|&id| BrokerInfo {
                id,
                host: "127.0.0.1".into(),
                port: 0,
                up: true,
            })
            .collect();
        Self { config, brokers }
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// All brokers, up or down.
    pub fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    /// Records where broker `id` listens.
    pub fn set_broker_address(&mut self, id: i32, host: &str, port: u16) {
        if let Some(b) = self.brokers.iter_mut().find(|b| b.id == id) {
            b.host = host.to_string();
            b.port = i32::from(port);
        }
    }

    /// Placeholder until the topic model lands: refuses every topic.
    pub fn create_topic(
        &mut self,
        _name: &str,
        _partitions: i32,
        _configs: std::collections::BTreeMap<String, String>,
    ) -> Result<uuid::Uuid, franzy::proto::ErrorCode> {
        Err(franzy::proto::ErrorCode::InvalidRequest)
    }

    /// Marks broker `id` up or down.
    pub fn set_broker_up(&mut self, id: i32, up: bool) {
        if let Some(b) = self.brokers.iter_mut().find(|b| b.id == id) {
            b.up = up;
        }
    }
}
