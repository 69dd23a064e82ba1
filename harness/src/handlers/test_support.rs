//! Helpers for handler tests: contexts, a seeded cluster, and an encode check that a
//! response is valid at the version it answers.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use franzy::proto::{ApiKey, ResponseKind};

use super::RequestContext;
use crate::cluster::{ClusterConfig, ClusterState, Time, WaiterId};

/// The time handler tests run at.
pub const NOW: i64 = 1_700_000_000_000;

/// A context for a request at `version` arriving at `broker`.
pub fn ctx(broker: i32, version: i16) -> RequestContext {
    api_ctx(ApiKey::ApiVersions, broker, version)
}

/// A context for a request of `api` at `version` arriving at `broker`, at cluster time zero
/// (wall-clock [`NOW`]), from waiter 1.
pub fn api_ctx(api: ApiKey, broker: i32, version: i16) -> RequestContext {
    RequestContext {
        api_key: api,
        api_version: version,
        broker_id: broker,
        client_id: Some("test".into()),
        waiter: WaiterId(1),
        now: Time::ZERO,
        now_ms: NOW,
        partition_errors: HashMap::new(),
    }
}

/// Three brokers and topic `t` with `partitions` partitions (partition p led by broker p % 3).
pub fn cluster_with(partitions: i32) -> ClusterState {
    cluster_configured(partitions, ClusterConfig::default())
}

/// [`cluster_with`], with `config` (its broker ids are replaced by 0, 1, 2).
pub fn cluster_configured(partitions: i32, config: ClusterConfig) -> ClusterState {
    let config = ClusterConfig {
        broker_ids: vec![0, 1, 2],
        ..config
    };
    let mut c = ClusterState::new(config);
    for id in 0..3 {
        c.set_broker_address(id, "127.0.0.1", 9092 + id as u16);
    }
    c.create_topic("t", partitions, BTreeMap::new())
        .expect("create topic t");
    c
}

/// Asserts that `response` encodes at `version`, as the server will do.
pub fn assert_encodes(response: &ResponseKind, version: i16) {
    let mut out = BytesMut::new();
    if let Err(e) = response.encode(&mut out, version) {
        panic!("response does not encode at v{version}: {e}");
    }
}
