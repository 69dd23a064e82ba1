//! The Produce request a [`ProduceRequestPlan`] becomes, and what its answer says per
//! partition (protocol guide, "Produce API"; KIP-516 topic ids from v13). The request is
//! built by the connection right before it is written, for the version negotiated with that
//! broker, of the batches still worth sending then (see the sender's `Persisted` rule).

use std::collections::HashMap;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{DrainedBatch, PartitionResponse, ProduceRequestPlan};
use crate::config::Acks;
use crate::error::Error;
use crate::proto::ErrorCode;

impl ProduceRequestPlan {
    /// Topic names by id, to read a v13+ answer with [`partition_responses`].
    pub fn topic_names(&self) -> HashMap<Uuid, String> {
        self.batches
            .iter()
            .map(|b| (b.topic_id, b.topic.to_string()))
            .collect()
    }
}

/// The Produce request for `version` holding `batches`: topics by name, or by id from v13
/// (KIP-516; an error if the metadata gave no id); a transactional producer's carries its
/// `transactional_id` (v3+, which every version franzy sends is).
pub fn produce_request(
    version: i16,
    acks: Acks,
    timeout_ms: i32,
    transactional_id: Option<&str>,
    batches: &[&DrainedBatch],
) -> Result<ProduceRequest, Error> {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for batch in batches {
        let position = match index.get(&*batch.topic) {
            Some(&position) => position,
            None => {
                let mut topic = TopicProduceData::default();
                if version >= 13 {
                    if batch.topic_id.is_nil() {
                        return Err(Error::Protocol {
                            peer: "franzy".into(),
                            reason: format!(
                                "Produce v{version} needs the id of topic {}, which metadata did not give",
                                batch.topic
                            ),
                        });
                    }
                    topic.topic_id = batch.topic_id;
                } else {
                    topic.name = TopicName(StrBytes::from_string(batch.topic.to_string()));
                }
                topics.push(topic);
                index.insert(&batch.topic, topics.len() - 1);
                topics.len() - 1
            }
        };
        topics[position].partition_data.push(
            PartitionProduceData::default()
                .with_index(batch.partition)
                .with_records(Some(batch.records.clone())),
        );
    }
    Ok(ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
        )
        .with_acks(acks.wire_value())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics))
}

/// The per-partition answers of a Produce response to a request sent at `version`, named:
/// from v13 on topics come back by id, and `names` (see [`ProduceRequestPlan::topic_names`])
/// maps them back; a topic the request did not hold is left out.
pub fn partition_responses(
    body: ProduceResponse,
    version: i16,
    names: &HashMap<Uuid, String>,
) -> Vec<PartitionResponse> {
    let mut out = Vec::new();
    for topic in body.responses {
        let name = if version >= 13 {
            match names.get(&topic.topic_id) {
                Some(name) => name.clone(),
                None => continue,
            }
        } else {
            topic.name.0.to_string()
        };
        for partition in topic.partition_responses {
            out.push(PartitionResponse {
                topic: name.clone(),
                partition: partition.index,
                error: ErrorCode::try_from_code(partition.error_code),
                error_message: partition.error_message.map(|m| m.to_string()),
                base_offset: partition.base_offset,
                log_append_time: partition.log_append_time_ms,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;
    use bytes::Bytes;

    fn batch(topic: &str, id: u128, partition: i32) -> DrainedBatch {
        DrainedBatch {
            batch_id: partition as u64,
            topic: topic.into(),
            topic_id: Uuid::from_u128(id),
            partition,
            records: Bytes::from_static(b"batch"),
            record_count: 1,
        }
    }

    #[test]
    fn requests_name_topics_before_v13_and_use_ids_from_v13() -> Result<(), Error> {
        let batches = [batch("a", 1, 0), batch("b", 2, 0), batch("a", 1, 3)];
        let refs: Vec<&DrainedBatch> = batches.iter().collect();
        let v12 = produce_request(12, Acks::All, 30_000, None, &refs)?;
        assert_eq!((v12.acks, v12.timeout_ms), (-1, 30_000));
        assert!(v12.transactional_id.is_none());
        let transactional = produce_request(11, Acks::All, 30_000, Some("tx"), &refs)?;
        assert_eq!(
            transactional
                .transactional_id
                .as_ref()
                .map(|id| id.0.as_str()),
            Some("tx")
        );
        let names: Vec<(&str, Vec<i32>)> = v12
            .topic_data
            .iter()
            .map(|t| {
                (
                    t.name.0.as_str(),
                    t.partition_data.iter().map(|p| p.index).collect(),
                )
            })
            .collect();
        assert_eq!(names, vec![("a", vec![0, 3]), ("b", vec![0])]);
        let v13 = produce_request(13, Acks::Leader, 5, None, &refs)?;
        let ids: Vec<Uuid> = v13.topic_data.iter().map(|t| t.topic_id).collect();
        assert_eq!(ids, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert!(v13.topic_data.iter().all(|t| t.name.0.is_empty()));
        let unknown = [batch("c", 0, 0)];
        let refs: Vec<&DrainedBatch> = unknown.iter().collect();
        assert!(produce_request(13, Acks::All, 5, None, &refs).is_err());
        assert!(produce_request(9, Acks::All, 5, None, &refs).is_ok());
        Ok(())
    }

    #[test]
    fn responses_map_topic_ids_back_to_names() {
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        let body = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_topic_id(Uuid::from_u128(1))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(2)
                    .with_error_code(ErrorCode::NotLeaderOrFollower.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)]),
            TopicProduceResponse::default()
                .with_topic_id(Uuid::from_u128(99))
                .with_partition_responses(vec![PartitionProduceResponse::default()]),
        ]);
        let names = HashMap::from([(Uuid::from_u128(1), "a".to_string())]);
        let parsed = partition_responses(body, 13, &names);
        assert_eq!(
            parsed,
            vec![PartitionResponse {
                topic: "a".into(),
                partition: 2,
                error: Some(ErrorCode::NotLeaderOrFollower),
                error_message: None,
                base_offset: -1,
                log_append_time: -1,
            }]
        );
    }
}
