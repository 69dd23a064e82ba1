//! The group's requests as values, built for whichever version the coordinator's broker
//! negotiated (protocol guide: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch). Fields a version lacks are left out; a request
//! that cannot be expressed at the negotiated version (static membership below JoinGroup
//! v5) is an error, as in Java.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as HeartbeatTopicPartitions;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, RequestKind, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::Error;
use crate::topic_partition::TopicPartition;

/// FindCoordinator's key type for a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

/// An offset to commit, with Java's `OffsetAndMetadata` fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to read.
    pub offset: i64,
    /// The leader epoch of the last record read, if known (KIP-320).
    pub leader_epoch: Option<i32>,
    /// Free text stored with the offset.
    pub metadata: Option<String>,
}

impl OffsetAndMetadata {
    /// `offset` without epoch or metadata.
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            leader_epoch: None,
            metadata: None,
        }
    }

    /// With metadata text.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// With the leader epoch of the last record read.
    pub fn with_leader_epoch(mut self, leader_epoch: i32) -> Self {
        self.leader_epoch = Some(leader_epoch);
        self
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any broker (FindCoordinator).
    AnyBroker,
    /// The group coordinator: node id and `host:port`. The driver keeps a connection of
    /// its own for it, as Java does, so that a JoinGroup held for a rebalance never stalls
    /// fetches to the same broker.
    Coordinator {
        /// Node id.
        node: i32,
        /// `host:port`.
        address: String,
    },
}

/// A request the group engine wants sent: see [`super::GroupEngine::poll_requests`].
#[derive(Debug, Clone)]
pub struct GroupRequest {
    /// Identifies the answer: hand it back with the response or failure.
    pub id: u64,
    /// Where to send it.
    pub target: Target,
    pub(super) body: Body,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
    FindCoordinator {
        group_id: String,
    },
    JoinGroup {
        group_id: String,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        member_id: String,
        group_instance_id: Option<String>,
        protocols: Vec<(String, Bytes)>,
        reason: Option<String>,
    },
    SyncGroup {
        group_id: String,
        generation: i32,
        member_id: String,
        group_instance_id: Option<String>,
        protocol_name: String,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group_id: String,
        generation: i32,
        member_id: String,
        group_instance_id: Option<String>,
    },
    LeaveGroup {
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        reason: String,
    },
    OffsetCommit {
        group_id: String,
        generation: i32,
        member_id: String,
        group_instance_id: Option<String>,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    },
    OffsetFetch {
        group_id: String,
        partitions: Vec<TopicPartition>,
        require_stable: bool,
        /// KIP-848 (v9+): the member asking, with its epoch; `None`, -1 otherwise.
        member: Option<(String, i32)>,
    },
    /// KIP-848's heartbeat: fields left `None` (or -1) are unchanged since the last
    /// request the coordinator answered.
    ConsumerGroupHeartbeat(Heartbeat),
}

/// The fields of a ConsumerGroupHeartbeat (KIP-848); `None` means "unchanged".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Heartbeat {
    pub(super) group_id: String,
    pub(super) member_id: String,
    pub(super) member_epoch: i32,
    pub(super) instance_id: Option<String>,
    pub(super) rack_id: Option<String>,
    /// -1: unchanged.
    pub(super) rebalance_timeout_ms: i32,
    pub(super) topics: Option<Vec<String>>,
    pub(super) regex: Option<String>,
    pub(super) server_assignor: Option<String>,
    pub(super) owned: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group(value: &str) -> GroupId {
    GroupId(text(value))
}

/// Partitions grouped by topic, topics and partitions in order.
fn by_topic<T: Clone>(entries: &[(TopicPartition, T)]) -> Vec<(String, Vec<(i32, T)>)> {
    let mut sorted: Vec<&(TopicPartition, T)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, Vec<(i32, T)>)> = Vec::new();
    for (tp, value) in sorted {
        match out.last_mut() {
            Some((topic, list)) if *topic == tp.topic => list.push((tp.partition, value.clone())),
            _ => out.push((tp.topic.clone(), vec![(tp.partition, value.clone())])),
        }
    }
    out
}

impl GroupRequest {
    /// The API.
    pub fn api(&self) -> ApiKey {
        match self.body {
            Body::FindCoordinator { .. } => ApiKey::FindCoordinator,
            Body::JoinGroup { .. } => ApiKey::JoinGroup,
            Body::SyncGroup { .. } => ApiKey::SyncGroup,
            Body::Heartbeat { .. } => ApiKey::Heartbeat,
            Body::LeaveGroup { .. } => ApiKey::LeaveGroup,
            Body::OffsetCommit { .. } => ApiKey::OffsetCommit,
            Body::OffsetFetch { .. } => ApiKey::OffsetFetch,
            Body::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        }
    }

    /// Whether the driver waits for an answer (all do).
    pub fn expects_response(&self) -> bool {
        true
    }

    /// The request body at `version`.
    pub fn build(&self, version: i16) -> Result<RequestKind, Error> {
        let unsupported = |what: &str| {
            Error::InvalidArgument(format!(
                "{what} needs a newer {:?} than the coordinator's v{version}",
                self.api()
            ))
        };
        Ok(match &self.body {
            Body::FindCoordinator { group_id } => {
                let mut request = FindCoordinatorRequest::default();
                if version >= 4 {
                    request.coordinator_keys = vec![text(group_id)];
                } else {
                    request.key = text(group_id);
                }
                if version >= 1 {
                    request.key_type = KEY_TYPE_GROUP;
                }
                RequestKind::FindCoordinator(request)
            }
            Body::JoinGroup {
                group_id,
                session_timeout_ms,
                rebalance_timeout_ms,
                member_id,
                group_instance_id,
                protocols,
                reason,
            } => {
                if group_instance_id.is_some() && version < 5 {
                    return Err(unsupported("static membership (group.instance.id)"));
                }
                let mut request = JoinGroupRequest::default()
                    .with_group_id(group(group_id))
                    .with_session_timeout_ms(*session_timeout_ms)
                    .with_member_id(text(member_id))
                    .with_protocol_type(text("consumer"))
                    .with_protocols(
                        protocols
                            .iter()
                            .map(|(name, metadata)| {
                                JoinGroupRequestProtocol::default()
                                    .with_name(text(name))
                                    .with_metadata(metadata.clone())
                            })
                            .collect(),
                    );
                if version >= 1 {
                    request.rebalance_timeout_ms = *rebalance_timeout_ms;
                }
                if version >= 5 {
                    request.group_instance_id = group_instance_id.as_deref().map(text);
                }
                if version >= 8 {
                    request.reason = reason.as_deref().map(text);
                }
                RequestKind::JoinGroup(request)
            }
            Body::SyncGroup {
                group_id,
                generation,
                member_id,
                group_instance_id,
                protocol_name,
                assignments,
            } => {
                let mut request = SyncGroupRequest::default()
                    .with_group_id(group(group_id))
                    .with_generation_id(*generation)
                    .with_member_id(text(member_id))
                    .with_assignments(
                        assignments
                            .iter()
                            .map(|(member, assignment)| {
                                SyncGroupRequestAssignment::default()
                                    .with_member_id(text(member))
                                    .with_assignment(assignment.clone())
                            })
                            .collect(),
                    );
                if version >= 3 {
                    request.group_instance_id = group_instance_id.as_deref().map(text);
                }
                if version >= 5 {
                    request.protocol_type = Some(text("consumer"));
                    request.protocol_name = Some(text(protocol_name));
                }
                RequestKind::SyncGroup(request)
            }
            Body::Heartbeat {
                group_id,
                generation,
                member_id,
                group_instance_id,
            } => {
                let mut request = HeartbeatRequest::default()
                    .with_group_id(group(group_id))
                    .with_generation_id(*generation)
                    .with_member_id(text(member_id));
                if version >= 3 {
                    request.group_instance_id = group_instance_id.as_deref().map(text);
                }
                RequestKind::Heartbeat(request)
            }
            Body::LeaveGroup {
                group_id,
                member_id,
                group_instance_id,
                reason,
            } => {
                let mut request = LeaveGroupRequest::default().with_group_id(group(group_id));
                if version >= 3 {
                    let mut member = MemberIdentity::default()
                        .with_member_id(text(member_id))
                        .with_group_instance_id(group_instance_id.as_deref().map(text));
                    if version >= 5 {
                        member.reason = Some(text(reason));
                    }
                    request.members = vec![member];
                } else {
                    request.member_id = text(member_id);
                }
                RequestKind::LeaveGroup(request)
            }
            Body::OffsetCommit {
                group_id,
                generation,
                member_id,
                group_instance_id,
                offsets,
            } => {
                let topics = by_topic(offsets)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(text(&topic)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(partition, offset)| {
                                        let mut entry = OffsetCommitRequestPartition::default()
                                            .with_partition_index(partition)
                                            .with_committed_offset(offset.offset)
                                            .with_committed_metadata(Some(text(
                                                offset.metadata.as_deref().unwrap_or(""),
                                            )));
                                        if version >= 6 {
                                            entry.committed_leader_epoch =
                                                offset.leader_epoch.unwrap_or(-1);
                                        }
                                        entry
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let mut request = OffsetCommitRequest::default()
                    .with_group_id(group(group_id))
                    .with_generation_id_or_member_epoch(*generation)
                    .with_member_id(text(member_id))
                    .with_topics(topics);
                if (2..=4).contains(&version) {
                    request.retention_time_ms = -1;
                }
                if version >= 7 {
                    request.group_instance_id = group_instance_id.as_deref().map(text);
                }
                RequestKind::OffsetCommit(request)
            }
            Body::OffsetFetch {
                group_id,
                partitions,
                require_stable,
                member,
            } => {
                let entries: Vec<(TopicPartition, ())> =
                    partitions.iter().map(|tp| (tp.clone(), ())).collect();
                let grouped = by_topic(&entries);
                let mut request = OffsetFetchRequest::default();
                if version >= 8 {
                    let topics = grouped
                        .into_iter()
                        .map(|(topic, partitions)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(TopicName(text(&topic)))
                                .with_partition_indexes(
                                    partitions.into_iter().map(|(p, ())| p).collect(),
                                )
                        })
                        .collect();
                    let mut entry = OffsetFetchRequestGroup::default()
                        .with_group_id(group(group_id))
                        .with_topics(Some(topics));
                    if version >= 9 {
                        entry.member_epoch = -1;
                        if let Some((member_id, epoch)) = member {
                            entry.member_id = Some(text(member_id));
                            entry.member_epoch = *epoch;
                        }
                    }
                    request.groups = vec![entry];
                } else {
                    request.group_id = group(group_id);
                    request.topics = Some(
                        grouped
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchRequestTopic::default()
                                    .with_name(TopicName(text(&topic)))
                                    .with_partition_indexes(
                                        partitions.into_iter().map(|(p, ())| p).collect(),
                                    )
                            })
                            .collect(),
                    );
                }
                if version >= 7 {
                    request.require_stable = *require_stable;
                }
                RequestKind::OffsetFetch(request)
            }
            Body::ConsumerGroupHeartbeat(beat) => {
                if beat.regex.is_some() && version < 1 {
                    return Err(unsupported(
                        "a pattern subscription (SubscribedTopicRegex, ConsumerGroupHeartbeat v1)",
                    ));
                }
                let mut request = ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group(&beat.group_id))
                    .with_member_id(text(&beat.member_id))
                    .with_member_epoch(beat.member_epoch)
                    .with_instance_id(beat.instance_id.as_deref().map(text))
                    .with_rack_id(beat.rack_id.as_deref().map(text))
                    .with_rebalance_timeout_ms(beat.rebalance_timeout_ms)
                    .with_subscribed_topic_names(
                        beat.topics
                            .as_ref()
                            .map(|topics| topics.iter().map(|t| TopicName(text(t))).collect()),
                    )
                    .with_server_assignor(beat.server_assignor.as_deref().map(text))
                    .with_topic_partitions(beat.owned.as_ref().map(|owned| {
                        owned
                            .iter()
                            .map(|(id, partitions)| {
                                HeartbeatTopicPartitions::default()
                                    .with_topic_id(*id)
                                    .with_partitions(partitions.clone())
                            })
                            .collect()
                    }));
                if version >= 1 {
                    request.subscribed_topic_regex = beat.regex.as_deref().map(text);
                    // A subscription sends both fields, the unused one empty, as
                    // librdkafka does (Kafka reads an empty regex as none, and the switch
                    // from one kind to the other clears the old one; librdkafka's mock
                    // asserts that both or neither are null).
                    match (
                        &request.subscribed_topic_names,
                        &request.subscribed_topic_regex,
                    ) {
                        (Some(_), None) => request.subscribed_topic_regex = Some(text("")),
                        (None, Some(_)) => request.subscribed_topic_names = Some(Vec::new()),
                        _ => {}
                    }
                }
                RequestKind::ConsumerGroupHeartbeat(request)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn request(body: Body) -> GroupRequest {
        GroupRequest {
            id: 1,
            target: Target::AnyBroker,
            body,
        }
    }

    /// Every version kafka-protocol knows encodes (no field set that the version lacks).
    #[test]
    fn every_request_encodes_at_every_version() {
        let offsets = vec![(
            TopicPartition::new("t", 0),
            OffsetAndMetadata::new(5)
                .with_leader_epoch(2)
                .with_metadata("m"),
        )];
        let bodies = [
            Body::FindCoordinator {
                group_id: "g".into(),
            },
            Body::JoinGroup {
                group_id: "g".into(),
                session_timeout_ms: 45_000,
                rebalance_timeout_ms: 300_000,
                member_id: String::new(),
                group_instance_id: None,
                protocols: vec![("range".into(), Bytes::from_static(b"\0\0"))],
                reason: Some("why".into()),
            },
            Body::SyncGroup {
                group_id: "g".into(),
                generation: 1,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                protocol_name: "range".into(),
                assignments: vec![("m".into(), Bytes::new())],
            },
            Body::Heartbeat {
                group_id: "g".into(),
                generation: 1,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
            },
            Body::LeaveGroup {
                group_id: "g".into(),
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                reason: "closing".into(),
            },
            Body::OffsetCommit {
                group_id: "g".into(),
                generation: 1,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                offsets,
            },
            Body::OffsetFetch {
                group_id: "g".into(),
                partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
                require_stable: true,
                member: Some(("m".into(), 3)),
            },
            Body::ConsumerGroupHeartbeat(Heartbeat {
                group_id: "g".into(),
                member_id: "m".into(),
                member_epoch: 0,
                instance_id: Some("i".into()),
                rack_id: Some("r".into()),
                rebalance_timeout_ms: 300_000,
                topics: Some(vec!["t".into()]),
                regex: None,
                server_assignor: Some("uniform".into()),
                owned: Some(vec![(uuid::Uuid::from_u128(7), vec![0, 1])]),
            }),
        ];
        for body in bodies {
            let request = request(body);
            let range = crate::proto::versions::codec_versions(request.api());
            for version in range.min..=range.max {
                let kind = request.build(version).expect("builds");
                let mut out = bytes::BytesMut::new();
                let encoded = match kind {
                    RequestKind::FindCoordinator(r) => r.encode(&mut out, version),
                    RequestKind::JoinGroup(r) => r.encode(&mut out, version),
                    RequestKind::SyncGroup(r) => r.encode(&mut out, version),
                    RequestKind::Heartbeat(r) => r.encode(&mut out, version),
                    RequestKind::LeaveGroup(r) => r.encode(&mut out, version),
                    RequestKind::OffsetCommit(r) => r.encode(&mut out, version),
                    RequestKind::OffsetFetch(r) => r.encode(&mut out, version),
                    RequestKind::ConsumerGroupHeartbeat(r) => r.encode(&mut out, version),
                    _ => unreachable!("a group request"),
                };
                assert!(
                    encoded.is_ok(),
                    "{:?} v{version}: {encoded:?}",
                    request.api()
                );
            }
        }
    }

    #[test]
    fn a_heartbeat_regex_needs_v1() {
        let regex = request(Body::ConsumerGroupHeartbeat(Heartbeat {
            regex: Some("orders-.*".into()),
            ..Heartbeat::default()
        }));
        assert!(regex.build(0).is_err());
        let Ok(RequestKind::ConsumerGroupHeartbeat(built)) = regex.build(1) else {
            panic!("a heartbeat at v1");
        };
        assert_eq!(
            built.subscribed_topic_regex.as_ref().map(|r| r.as_str()),
            Some("orders-.*")
        );
        // The names go along, empty; unchanged fields stay null on the wire.
        assert_eq!(built.subscribed_topic_names, Some(Vec::new()));
        assert!(built.topic_partitions.is_none() && built.server_assignor.is_none());
        // Names with an empty regex; neither when the subscription is unchanged.
        let names = request(Body::ConsumerGroupHeartbeat(Heartbeat {
            topics: Some(vec!["t".into()]),
            ..Heartbeat::default()
        }));
        let Ok(RequestKind::ConsumerGroupHeartbeat(built)) = names.build(1) else {
            panic!("a heartbeat at v1");
        };
        assert_eq!(
            built.subscribed_topic_regex.as_ref().map(|r| r.as_str()),
            Some("")
        );
        let Ok(RequestKind::ConsumerGroupHeartbeat(built)) = names.build(0) else {
            panic!("a heartbeat at v0");
        };
        assert_eq!(built.subscribed_topic_regex, None);
        let unchanged = request(Body::ConsumerGroupHeartbeat(Heartbeat::default()));
        let Ok(RequestKind::ConsumerGroupHeartbeat(built)) = unchanged.build(1) else {
            panic!("a heartbeat at v1");
        };
        assert!(built.subscribed_topic_names.is_none() && built.subscribed_topic_regex.is_none());
    }

    #[test]
    fn static_membership_needs_join_group_v5() {
        let request = request(Body::JoinGroup {
            group_id: "g".into(),
            session_timeout_ms: 1,
            rebalance_timeout_ms: 1,
            member_id: String::new(),
            group_instance_id: Some("i".into()),
            protocols: vec![],
            reason: None,
        });
        assert!(request.build(4).is_err());
        assert!(request.build(5).is_ok());
    }
}
