//! franzy's `Admin` against any cluster, with every answer checked against what was done: the
//! interop suite runs it against librdkafka's mock cluster (`tests/interop/client_vs_mock.sh`).
//!
//! usage: admin_vs_mock BOOTSTRAP TOPIC PARTITIONS
//!
//! TOPIC must exist with PARTITIONS partitions and no records. The program creates a topic in
//! a batch with an invalid name (which must fail alone), validates growing TOPIC by one
//! partition, describes the cluster, lists and describes TOPIC; then produces keyed records to
//! TOPIC, has a consumer of a fresh group read them all and commit, lists and describes groups
//! while it is a member, and after more records are produced checks the group's committed
//! offsets and its lag on every partition. Exits non-zero on any mismatch.
//!
//! What librdkafka 2.0's mock cannot do is skipped with a printed note: it advertises no
//! DescribeCluster, ListGroups or DescribeGroups (nor CreateTopics or CreatePartitions, which
//! are not even sent: its Metadata names controller 0, a broker it does not have); and it
//! drops the connection on an OffsetFetch of all of a group's partitions (null topics), which
//! `list_group_offsets` and `lag` send, so the lag is then computed from the offsets the
//! consumer reads back per partition and ListOffsets of one partition at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use franzy::admin::{NewTopic, OffsetSpec};
use franzy::proto::ErrorCode;
use franzy::{
    Admin, Config, Consumer, Error, IsolationLevel, OffsetReset, Producer, ProducerRecord,
    TopicPartition,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topic, partitions] = args.as_slice() else {
        eprintln!("usage: admin_vs_mock BOOTSTRAP TOPIC PARTITIONS");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse()?;
    let mut check = Checks::default();
    // Short: the mock names no controller it has, and the admin client waits for one.
    let admin = Admin::new(Config::new(bootstrap).set("default.api.timeout.ms", "3000")?)?;
    let run = std::process::id();

    // Topics: a batch of one good and one invalid name, each answered alone.
    let created_name = format!("admin-created-{run}");
    let batch = [
        NewTopic::new(created_name.clone(), 3),
        NewTopic::new("an invalid/name", 1),
    ];
    match admin.create_topics(&batch, false).await {
        Err(error) if no_controller(&error) => check.skipped("create_topics", &error),
        Err(error) => return Err(error.into()),
        Ok(created) => match created.get(&created_name) {
            Some(Err(error)) if is_unsupported(error) => check.skipped("create_topics", error),
            Some(Ok(topic)) => {
                check.that(
                    topic.partitions == 3,
                    format!(
                        "created {created_name} with {} partitions",
                        topic.partitions
                    ),
                );
                let invalid = created.get("an invalid/name");
                check.that(
                    matches!(invalid, Some(Err(_))),
                    format!("the invalid name was answered {invalid:?}"),
                );
            }
            other => check.that(false, format!("create_topics answered {other:?}")),
        },
    }
    match admin
        .create_partitions(&[(topic.clone(), partitions + 1)], true)
        .await
    {
        Err(error) if no_controller(&error) => check.skipped("create_partitions", &error),
        Err(error) => return Err(error.into()),
        Ok(grown) => match grown.get(topic) {
            Some(Err(error)) if is_unsupported(error) => {
                check.skipped("create_partitions", error);
            }
            other => check.that(
                matches!(other, Some(Ok(()))),
                format!("create_partitions (validate only) answered {other:?}"),
            ),
        },
    }

    // The cluster.
    let cluster = admin.describe_cluster().await;
    let mut brokers: BTreeSet<i32> = BTreeSet::new();
    match cluster {
        Err(error) if is_unsupported(&error) => check.skipped("describe_cluster", &error),
        Err(error) => return Err(error.into()),
        Ok(cluster) => {
            brokers = cluster.brokers.iter().map(|b| b.0).collect();
            check.that(
                !brokers.is_empty() && brokers.contains(&cluster.controller_id),
                format!("describe_cluster: {cluster:?}"),
            );
            println!(
                "admin-vs-mock: describe_cluster: {} brokers, controller {}",
                brokers.len(),
                cluster.controller_id
            );
        }
    }

    // List and describe the topic.
    let listed = admin.list_topics(false).await?;
    check.that(
        listed.iter().any(|t| &t.name == topic),
        format!(
            "list_topics: {topic} missing from {:?}",
            listed.iter().map(|t| &t.name).collect::<Vec<_>>()
        ),
    );
    let described = admin.describe_topics(std::slice::from_ref(topic)).await?;
    match described.get(topic) {
        Some(Ok(description)) => {
            let indexes: Vec<i32> = description.partitions.iter().map(|p| p.partition).collect();
            check.that(
                indexes == (0..partitions).collect::<Vec<_>>(),
                format!("describe_topics: {topic} has partitions {indexes:?}"),
            );
            for p in &description.partitions {
                check.that(
                    p.leader >= 0 && p.replicas.contains(&p.leader),
                    format!("describe_topics: {topic}/{}: {p:?}", p.partition),
                );
                check.that(
                    brokers.is_empty() || brokers.contains(&p.leader),
                    format!(
                        "describe_topics: {topic}/{} leader {}",
                        p.partition, p.leader
                    ),
                );
            }
            println!(
                "admin-vs-mock: list_topics and describe_topics: {topic} with {partitions} partitions, each led by one of its replicas"
            );
        }
        other => check.that(false, format!("describe_topics {topic}: {other:?}")),
    }

    // A group: a consumer reads everything produced and commits.
    let producer = Producer::new(Config::new(bootstrap))?;
    let first = produce(&producer, topic, "first", 400).await?;
    let group = format!("admin-vs-mock-{run}");
    let consumer_config = Config::new(bootstrap)
        .group_id(group.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(500))
        .client_id("admin-vs-mock-member");
    let consumer = Consumer::new(consumer_config.clone())?;
    consumer.subscribe([topic.as_str()])?;
    let wanted: usize = first.values().sum::<i64>().try_into()?;
    let mut read = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while read < wanted {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(Some(_))) => read += 1,
            Ok(Ok(None)) => break,
            Ok(Err(error)) => eprintln!("admin-vs-mock: consumer: {error}"),
            Err(_) => break,
        }
    }
    check.that(
        read == wanted,
        format!("the group's consumer read {read} of {wanted} records"),
    );
    consumer
        .commit()
        .await
        .map_err(|e| format!("commit: {e}"))?;

    match admin.list_groups().await {
        Err(error) if is_unsupported(&error) => check.skipped("list_groups", &error),
        Err(error) => return Err(error.into()),
        Ok(groups) => {
            let found = groups.iter().find(|g| g.group_id == group);
            check.that(
                found.is_some_and(|g| g.protocol_type == "consumer"),
                format!("list_groups: {group} is {found:?}"),
            );
        }
    }
    match admin.describe_groups(std::slice::from_ref(&group)).await {
        Ok(results) => match results.get(&group) {
            Some(Err(error)) if is_unsupported(error) => check.skipped("describe_groups", error),
            Some(Ok(description)) => {
                let assigned: BTreeSet<i32> = description
                    .members
                    .iter()
                    .flat_map(|m| m.assignment.iter().map(|tp| tp.partition))
                    .collect();
                check.that(
                    description.state == "Stable"
                        && description.members.len() == 1
                        && assigned == (0..partitions).collect(),
                    format!("describe_groups: {description:?}"),
                );
            }
            other => check.that(false, format!("describe_groups: {other:?}")),
        },
        Err(error) if is_unsupported(&error) => check.skipped("describe_groups", &error),
        Err(error) => return Err(error.into()),
    }
    consumer.close().await;

    // Its committed offsets are the end offsets of what it read; after more records, the lag
    // of each partition is what was produced to it since.
    let ends_before: BTreeMap<TopicPartition, i64> = first
        .iter()
        .map(|(p, n)| (TopicPartition::new(topic.as_str(), *p), *n))
        .collect();
    let second = produce(&producer, topic, "second", 100).await?;
    producer.close().await;
    match admin.lag(&group, IsolationLevel::ReadUncommitted).await {
        // The mock drops the connection on an OffsetFetch for all of a group's partitions
        // (null topics, v2+), which list_group_offsets and lag send, as Java's admin does.
        Err(Error::Disconnected { address }) => {
            println!(
                "admin-vs-mock: note: list_group_offsets and lag skipped: {address} dropped the connection on OffsetFetch of all partitions"
            );
            check_offsets_by_partition(
                &admin,
                &consumer_config,
                topic,
                partitions,
                &ends_before,
                &second,
                &mut check,
            )
            .await?;
        }
        Err(error) => return Err(format!("lag: {error}").into()),
        Ok(lag) => {
            let committed = admin.list_group_offsets(&group).await?;
            let got: BTreeMap<TopicPartition, i64> = committed
                .into_iter()
                .filter(|(tp, _)| ends_before.contains_key(tp))
                .collect();
            check.that(
                got == ends_before,
                format!("list_group_offsets: {got:?}, want {ends_before:?}"),
            );
            for p in 0..partitions {
                let tp = TopicPartition::new(topic.as_str(), p);
                let before = ends_before.get(&tp).copied().unwrap_or(0);
                let added = second.get(&p).copied().unwrap_or(0);
                let row = lag.iter().find(|l| l.partition == tp);
                check.that(
                    row.is_some_and(|l| {
                        l.end == before + added
                            && l.lag == Some(added)
                            && l.committed == ends_before.get(&tp).copied()
                    }),
                    format!(
                        "lag of {tp}: {row:?}, want committed {before}, end {}, lag {added}",
                        before + added
                    ),
                );
            }
            println!(
                "admin-vs-mock: list_group_offsets and lag: committed the end offsets {ends_before:?}; {} records since, each partition's lag as produced to it",
                second.values().sum::<i64>()
            );
        }
    }

    check.finish()
}

/// Produces `n` keyed records to the empty topic; returns records per partition, checking
/// that each partition's offsets follow on from what it held.
async fn produce(
    producer: &Producer,
    topic: &str,
    phase: &str,
    n: usize,
) -> Result<BTreeMap<i32, i64>, Box<dyn std::error::Error>> {
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let record = ProducerRecord::new(topic)
            .with_key(format!("key-{i}"))
            .with_value(format!("{phase}-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    let mut counts: BTreeMap<i32, i64> = BTreeMap::new();
    for delivery in deliveries {
        let written = delivery.await?;
        *counts.entry(written.partition).or_default() += 1;
    }
    Ok(counts)
}

/// The group's lag, computed as `Admin::lag` does but from the committed offsets of each
/// partition (OffsetFetch naming the partitions, through a consumer of the group) and
/// ListOffsets for one partition at a time (the mock's answers for several are unreadable).
async fn check_offsets_by_partition(
    admin: &Admin,
    consumer_config: &Config,
    topic: &str,
    partitions: i32,
    ends_before: &BTreeMap<TopicPartition, i64>,
    second: &BTreeMap<i32, i64>,
    check: &mut Checks,
) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let committed = Consumer::new(consumer_config.clone())?
        .committed(&all)
        .await?;
    for tp in &all {
        let at = committed.get(tp).cloned().flatten().map(|o| o.offset);
        let before = ends_before.get(tp).copied();
        check.that(
            at == before,
            format!("committed offset of {tp}: {at:?}, want {before:?}"),
        );
        let end = admin
            .list_offsets(
                &[(tp.clone(), OffsetSpec::Latest)],
                IsolationLevel::ReadUncommitted,
            )
            .await?
            .remove(tp)
            .ok_or("list_offsets: no answer")??
            .offset;
        let added = second.get(&tp.partition).copied().unwrap_or(0);
        let want = before.unwrap_or(0) + added;
        check.that(
            end == want && end - at.unwrap_or(0) == added,
            format!("end offset of {tp}: {end}, want {want} (lag {added})"),
        );
    }
    println!(
        "admin-vs-mock: the group committed the end offsets {ends_before:?}; list_offsets: lag of each partition is what was produced to it since ({} records)",
        second.values().sum::<i64>()
    );
    Ok(())
}

/// The broker advertises no version of the API: the operation cannot be tried at all.
fn is_unsupported(error: &Error) -> bool {
    matches!(error, Error::UnsupportedVersion { .. })
}

/// No controller among the brokers: the mock names broker 0, which it does not have, so
/// nothing that goes to the controller (CreateTopics, CreatePartitions: both unserved by
/// librdkafka 2.0's mock anyway) can be sent.
fn no_controller(error: &Error) -> bool {
    error.code() == Some(ErrorCode::NotController)
}

#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn that(&mut self, ok: bool, failure: String) {
        if !ok {
            eprintln!("admin-vs-mock: MISMATCH: {failure}");
            self.failures.push(failure);
        }
    }

    fn skipped(&self, operation: &str, error: &Error) {
        println!("admin-vs-mock: note: {operation} skipped: {error}");
    }

    fn finish(self) -> Result<(), Box<dyn std::error::Error>> {
        if self.failures.is_empty() {
            println!("admin-vs-mock: ok");
            Ok(())
        } else {
            eprintln!("admin-vs-mock: FAIL: {} mismatches", self.failures.len());
            std::process::exit(1);
        }
    }
}
