//! The Kafka releases a cluster can pose as (`ClusterBuilder::kafka_version`), and the caps
//! on the API versions it serves (`ClusterBuilder::cap_api`, `remove_api`).
//!
//! A cluster built as release R advertises and serves, for each API the harness implements,
//! only the versions R's brokers had, and none of the APIs R did not have: ApiVersions lists
//! exactly that, an API outside it closes the connection (as Kafka closes it for an API key
//! it does not know), and a version outside it closes the connection too, except ApiVersions,
//! which answers UNSUPPORTED_VERSION (KIP-511). Where a release's range starts below what
//! `kafka-protocol` can decode (every release before 4.0 had Produce v0-2, Fetch v0-3, ...,
//! which Kafka 4.0 removed, KIP-896), the cluster serves the part it can: a 2.8 cluster serves
//! Produce v3-9, where a 2.8 broker served v0-9. No client of the last five years sends the
//! older versions to a broker that has the newer ones.
//!
//! ## Where the tables come from
//!
//! Per release, the `(api key, min, max)` triples the release's brokers advertise in
//! ApiVersions, as its message specs give them: `validVersions` of every
//! `clients/src/main/resources/common/message/*Request.json` at the release tag of
//! apache/kafka (`git show 3.6.0:clients/src/main/resources/common/message/FetchRequest.json`),
//! keeping the APIs whose `listeners` include the broker's listener, and dropping the last
//! version where `latestVersionUnstable` is set (Kafka advertises it only with
//! `unstable.api.versions.enable`). The listener is `zkBroker` up to 3.2 (ZooKeeper clusters
//! were the production kind until KRaft was declared ready in 3.3, KIP-833) and `broker`
//! (KRaft) from 3.3 on; the two differ in inter-broker APIs, in DescribeQuorum, the telemetry
//! APIs and DescribeTopicPartitions (KRaft only), and before 3.5-3.6 in the SCRAM and
//! delegation-token APIs (ZooKeeper only). 3.9 is taken from the tag 3.9.0-rc3. Every table
//! from 2.8 to 3.9 was checked against franz-go's `pkg/kversion` (a list kept by hand from
//! Kafka's commits, `z28`..`z32`, `b33`..`b39`): no difference.
//!
//! 4.0 and 4.1 are 3.9's KRaft table with Kafka 4.0's changes: KIP-896's removals (Fetch
//! from v4, ListOffsets v1, OffsetCommit v2, OffsetFetch v1, JoinGroup v2, CreateTopics v2,
//! DeleteTopics v1, OffsetForLeaderEpoch v2, WriteTxnMarkers v1, the ACL, config, log-dir and
//! delegation-token APIs from v1), and the new versions of KIP-890 (Produce 12, EndTxn 5,
//! TxnOffsetCommit 5), KIP-1075 (ListOffsets 10), KIP-1102 (Metadata 13), KIP-1043
//! (DescribeGroups 6), KIP-1073 (DescribeCluster 2), KIP-848/1082 (ConsumerGroupHeartbeat 1,
//! ConsumerGroupDescribe 1), UpdateFeatures 2; 4.1 adds KIP-516's Produce 13, KIP-1166's Fetch
//! 18, KIP-860's AlterPartitionReassignments 1, KIP-1152's ListTransactions 2, KIP-1142's
//! ListConfigResources 1, the share-group APIs (KIP-932) and JoinGroup v0-1 again
//! (KAFKA-19444, also in 4.0.1; "4.0" here is 4.0.0). As franz-go's `b40`/`b41`, and the
//! minimums as `kafka-protocol` 0.18 (generated from Kafka 4.1's specs) decodes them. Kafka
//! 4.x advertises Produce from v0 although it refuses v0-2 (KAFKA-18659, for librdkafka's
//! feature detection): the table says so, the harness serves (and advertises) Produce from v3.
//!
//! Finalized features (ApiVersions v3+) per release belong here too, beside the API tables,
//! when the harness advertises any.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use franzy::proto::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// A Kafka release whose brokers' API versions a cluster can pose as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum KafkaVersion {
    /// Apache Kafka 2.8 (ZooKeeper broker).
    V2_8,
    /// Apache Kafka 3.0 (ZooKeeper broker).
    V3_0,
    /// Apache Kafka 3.1 (ZooKeeper broker).
    V3_1,
    /// Apache Kafka 3.2 (ZooKeeper broker).
    V3_2,
    /// Apache Kafka 3.3 (KRaft broker).
    V3_3,
    /// Apache Kafka 3.4 (KRaft broker).
    V3_4,
    /// Apache Kafka 3.5 (KRaft broker).
    V3_5,
    /// Apache Kafka 3.6 (KRaft broker).
    V3_6,
    /// Apache Kafka 3.7 (KRaft broker).
    V3_7,
    /// Apache Kafka 3.8 (KRaft broker).
    V3_8,
    /// Apache Kafka 3.9 (KRaft broker).
    V3_9,
    /// Apache Kafka 4.0.0.
    V4_0,
    /// Apache Kafka 4.1.
    V4_1,
}

impl KafkaVersion {
    /// Every release, oldest first.
    pub const ALL: &'static [KafkaVersion] = &[
        Self::V2_8,
        Self::V3_0,
        Self::V3_1,
        Self::V3_2,
        Self::V3_3,
        Self::V3_4,
        Self::V3_5,
        Self::V3_6,
        Self::V3_7,
        Self::V3_8,
        Self::V3_9,
        Self::V4_0,
        Self::V4_1,
    ];

    /// The release as Kafka names it, `major.minor`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V2_8 => "2.8",
            Self::V3_0 => "3.0",
            Self::V3_1 => "3.1",
            Self::V3_2 => "3.2",
            Self::V3_3 => "3.3",
            Self::V3_4 => "3.4",
            Self::V3_5 => "3.5",
            Self::V3_6 => "3.6",
            Self::V3_7 => "3.7",
            Self::V3_8 => "3.8",
            Self::V3_9 => "3.9",
            Self::V4_0 => "4.0",
            Self::V4_1 => "4.1",
        }
    }

    /// Whether the release's table is a ZooKeeper broker's (up to 3.2) or a KRaft broker's.
    pub fn zookeeper(self) -> bool {
        self <= Self::V3_2
    }

    /// Every API the release's brokers advertise, as `(api key, min, max)` in key order,
    /// inter-broker APIs included.
    pub fn api_versions(self) -> &'static [(i16, i16, i16)] {
        match self {
            Self::V2_8 => API_V2_8,
            Self::V3_0 => API_V3_0,
            Self::V3_1 => API_V3_1,
            Self::V3_2 => API_V3_2,
            Self::V3_3 => API_V3_3,
            Self::V3_4 => API_V3_4,
            Self::V3_5 => API_V3_5,
            Self::V3_6 => API_V3_6,
            Self::V3_7 => API_V3_7,
            Self::V3_8 => API_V3_8,
            Self::V3_9 => API_V3_9,
            Self::V4_0 => API_V4_0,
            Self::V4_1 => API_V4_1,
        }
    }

    /// The versions of `api` the release's brokers advertise, if they have it.
    pub fn range(self, api: ApiKey) -> Option<VersionRange> {
        let table = self.api_versions();
        let key = api as i16;
        let at = table.binary_search_by_key(&key, |(k, _, _)| *k).ok()?;
        let (_, min, max) = table[at];
        Some(VersionRange { min, max })
    }
}

impl fmt::Display for KafkaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AsRef<str> for KafkaVersion {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// A version string that names no release of [`KafkaVersion::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Kafka version {0:?} (known: 2.8, 3.0 to 3.9, 4.0, 4.1)")]
pub struct UnknownKafkaVersion(pub String);

impl FromStr for KafkaVersion {
    type Err = UnknownKafkaVersion;

    /// `major.minor`, optionally with a patch number (`3.6.2`), which changes nothing.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let mut parts = trimmed.split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(UnknownKafkaVersion(text.to_string()));
        };
        let patch_ok = match (parts.next(), parts.next()) {
            (None, _) => true,
            (Some(patch), None) => !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()),
            _ => false,
        };
        let wanted = format!("{major}.{minor}");
        Self::ALL
            .iter()
            .copied()
            .find(|v| patch_ok && v.name() == wanted)
            .ok_or_else(|| UnknownKafkaVersion(text.to_string()))
    }
}

/// What limits the API versions a cluster serves beyond what its handlers implement: a
/// release to pose as, and per-API caps. The default limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionCaps {
    /// Serve only what this release's brokers had.
    pub kafka_version: Option<KafkaVersion>,
    /// The highest version served, per API key; an API capped below the lowest version it
    /// would serve is not served at all (a cap of -1 removes it).
    pub max_versions: BTreeMap<i16, i16>,
}

impl ApiVersionCaps {
    /// The versions of `api` served, out of the `implemented` ones; `None` when none are.
    pub fn apply(&self, api: ApiKey, implemented: VersionRange) -> Option<VersionRange> {
        let mut range = implemented;
        if let Some(release) = self.kafka_version {
            let theirs = release.range(api)?;
            range.min = range.min.max(theirs.min);
            range.max = range.max.min(theirs.max);
        }
        if let Some(&cap) = self.max_versions.get(&(api as i16)) {
            range.max = range.max.min(cap);
        }
        (range.min <= range.max).then_some(range)
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.kafka_version.is_none() && self.max_versions.is_empty()
    }
}

// Generated from the sources above; see the module doc.
#[rustfmt::skip]
const API_V2_8: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 12), (2, 0, 6), (3, 0, 11), (4, 0, 5), (5, 0, 3), (6, 0, 7),
    (7, 0, 3), (8, 0, 8), (9, 0, 7), (10, 0, 3), (11, 0, 7), (12, 0, 4), (13, 0, 4),
    (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1), (18, 0, 3), (19, 0, 7), (20, 0, 6),
    (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3), (25, 0, 3), (26, 0, 3), (27, 0, 1),
    (28, 0, 3), (29, 0, 2), (30, 0, 2), (31, 0, 2), (32, 0, 4), (33, 0, 2), (34, 0, 2),
    (35, 0, 2), (36, 0, 2), (37, 0, 3), (38, 0, 2), (39, 0, 2), (40, 0, 2), (41, 0, 2),
    (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1),
    (49, 0, 1), (50, 0, 0), (51, 0, 0), (56, 0, 0), (57, 0, 0), (60, 0, 0), (61, 0, 0),
];
#[rustfmt::skip]
const API_V3_0: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 12), (2, 0, 7), (3, 0, 11), (4, 0, 5), (5, 0, 3), (6, 0, 7),
    (7, 0, 3), (8, 0, 8), (9, 0, 8), (10, 0, 4), (11, 0, 7), (12, 0, 4), (13, 0, 4),
    (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1), (18, 0, 3), (19, 0, 7), (20, 0, 6),
    (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3), (25, 0, 3), (26, 0, 3), (27, 0, 1),
    (28, 0, 3), (29, 0, 2), (30, 0, 2), (31, 0, 2), (32, 0, 4), (33, 0, 2), (34, 0, 2),
    (35, 0, 2), (36, 0, 2), (37, 0, 3), (38, 0, 2), (39, 0, 2), (40, 0, 2), (41, 0, 2),
    (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1),
    (49, 0, 1), (50, 0, 0), (51, 0, 0), (56, 0, 0), (57, 0, 0), (60, 0, 0), (61, 0, 0),
    (65, 0, 0), (66, 0, 0), (67, 0, 0),
];
#[rustfmt::skip]
const API_V3_1: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 13), (2, 0, 7), (3, 0, 12), (4, 0, 5), (5, 0, 3), (6, 0, 7),
    (7, 0, 3), (8, 0, 8), (9, 0, 8), (10, 0, 4), (11, 0, 7), (12, 0, 4), (13, 0, 4),
    (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1), (18, 0, 3), (19, 0, 7), (20, 0, 6),
    (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3), (25, 0, 3), (26, 0, 3), (27, 0, 1),
    (28, 0, 3), (29, 0, 2), (30, 0, 2), (31, 0, 2), (32, 0, 4), (33, 0, 2), (34, 0, 2),
    (35, 0, 2), (36, 0, 2), (37, 0, 3), (38, 0, 2), (39, 0, 2), (40, 0, 2), (41, 0, 2),
    (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1),
    (49, 0, 1), (50, 0, 0), (51, 0, 0), (56, 0, 0), (57, 0, 0), (60, 0, 0), (61, 0, 0),
    (65, 0, 0), (66, 0, 0), (67, 0, 0),
];
#[rustfmt::skip]
const API_V3_2: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 13), (2, 0, 7), (3, 0, 12), (4, 0, 6), (5, 0, 3), (6, 0, 7),
    (7, 0, 3), (8, 0, 8), (9, 0, 8), (10, 0, 4), (11, 0, 9), (12, 0, 4), (13, 0, 5),
    (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1), (18, 0, 3), (19, 0, 7), (20, 0, 6),
    (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3), (25, 0, 3), (26, 0, 3), (27, 0, 1),
    (28, 0, 3), (29, 0, 2), (30, 0, 2), (31, 0, 2), (32, 0, 4), (33, 0, 2), (34, 0, 2),
    (35, 0, 3), (36, 0, 2), (37, 0, 3), (38, 0, 2), (39, 0, 2), (40, 0, 2), (41, 0, 2),
    (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1),
    (49, 0, 1), (50, 0, 0), (51, 0, 0), (56, 0, 1), (57, 0, 0), (60, 0, 0), (61, 0, 0),
    (65, 0, 0), (66, 0, 0), (67, 0, 0),
];
#[rustfmt::skip]
const API_V3_3: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 13), (2, 0, 7), (3, 0, 12), (8, 0, 8), (9, 0, 8), (10, 0, 4),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3),
    (25, 0, 3), (26, 0, 3), (27, 0, 1), (28, 0, 3), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (42, 0, 2),
    (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1),
    (55, 0, 1), (57, 0, 1), (60, 0, 0), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 0),
];
#[rustfmt::skip]
const API_V3_4: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 13), (2, 0, 7), (3, 0, 12), (8, 0, 8), (9, 0, 8), (10, 0, 4),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3),
    (25, 0, 3), (26, 0, 3), (27, 0, 1), (28, 0, 3), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (42, 0, 2),
    (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1),
    (55, 0, 1), (57, 0, 1), (60, 0, 0), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 0),
];
#[rustfmt::skip]
const API_V3_5: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 15), (2, 0, 8), (3, 0, 12), (8, 0, 8), (9, 0, 8), (10, 0, 4),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 3),
    (25, 0, 3), (26, 0, 3), (27, 0, 1), (28, 0, 3), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (42, 0, 2),
    (43, 0, 2), (44, 0, 1), (45, 0, 0), (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1),
    (50, 0, 0), (51, 0, 0), (55, 0, 1), (57, 0, 1), (60, 0, 0), (61, 0, 0), (64, 0, 0),
    (65, 0, 0), (66, 0, 0),
];
#[rustfmt::skip]
const API_V3_6: &[(i16, i16, i16)] = &[
    (0, 0, 9), (1, 0, 15), (2, 0, 8), (3, 0, 12), (8, 0, 8), (9, 0, 8), (10, 0, 4),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 4),
    (25, 0, 3), (26, 0, 3), (27, 0, 1), (28, 0, 3), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (38, 0, 3),
    (39, 0, 2), (40, 0, 2), (41, 0, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 1),
    (57, 0, 1), (60, 0, 0), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 0),
];
#[rustfmt::skip]
const API_V3_7: &[(i16, i16, i16)] = &[
    (0, 0, 10), (1, 0, 16), (2, 0, 8), (3, 0, 12), (8, 0, 9), (9, 0, 9), (10, 0, 4),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 4), (23, 0, 4), (24, 0, 4),
    (25, 0, 3), (26, 0, 3), (27, 0, 1), (28, 0, 3), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (38, 0, 3),
    (39, 0, 2), (40, 0, 2), (41, 0, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 1),
    (57, 0, 1), (60, 0, 1), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 0), (68, 0, 0),
    (71, 0, 0), (72, 0, 0), (74, 0, 0),
];
#[rustfmt::skip]
const API_V3_8: &[(i16, i16, i16)] = &[
    (0, 0, 11), (1, 0, 16), (2, 0, 8), (3, 0, 12), (8, 0, 9), (9, 0, 9), (10, 0, 5),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 5), (17, 0, 1),
    (18, 0, 3), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 5), (23, 0, 4), (24, 0, 5),
    (25, 0, 4), (26, 0, 4), (27, 0, 1), (28, 0, 4), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (38, 0, 3),
    (39, 0, 2), (40, 0, 2), (41, 0, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 1),
    (57, 0, 1), (60, 0, 1), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 1), (68, 0, 0),
    (69, 0, 0), (71, 0, 0), (72, 0, 0), (74, 0, 0), (75, 0, 0),
];
#[rustfmt::skip]
const API_V3_9: &[(i16, i16, i16)] = &[
    (0, 0, 11), (1, 0, 17), (2, 0, 9), (3, 0, 12), (8, 0, 9), (9, 0, 9), (10, 0, 6),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 5), (16, 0, 5), (17, 0, 1),
    (18, 0, 4), (19, 0, 7), (20, 0, 6), (21, 0, 2), (22, 0, 5), (23, 0, 4), (24, 0, 5),
    (25, 0, 4), (26, 0, 4), (27, 0, 1), (28, 0, 4), (29, 0, 3), (30, 0, 3), (31, 0, 3),
    (32, 0, 4), (33, 0, 2), (34, 0, 2), (35, 0, 4), (36, 0, 2), (37, 0, 3), (38, 0, 3),
    (39, 0, 2), (40, 0, 2), (41, 0, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 2),
    (57, 0, 1), (60, 0, 1), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 1), (68, 0, 0),
    (69, 0, 0), (71, 0, 0), (72, 0, 0), (74, 0, 0), (75, 0, 0), (80, 0, 0), (81, 0, 0),
];
#[rustfmt::skip]
const API_V4_0: &[(i16, i16, i16)] = &[
    (0, 0, 12), (1, 4, 17), (2, 1, 10), (3, 0, 13), (8, 2, 9), (9, 1, 9), (10, 0, 6),
    (11, 2, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 6), (16, 0, 5), (17, 0, 1),
    (18, 0, 4), (19, 2, 7), (20, 1, 6), (21, 0, 2), (22, 0, 5), (23, 2, 4), (24, 0, 5),
    (25, 0, 4), (26, 0, 5), (27, 1, 1), (28, 0, 5), (29, 1, 3), (30, 1, 3), (31, 1, 3),
    (32, 1, 4), (33, 0, 2), (34, 1, 2), (35, 1, 4), (36, 0, 2), (37, 0, 3), (38, 1, 3),
    (39, 1, 2), (40, 1, 2), (41, 1, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 0),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 2),
    (57, 0, 2), (60, 0, 2), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 1), (68, 0, 1),
    (69, 0, 1), (71, 0, 0), (72, 0, 0), (74, 0, 0), (75, 0, 0), (80, 0, 0), (81, 0, 0),
];
#[rustfmt::skip]
const API_V4_1: &[(i16, i16, i16)] = &[
    (0, 0, 13), (1, 4, 18), (2, 1, 10), (3, 0, 13), (8, 2, 9), (9, 1, 9), (10, 0, 6),
    (11, 0, 9), (12, 0, 4), (13, 0, 5), (14, 0, 5), (15, 0, 6), (16, 0, 5), (17, 0, 1),
    (18, 0, 4), (19, 2, 7), (20, 1, 6), (21, 0, 2), (22, 0, 5), (23, 2, 4), (24, 0, 5),
    (25, 0, 4), (26, 0, 5), (27, 1, 1), (28, 0, 5), (29, 1, 3), (30, 1, 3), (31, 1, 3),
    (32, 1, 4), (33, 0, 2), (34, 1, 2), (35, 1, 4), (36, 0, 2), (37, 0, 3), (38, 1, 3),
    (39, 1, 2), (40, 1, 2), (41, 1, 3), (42, 0, 2), (43, 0, 2), (44, 0, 1), (45, 0, 1),
    (46, 0, 0), (47, 0, 0), (48, 0, 1), (49, 0, 1), (50, 0, 0), (51, 0, 0), (55, 0, 2),
    (57, 0, 2), (60, 0, 2), (61, 0, 0), (64, 0, 0), (65, 0, 0), (66, 0, 2), (68, 0, 1),
    (69, 0, 1), (71, 0, 0), (72, 0, 0), (74, 0, 1), (75, 0, 0), (76, 0, 1), (77, 0, 1),
    (78, 0, 1), (79, 0, 1), (80, 0, 0), (81, 0, 0), (83, 0, 0), (84, 0, 0), (85, 0, 0),
    (86, 0, 0), (87, 0, 0), (90, 0, 0), (91, 0, 0), (92, 0, 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_by_key_and_ranges_are_ordered() {
        for release in KafkaVersion::ALL {
            let table = release.api_versions();
            for pair in table.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{release}: {pair:?}");
            }
            for (key, min, max) in table {
                assert!(min <= max, "{release}: key {key}");
            }
        }
    }

    #[test]
    fn later_releases_never_lower_a_maximum_or_drop_a_client_api() {
        // Between ZooKeeper 3.2 and KRaft 3.3 the inter-broker and ZooKeeper-only APIs go;
        // every other API keeps or raises its maximum from release to release.
        let client_apis = [
            0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
        ];
        for pair in KafkaVersion::ALL.windows(2) {
            let (old, new) = (pair[0], pair[1]);
            for key in client_apis {
                let api = ApiKey::try_from(key).expect("a known key");
                let (Some(before), Some(after)) = (old.range(api), new.range(api)) else {
                    panic!("{api:?} missing in {old} or {new}");
                };
                assert!(
                    after.max >= before.max,
                    "{api:?}: {old} {before:?}, {new} {after:?}"
                );
            }
        }
    }

    #[test]
    fn known_versions_of_known_releases() {
        let range = |v: KafkaVersion, api| v.range(api).map(|r| (r.min, r.max));
        assert_eq!(range(KafkaVersion::V2_8, ApiKey::Produce), Some((0, 9)));
        assert_eq!(range(KafkaVersion::V2_8, ApiKey::Fetch), Some((0, 12)));
        assert_eq!(range(KafkaVersion::V2_8, ApiKey::ApiVersions), Some((0, 3)));
        assert_eq!(
            range(KafkaVersion::V2_8, ApiKey::DescribeTransactions),
            None
        );
        assert_eq!(
            range(KafkaVersion::V3_0, ApiKey::DescribeTransactions),
            Some((0, 0))
        );
        assert_eq!(range(KafkaVersion::V3_6, ApiKey::Fetch), Some((0, 15)));
        assert_eq!(range(KafkaVersion::V3_7, ApiKey::Produce), Some((0, 10)));
        assert_eq!(range(KafkaVersion::V3_9, ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(range(KafkaVersion::V4_0, ApiKey::Fetch), Some((4, 17)));
        assert_eq!(range(KafkaVersion::V4_0, ApiKey::JoinGroup), Some((2, 9)));
        assert_eq!(range(KafkaVersion::V4_1, ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(range(KafkaVersion::V4_1, ApiKey::Produce), Some((0, 13)));
        // ZooKeeper brokers have no DescribeQuorum, KRaft brokers from 3.3 on do.
        assert_eq!(range(KafkaVersion::V3_2, ApiKey::DescribeQuorum), None);
        assert_eq!(
            range(KafkaVersion::V3_3, ApiKey::DescribeQuorum),
            Some((0, 1))
        );
        // DescribeTopicPartitions came with 3.8 (KIP-966).
        assert_eq!(
            range(KafkaVersion::V3_7, ApiKey::DescribeTopicPartitions),
            None
        );
        assert_eq!(
            range(KafkaVersion::V3_8, ApiKey::DescribeTopicPartitions),
            Some((0, 0))
        );
    }

    #[test]
    fn versions_parse_with_or_without_a_patch_number() {
        assert_eq!("2.8".parse(), Ok(KafkaVersion::V2_8));
        assert_eq!("3.6.2".parse(), Ok(KafkaVersion::V3_6));
        assert_eq!(" 4.0 ".parse(), Ok(KafkaVersion::V4_0));
        for bad in ["2.7", "4", "4.0.x", "4.0.1.2", "", "v3.6", "3.10"] {
            assert!(bad.parse::<KafkaVersion>().is_err(), "{bad}");
        }
        for release in KafkaVersion::ALL {
            assert_eq!(release.name().parse(), Ok(*release));
        }
    }

    #[test]
    fn caps_intersect_the_release_and_the_per_api_maximum() {
        let implemented = VersionRange { min: 3, max: 13 };
        let mut caps = ApiVersionCaps::default();
        assert_eq!(caps.apply(ApiKey::Produce, implemented), Some(implemented));
        caps.kafka_version = Some(KafkaVersion::V2_8);
        assert_eq!(
            caps.apply(ApiKey::Produce, implemented),
            Some(VersionRange { min: 3, max: 9 })
        );
        caps.max_versions.insert(ApiKey::Produce as i16, 7);
        assert_eq!(
            caps.apply(ApiKey::Produce, implemented),
            Some(VersionRange { min: 3, max: 7 })
        );
        caps.max_versions.insert(ApiKey::Produce as i16, 2);
        assert_eq!(caps.apply(ApiKey::Produce, implemented), None);
        assert_eq!(
            caps.apply(
                ApiKey::DescribeTransactions,
                VersionRange { min: 0, max: 0 }
            ),
            None
        );
    }
}
