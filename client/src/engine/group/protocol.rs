//! The "consumer" protocol type's payloads inside JoinGroup and SyncGroup (Java's
//! `ConsumerProtocol`): a member's subscription (`ConsumerProtocolSubscription`, versions
//! 0 to 3: topics and user data; owned partitions from v1; generation from v2; rack from v3)
//! and its assignment (`ConsumerProtocolAssignment`, versions 0 to 3), each prefixed by its
//! int16 version. A version above the highest known is read as the highest known, as Java
//! does, since later versions only add fields at the end.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedTopic,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::{Assignment, Subscription};
use crate::topic_partition::TopicPartition;

/// The version franzy writes (Java's `ConsumerProtocol` latest).
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed consumer protocol {what}: {reason}")]
pub struct ProtocolError {
    what: &'static str,
    reason: String,
}

/// Encodes a subscription at `version` (topics and owned partitions sorted, as Java does).
pub fn encode_subscription(subscription: &Subscription, version: i16) -> Bytes {
    let version = version.clamp(0, CONSUMER_PROTOCOL_VERSION);
    let mut topics = subscription.topics.clone();
    topics.sort();
    topics.dedup();
    let mut owned = subscription.owned_partitions.clone();
    owned.sort();
    let mut owned_topics: Vec<OwnedTopic> = Vec::new();
    for tp in owned {
        match owned_topics.last_mut() {
            Some(last) if last.topic.0.as_str() == tp.topic => last.partitions.push(tp.partition),
            _ => owned_topics.push(
                OwnedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(tp.topic)))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    let message = ConsumerProtocolSubscription::default()
        .with_topics(topics.into_iter().map(StrBytes::from_string).collect())
        .with_user_data(subscription.user_data.clone())
        .with_owned_partitions(owned_topics)
        .with_generation_id(subscription.generation_id.unwrap_or(-1))
        .with_rack_id(subscription.rack_id.clone().map(StrBytes::from_string));
    version_prefixed(version, |out| message.encode(out, version))
}

/// Decodes a version-prefixed subscription. `group_instance_id` is left `None` (it comes
/// from the JoinGroup member, not the payload).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, ProtocolError> {
    let what = "subscription";
    let (version, mut body) = read_version(bytes, what)?;
    let message =
        ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| ProtocolError {
            what,
            reason: e.to_string(),
        })?;
    let owned_partitions = message
        .owned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
        })
        .collect();
    Ok(Subscription {
        topics: message.topics.iter().map(ToString::to_string).collect(),
        user_data: message.user_data,
        owned_partitions,
        generation_id: (message.generation_id >= 0).then_some(message.generation_id),
        rack_id: message
            .rack_id
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty()),
        group_instance_id: None,
    })
}

/// Encodes an assignment at `version`, partitions grouped by topic.
pub fn encode_assignment(assignment: &Assignment, version: i16) -> Bytes {
    let version = version.clamp(0, CONSUMER_PROTOCOL_VERSION);
    let mut partitions = assignment.partitions.clone();
    partitions.sort();
    let mut topics: Vec<AssignedTopic> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some(last) if last.topic.0.as_str() == tp.topic => last.partitions.push(tp.partition),
            _ => topics.push(
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(tp.topic)))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(topics)
        .with_user_data(assignment.user_data.clone());
    version_prefixed(version, |out| message.encode(out, version))
}

/// Decodes a version-prefixed assignment; an empty payload is an empty assignment (what
/// the coordinator sends a member the leader left out).
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, ProtocolError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let what = "assignment";
    let (version, mut body) = read_version(bytes, what)?;
    let message =
        ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| ProtocolError {
            what,
            reason: e.to_string(),
        })?;
    Ok(Assignment {
        partitions: message
            .assigned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
            })
            .collect(),
        user_data: message.user_data,
    })
}

fn version_prefixed<E>(version: i16, encode: impl FnOnce(&mut BytesMut) -> Result<(), E>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(version);
    // Encoding a value built above cannot fail: every field exists in every version or
    // is left at its default where it does not.
    let _ = encode(&mut out);
    out.freeze()
}

fn read_version(bytes: &[u8], what: &'static str) -> Result<(i16, Bytes), ProtocolError> {
    let mut buf = bytes;
    if buf.remaining() < 2 {
        return Err(ProtocolError {
            what,
            reason: "no version".into(),
        });
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(ProtocolError {
            what,
            reason: format!("version {version}"),
        });
    }
    Ok((
        version.min(CONSUMER_PROTOCOL_VERSION),
        Bytes::copy_from_slice(buf),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> Subscription {
        Subscription {
            topics: vec!["foo".into(), "bar".into()],
            user_data: Some(Bytes::from_static(b"hello")),
            owned_partitions: vec![TopicPartition::new("foo", 1), TopicPartition::new("bar", 0)],
            generation_id: Some(7),
            rack_id: Some("rack-a".into()),
            group_instance_id: None,
        }
    }

    #[test]
    fn subscriptions_round_trip_at_every_version_with_the_fields_it_has() {
        let full = subscription();
        for version in 0..=3 {
            let bytes = encode_subscription(&full, version);
            assert_eq!(i16::from_be_bytes([bytes[0], bytes[1]]), version);
            let back = decode_subscription(&bytes).expect("decodes");
            assert_eq!(
                back.topics,
                vec!["bar".to_string(), "foo".to_string()],
                "sorted"
            );
            assert_eq!(back.user_data, full.user_data);
            let owned = if version >= 1 {
                vec![TopicPartition::new("bar", 0), TopicPartition::new("foo", 1)]
            } else {
                vec![]
            };
            assert_eq!(back.owned_partitions, owned, "v{version}");
            assert_eq!(
                back.generation_id,
                (version >= 2).then_some(7),
                "v{version}"
            );
            assert_eq!(back.rack_id.as_deref(), (version >= 3).then_some("rack-a"));
        }
    }

    #[test]
    fn subscription_v0_is_javas_layout() {
        // ConsumerProtocol v0: version, [topics: string], user_data: nullable bytes.
        let bytes = encode_subscription(&Subscription::new(["t"]), 0);
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn assignments_round_trip_and_newer_versions_read_as_the_latest() {
        let assignment = Assignment {
            partitions: vec![TopicPartition::new("b", 2), TopicPartition::new("a", 0)],
            user_data: None,
        };
        let mut bytes = encode_assignment(&assignment, 3).to_vec();
        let back = decode_assignment(&bytes).expect("decodes");
        assert_eq!(
            back.partitions,
            vec![TopicPartition::new("a", 0), TopicPartition::new("b", 2)]
        );
        // A version from the future, with trailing fields, reads as v3.
        bytes[1] = 9;
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_assignment(&bytes).expect("v9").partitions.len(), 2);
        assert_eq!(
            decode_assignment(&[]).expect("empty"),
            Assignment::default()
        );
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0xff, 0xff]).is_err());
        assert!(
            decode_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err(),
            "a count past the end"
        );
    }
}
