//! The assignors against golden assignments re-typed from the Java client's unit tests
//! (`RangeAssignorTest`, `RoundRobinAssignorTest`, `AbstractStickyAssignorTest`,
//! `CooperativeStickyAssignorTest`; each test here names the Java test it comes from, in
//! the variant without racks), and properties every assignor keeps, by proptest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn group(topics: &[(&str, i32)], members: &[(&str, Subscription)]) -> GroupSubscription {
    GroupSubscription {
        partitions_per_topic: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        members: members
            .iter()
            .map(|(m, s)| (m.to_string(), s.clone()))
            .collect(),
    }
}

fn sub(topics: &[&str]) -> Subscription {
    Subscription::new(topics.iter().copied())
}

fn static_sub(topics: &[&str], instance: &str) -> Subscription {
    Subscription {
        group_instance_id: Some(instance.into()),
        ..sub(topics)
    }
}

/// A v2+ subscription owning `owned` in `generation` (Java's `buildSubscriptionV2Above`),
/// with the user data each sticky assignor would send too.
fn owning(topics: &[&str], owned: &[TopicPartition], generation: i32) -> Subscription {
    Subscription {
        owned_partitions: owned.to_vec(),
        generation_id: (generation >= 0).then_some(generation),
        user_data: Some(sticky::encode_sticky_user_data(owned, Some(generation))),
        ..sub(topics)
    }
}

fn run(
    assignor: &dyn PartitionAssignor,
    group: &GroupSubscription,
) -> BTreeMap<String, Vec<TopicPartition>> {
    assignor
        .assign(group)
        .expect("assigns")
        .into_iter()
        .map(|(m, a)| (m, a.partitions))
        .collect()
}

fn sorted(mut partitions: Vec<TopicPartition>) -> Vec<TopicPartition> {
    partitions.sort();
    partitions
}

// ---- RangeAssignorTest ----

#[test]
fn range_one_consumer_no_topic_and_nonexistent_topic() {
    // testOneConsumerNoTopic, testOneConsumerNonexistentTopic
    let out = run(&RangeAssignor, &group(&[], &[("consumer", sub(&[]))]));
    assert_eq!(out["consumer"], vec![]);
    let out = run(
        &RangeAssignor,
        &group(&[], &[("consumer", sub(&["topic"]))]),
    );
    assert_eq!(out["consumer"], vec![]);
}

#[test]
fn range_single_member_and_subscribed_topics_only() {
    // testOneConsumerOneTopic, testOnlyAssignsPartitionsFromSubscribedTopics,
    // testOneConsumerMultipleTopics
    let out = run(
        &RangeAssignor,
        &group(&[("topic", 3)], &[("consumer", sub(&["topic"]))]),
    );
    assert_eq!(
        out["consumer"],
        vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)]
    );
    let out = run(
        &RangeAssignor,
        &group(
            &[("topic1", 1), ("topic2", 2)],
            &[("consumer", sub(&["topic1", "topic2"]))],
        ),
    );
    assert_eq!(
        out["consumer"],
        vec![tp("topic1", 0), tp("topic2", 0), tp("topic2", 1)]
    );
}

#[test]
fn range_two_consumers() {
    // testTwoConsumersOneTopicOnePartition, testTwoConsumersOneTopicTwoPartitions
    let two = [
        ("consumer1", sub(&["topic"])),
        ("consumer2", sub(&["topic"])),
    ];
    let out = run(&RangeAssignor, &group(&[("topic", 1)], &two));
    assert_eq!(out["consumer1"], vec![tp("topic", 0)]);
    assert_eq!(out["consumer2"], vec![]);
    let out = run(&RangeAssignor, &group(&[("topic", 2)], &two));
    assert_eq!(out["consumer1"], vec![tp("topic", 0)]);
    assert_eq!(out["consumer2"], vec![tp("topic", 1)]);
}

#[test]
fn range_multiple_consumers_mixed_topics() {
    // testMultipleConsumersMixedTopics
    let out = run(
        &RangeAssignor,
        &group(
            &[("topic1", 3), ("topic2", 2)],
            &[
                ("consumer1", sub(&["topic1"])),
                ("consumer2", sub(&["topic1", "topic2"])),
                ("consumer3", sub(&["topic1"])),
            ],
        ),
    );
    assert_eq!(out["consumer1"], vec![tp("topic1", 0)]);
    assert_eq!(
        out["consumer2"],
        vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]
    );
    assert_eq!(out["consumer3"], vec![tp("topic1", 2)]);
}

#[test]
fn range_two_consumers_two_topics_six_partitions_static_and_dynamic() {
    // testTwoConsumersTwoTopicsSixPartitions
    let topics = [("topic1", 3), ("topic2", 3)];
    let both = ["topic1", "topic2"];
    let out = run(
        &RangeAssignor,
        &group(
            &topics,
            &[("consumer1", sub(&both)), ("consumer2", sub(&both))],
        ),
    );
    assert_eq!(
        out["consumer1"],
        vec![
            tp("topic1", 0),
            tp("topic1", 1),
            tp("topic2", 0),
            tp("topic2", 1)
        ]
    );
    assert_eq!(out["consumer2"], vec![tp("topic1", 2), tp("topic2", 2)]);
    // testTwoStaticConsumersTwoTopicsSixPartitions: instance ids, not member ids, order.
    let out = run(
        &RangeAssignor,
        &group(
            &topics,
            &[
                ("consumer-b", static_sub(&both, "instance1")),
                ("consumer-a", static_sub(&both, "instance2")),
            ],
        ),
    );
    assert_eq!(
        out["consumer-b"],
        vec![
            tp("topic1", 0),
            tp("topic1", 1),
            tp("topic2", 0),
            tp("topic2", 1)
        ]
    );
    assert_eq!(out["consumer-a"], vec![tp("topic1", 2), tp("topic2", 2)]);
    // testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions: static first.
    let out = run(
        &RangeAssignor,
        &group(
            &topics,
            &[
                ("consumer-b", static_sub(&both, "instance1")),
                ("consumer-a", sub(&both)),
            ],
        ),
    );
    assert_eq!(
        out["consumer-b"],
        vec![
            tp("topic1", 0),
            tp("topic1", 1),
            tp("topic2", 0),
            tp("topic2", 1)
        ]
    );
    assert_eq!(out["consumer-a"], vec![tp("topic1", 2), tp("topic2", 2)]);
}

#[test]
fn range_static_member_assignment_persists() {
    // testStaticMemberRangeAssignmentPersistent
    let both = ["topic1", "topic2"];
    let topics = [("topic1", 5), ("topic2", 4)];
    let mut members = vec![
        ("consumer1", static_sub(&both, "instance1")),
        ("consumer2", static_sub(&both, "instance2")),
        ("consumer3", static_sub(&both, "instance3")),
        ("consumer4", sub(&both)),
    ];
    let out = run(&RangeAssignor, &group(&topics, &members));
    let expected = |last: &str| {
        BTreeMap::from([
            (
                "consumer1".to_string(),
                vec![tp("topic1", 0), tp("topic1", 1), tp("topic2", 0)],
            ),
            (
                "consumer2".to_string(),
                vec![tp("topic1", 2), tp("topic2", 1)],
            ),
            (
                "consumer3".to_string(),
                vec![tp("topic1", 3), tp("topic2", 2)],
            ),
            (last.to_string(), vec![tp("topic1", 4), tp("topic2", 3)]),
        ])
    };
    assert_eq!(out, expected("consumer4"));
    members[3] = ("consumer5", sub(&both));
    let out = run(&RangeAssignor, &group(&topics, &members));
    assert_eq!(out, expected("consumer5"));
}

// ---- RoundRobinAssignorTest ----

#[test]
fn round_robin_basics() {
    // testOneConsumerOneTopic, testOnlyAssignsPartitionsFromSubscribedTopics,
    // testOneConsumerMultipleTopics, testTwoConsumersOneTopicOnePartition,
    // testTwoConsumersOneTopicTwoPartitions
    let out = run(
        &RoundRobinAssignor,
        &group(&[("topic", 3)], &[("consumer", sub(&["topic"]))]),
    );
    assert_eq!(
        out["consumer"],
        vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)]
    );
    let out = run(
        &RoundRobinAssignor,
        &group(
            &[("topic", 3), ("otherTopic", 3)],
            &[("consumer", sub(&["topic"]))],
        ),
    );
    assert_eq!(
        out["consumer"],
        vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)]
    );
    let out = run(
        &RoundRobinAssignor,
        &group(
            &[("topic1", 1), ("topic2", 2)],
            &[("consumer", sub(&["topic1", "topic2"]))],
        ),
    );
    assert_eq!(
        out["consumer"],
        vec![tp("topic1", 0), tp("topic2", 0), tp("topic2", 1)]
    );
    let two = [
        ("consumer1", sub(&["topic"])),
        ("consumer2", sub(&["topic"])),
    ];
    let out = run(&RoundRobinAssignor, &group(&[("topic", 1)], &two));
    assert_eq!((out["consumer1"].len(), out["consumer2"].len()), (1, 0));
    let out = run(&RoundRobinAssignor, &group(&[("topic", 2)], &two));
    assert_eq!(out["consumer1"], vec![tp("topic", 0)]);
    assert_eq!(out["consumer2"], vec![tp("topic", 1)]);
}

#[test]
fn round_robin_mixed_topics_and_static_members() {
    // testMultipleConsumersMixedTopics
    let out = run(
        &RoundRobinAssignor,
        &group(
            &[("topic1", 3), ("topic2", 2)],
            &[
                ("consumer1", sub(&["topic1"])),
                ("consumer2", sub(&["topic1", "topic2"])),
                ("consumer3", sub(&["topic1"])),
            ],
        ),
    );
    assert_eq!(out["consumer1"], vec![tp("topic1", 0)]);
    assert_eq!(
        out["consumer2"],
        vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]
    );
    assert_eq!(out["consumer3"], vec![tp("topic1", 2)]);
    // testTwoDynamicConsumersTwoTopicsSixPartitions
    let both = ["topic1", "topic2"];
    let topics = [("topic1", 3), ("topic2", 3)];
    let out = run(
        &RoundRobinAssignor,
        &group(
            &topics,
            &[("consumer1", sub(&both)), ("consumer2", sub(&both))],
        ),
    );
    assert_eq!(
        out["consumer1"],
        vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)]
    );
    assert_eq!(
        out["consumer2"],
        vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)]
    );
    // testTwoStaticConsumersTwoTopicsSixPartitions
    let out = run(
        &RoundRobinAssignor,
        &group(
            &topics,
            &[
                ("consumer-b", static_sub(&both, "instance1")),
                ("consumer-a", static_sub(&both, "instance2")),
            ],
        ),
    );
    assert_eq!(
        out["consumer-b"],
        vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)]
    );
    assert_eq!(
        out["consumer-a"],
        vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)]
    );
}

#[test]
fn round_robin_static_member_assignment_persists() {
    // testStaticMemberRoundRobinAssignmentPersistent
    let both = ["topic1", "topic2"];
    let topics = [("topic1", 3), ("topic2", 3)];
    let mut members = vec![
        ("consumer1", static_sub(&both, "instance1")),
        ("consumer2", static_sub(&both, "instance2")),
        ("consumer3", static_sub(&both, "instance3")),
        ("consumer4", sub(&both)),
    ];
    let expected = |last: &str| {
        BTreeMap::from([
            (
                "consumer1".to_string(),
                vec![tp("topic1", 0), tp("topic2", 1)],
            ),
            (
                "consumer2".to_string(),
                vec![tp("topic1", 1), tp("topic2", 2)],
            ),
            ("consumer3".to_string(), vec![tp("topic1", 2)]),
            (last.to_string(), vec![tp("topic2", 0)]),
        ])
    };
    assert_eq!(
        run(&RoundRobinAssignor, &group(&topics, &members)),
        expected("consumer4")
    );
    members[3] = ("consumer5", sub(&both));
    assert_eq!(
        run(&RoundRobinAssignor, &group(&topics, &members)),
        expected("consumer5")
    );
}

// ---- AbstractStickyAssignorTest (both sticky assignors) ----

fn sticky_assignors() -> [Box<dyn PartitionAssignor>; 2] {
    [
        Box::new(StickyAssignor),
        Box::new(CooperativeStickyAssignor),
    ]
}

#[test]
fn sticky_fresh_assignments() {
    for assignor in sticky_assignors() {
        let assignor = assignor.as_ref();
        // testTwoConsumersOneTopicTwoPartitions
        let out = run(
            assignor,
            &group(
                &[("topic", 2)],
                &[
                    ("consumer1", sub(&["topic"])),
                    ("consumer2", sub(&["topic"])),
                ],
            ),
        );
        assert_eq!(out["consumer1"], vec![tp("topic", 0)]);
        assert_eq!(out["consumer2"], vec![tp("topic", 1)]);
        // testMultipleConsumersMixedTopicSubscriptions (the general builder)
        let out = run(
            assignor,
            &group(
                &[("topic1", 3), ("topic2", 2)],
                &[
                    ("consumer1", sub(&["topic1"])),
                    ("consumer2", sub(&["topic1", "topic2"])),
                    ("consumer3", sub(&["topic1"])),
                ],
            ),
        );
        assert_eq!(out["consumer1"], vec![tp("topic1", 0), tp("topic1", 2)]);
        assert_eq!(out["consumer2"], vec![tp("topic2", 0), tp("topic2", 1)]);
        assert_eq!(out["consumer3"], vec![tp("topic1", 1)]);
        // testTwoConsumersTwoTopicsSixPartitions
        let both = ["topic1", "topic2"];
        let out = run(
            assignor,
            &group(
                &[("topic1", 3), ("topic2", 3)],
                &[("consumer1", sub(&both)), ("consumer2", sub(&both))],
            ),
        );
        assert_eq!(
            out["consumer1"],
            vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)]
        );
        assert_eq!(
            out["consumer2"],
            vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)]
        );
    }
}

#[test]
fn sticky_owned_partitions_and_quotas() {
    let both = ["topic1", "topic2"];
    // testConsumerOwningMinQuotaExpectedMaxQuota
    for assignor in sticky_assignors() {
        let out = run(
            assignor.as_ref(),
            &group(
                &[("topic1", 2), ("topic2", 3)],
                &[
                    (
                        "consumer1",
                        owning(&both, &[tp("topic1", 0), tp("topic2", 1)], 1),
                    ),
                    (
                        "consumer2",
                        owning(&both, &[tp("topic1", 1), tp("topic2", 2)], 1),
                    ),
                ],
            ),
        );
        assert_eq!(
            out["consumer1"],
            vec![tp("topic1", 0), tp("topic2", 1), tp("topic2", 0)]
        );
        assert_eq!(out["consumer2"], vec![tp("topic1", 1), tp("topic2", 2)]);
    }
    // testAllConsumersAreUnderMinQuota
    for assignor in sticky_assignors() {
        let out = run(
            assignor.as_ref(),
            &group(
                &[("topic1", 2), ("topic2", 3)],
                &[
                    ("consumer1", owning(&both, &[tp("topic1", 0)], 1)),
                    ("consumer2", owning(&both, &[tp("topic1", 1)], 1)),
                    ("consumer3", owning(&both, &[], 1)),
                ],
            ),
        );
        assert_eq!(out["consumer1"], vec![tp("topic1", 0), tp("topic2", 1)]);
        assert_eq!(out["consumer2"], vec![tp("topic1", 1), tp("topic2", 2)]);
        assert_eq!(out["consumer3"], vec![tp("topic2", 0)]);
    }
    // testAllConsumersReachExpectedQuotaAndAreConsideredFilled
    for assignor in sticky_assignors() {
        let out = run(
            assignor.as_ref(),
            &group(
                &[("topic", 4)],
                &[
                    (
                        "consumer1",
                        owning(&["topic"], &[tp("topic", 0), tp("topic", 1)], 1),
                    ),
                    ("consumer2", owning(&["topic"], &[tp("topic", 2)], 1)),
                    ("consumer3", owning(&["topic"], &[], 1)),
                ],
            ),
        );
        assert_eq!(out["consumer1"], vec![tp("topic", 0), tp("topic", 1)]);
        assert_eq!(out["consumer2"], vec![tp("topic", 2)]);
        assert_eq!(out["consumer3"], vec![tp("topic", 3)]);
    }
}

#[test]
fn sticky_moves_only_what_balance_needs() {
    let both = ["topic1", "topic2"];
    // testMaxQuotaConsumerMoreThanNumExpectedMaxCapacityMembers: topic2-0 moves to consumer3.
    let members = [
        (
            "consumer1",
            owning(&both, &[tp("topic1", 0), tp("topic2", 0)], 1),
        ),
        (
            "consumer2",
            owning(&both, &[tp("topic1", 1), tp("topic2", 1)], 1),
        ),
        ("consumer3", owning(&both, &[], 1)),
    ];
    let input = group(&[("topic1", 2), ("topic2", 2)], &members);
    let eager = run(&StickyAssignor, &input);
    assert_eq!(eager["consumer1"], vec![tp("topic1", 0)]);
    assert_eq!(eager["consumer2"], vec![tp("topic1", 1), tp("topic2", 1)]);
    assert_eq!(eager["consumer3"], vec![tp("topic2", 0)]);
    // Cooperative: the moving partition is revoked first, assigned in the next round.
    let cooperative = run(&CooperativeStickyAssignor, &input);
    assert_eq!(cooperative["consumer3"], vec![]);
    assert_eq!(cooperative["consumer1"], vec![tp("topic1", 0)]);
    // testAddRemoveConsumerOneTopic
    let first = run(
        &StickyAssignor,
        &group(&[("topic", 3)], &[("consumer1", sub(&["topic"]))]),
    );
    assert_eq!(
        first["consumer1"],
        vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)]
    );
    let second = run(
        &StickyAssignor,
        &group(
            &[("topic", 3)],
            &[
                ("consumer1", owning(&["topic"], &first["consumer1"], 1)),
                ("consumer2", owning(&["topic"], &[], 1)),
            ],
        ),
    );
    assert_eq!(second["consumer1"], vec![tp("topic", 0), tp("topic", 1)]);
    assert_eq!(second["consumer2"], vec![tp("topic", 2)]);
    let third = run(
        &StickyAssignor,
        &group(
            &[("topic", 3)],
            &[("consumer2", owning(&["topic"], &second["consumer2"], 1))],
        ),
    );
    assert_eq!(
        sorted(third["consumer2"].clone()),
        vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)]
    );
}

#[test]
fn sticky_generations_decide_ownership() {
    let both = ["topic", "topic2"];
    let claimed = [tp("topic", 0), tp("topic", 2), tp("topic2", 1)];
    // testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration and
    // ...WithNoGeneration
    for stale in [9, -1] {
        for assignor in sticky_assignors() {
            let out = run(
                assignor.as_ref(),
                &group(
                    &[("topic", 3), ("topic2", 3)],
                    &[
                        ("consumer1", owning(&both, &claimed, 10)),
                        ("consumer2", owning(&both, &claimed, stale)),
                    ],
                ),
            );
            assert_eq!(sorted(out["consumer1"].clone()), sorted(claimed.to_vec()));
            assert_eq!(
                sorted(out["consumer2"].clone()),
                vec![tp("topic", 1), tp("topic2", 0), tp("topic2", 2)]
            );
        }
    }
    // testEnsurePartitionsAssignedToHighestGeneration
    let three = ["topic", "topic2", "topic3"];
    let out = run(
        &CooperativeStickyAssignor,
        &group(
            &[("topic", 3), ("topic2", 3), ("topic3", 3)],
            &[
                (
                    "consumer1",
                    owning(
                        &three,
                        &[tp("topic", 0), tp("topic2", 0), tp("topic3", 0)],
                        10,
                    ),
                ),
                (
                    "consumer2",
                    owning(
                        &three,
                        &[tp("topic", 1), tp("topic2", 1), tp("topic3", 1)],
                        9,
                    ),
                ),
                (
                    "consumer3",
                    owning(
                        &three,
                        &[tp("topic2", 1), tp("topic3", 0), tp("topic3", 2)],
                        8,
                    ),
                ),
            ],
        ),
    );
    assert_eq!(
        sorted(out["consumer1"].clone()),
        vec![tp("topic", 0), tp("topic2", 0), tp("topic3", 0)]
    );
    assert_eq!(
        sorted(out["consumer2"].clone()),
        vec![tp("topic", 1), tp("topic2", 1), tp("topic3", 1)]
    );
    assert_eq!(
        sorted(out["consumer3"].clone()),
        vec![tp("topic", 2), tp("topic2", 2), tp("topic3", 2)]
    );
    // testNoReassignmentOnCurrentMembers
    let four = ["topic", "topic2", "topic3", "topic1"];
    let out = run(
        &CooperativeStickyAssignor,
        &group(
            &[("topic", 3), ("topic1", 3), ("topic2", 3), ("topic3", 3)],
            &[
                ("consumer1", owning(&four, &[], -1)),
                (
                    "consumer2",
                    owning(
                        &four,
                        &[tp("topic", 0), tp("topic2", 0), tp("topic1", 0)],
                        9,
                    ),
                ),
                (
                    "consumer3",
                    owning(
                        &four,
                        &[tp("topic3", 2), tp("topic2", 2), tp("topic1", 1)],
                        8,
                    ),
                ),
                (
                    "consumer4",
                    owning(&four, &[tp("topic3", 1), tp("topic", 1), tp("topic", 2)], 7),
                ),
            ],
        ),
    );
    assert_eq!(
        sorted(out["consumer1"].clone()),
        vec![tp("topic1", 2), tp("topic2", 1), tp("topic3", 0)]
    );
}

#[test]
fn cooperative_sticky_waits_for_doubly_claimed_partitions() {
    // CooperativeStickyAssignorTest.testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimed
    // ByMultipleConsumersInSameGenerationWithEqualPartitionsPerConsumer / ...Unequal...
    for (count, first) in [
        (3, vec![tp("topic", 1)]),
        (4, vec![tp("topic", 1), tp("topic", 3)]),
    ] {
        let out = run(
            &CooperativeStickyAssignor,
            &group(
                &[("topic", count)],
                &[
                    (
                        "consumer1",
                        owning(&["topic"], &[tp("topic", 0), tp("topic", 1)], 1),
                    ),
                    (
                        "consumer2",
                        owning(&["topic"], &[tp("topic", 0), tp("topic", 2)], 1),
                    ),
                    ("consumer3", owning(&["topic"], &[], 1)),
                ],
            ),
        );
        assert_eq!(out["consumer1"], first);
        assert_eq!(out["consumer2"], vec![tp("topic", 2)]);
        assert_eq!(out["consumer3"], vec![]);
    }
    // AbstractStickyAssignorTest.testPartitionsTransferringOwnershipIncludeThePartitionClaimed
    // ByMultipleConsumersInSameGeneration, eager: topic-0 goes to consumer3 at once.
    let out = run(
        &StickyAssignor,
        &group(
            &[("topic", 3)],
            &[
                (
                    "consumer1",
                    owning(&["topic"], &[tp("topic", 0), tp("topic", 1)], 1),
                ),
                (
                    "consumer2",
                    owning(&["topic"], &[tp("topic", 0), tp("topic", 2)], 1),
                ),
                ("consumer3", owning(&["topic"], &[], 1)),
            ],
        ),
    );
    assert_eq!(out["consumer1"], vec![tp("topic", 1)]);
    assert_eq!(out["consumer2"], vec![tp("topic", 2)]);
    assert_eq!(out["consumer3"], vec![tp("topic", 0)]);
}

#[test]
fn sticky_user_data_round_trips_and_falls_back() {
    // StickyAssignorTest's serialization: V1 with generation, V0 without.
    let owned = vec![tp("t", 0), tp("t", 3), tp("u", 1)];
    let v1 = sticky::encode_sticky_user_data(&owned, Some(7));
    let data = sticky::decode_sticky_user_data(&v1).expect("v1");
    assert_eq!(
        (sorted(data.partitions), data.generation),
        (owned.clone(), Some(7))
    );
    let v0 = sticky::encode_sticky_user_data(&owned, None);
    let data = sticky::decode_sticky_user_data(&v0).expect("v0");
    assert_eq!(data.generation, None);
    assert!(
        sticky::decode_sticky_user_data(&[0, 0, 0, 9, 1]).is_none(),
        "a count past the end"
    );
    assert!(sticky::decode_sticky_user_data(&[0xff, 0xff, 0xff, 0xff]).is_none());
}

#[test]
fn names_and_protocols() {
    for (name, canonical) in [
        ("org.apache.kafka.clients.consumer.RangeAssignor", "range"),
        ("range", "range"),
        ("roundrobin", "roundrobin"),
        (
            "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
            "cooperative-sticky",
        ),
        ("StickyAssignor", "sticky"),
    ] {
        assert_eq!(
            built_in(name).map(|a| a.name().to_string()).as_deref(),
            Some(canonical)
        );
        assert_eq!(canonical_name(name), Some(canonical));
    }
    assert!(built_in("com.example.Mine").is_none());
    let java_default: Vec<Box<dyn PartitionAssignor>> =
        vec![Box::new(RangeAssignor), Box::new(CooperativeStickyAssignor)];
    assert_eq!(
        common_protocol(&java_default),
        Some(RebalanceProtocol::Eager)
    );
    let cooperative: Vec<Box<dyn PartitionAssignor>> = vec![Box::new(CooperativeStickyAssignor)];
    assert_eq!(
        common_protocol(&cooperative),
        Some(RebalanceProtocol::Cooperative)
    );
}

// ---- Properties ----

/// Subscriptions over up to 4 topics of 0..8 partitions, 1..7 members.
fn arbitrary_group(equal: bool) -> impl Strategy<Value = GroupSubscription> {
    let topics = proptest::collection::vec(1..8i32, 1..5);
    (topics, 1..7usize, proptest::collection::vec(1..16u8, 7)).prop_map(
        move |(counts, members, masks)| {
            let names: Vec<String> = (0..counts.len()).map(|i| format!("t{i}")).collect();
            let mut group = GroupSubscription {
                partitions_per_topic: names.iter().cloned().zip(counts).collect(),
                members: BTreeMap::new(),
            };
            for (m, mask) in masks.iter().enumerate().take(members) {
                let mask = if equal { 0xff } else { *mask };
                let mut topics: Vec<String> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, n)| n.clone())
                    .collect();
                if topics.is_empty() {
                    topics.push(names[0].clone());
                }
                group
                    .members
                    .insert(format!("m{m}"), Subscription::new(topics));
            }
            group
        },
    )
}

fn all_assignors() -> Vec<Box<dyn PartitionAssignor>> {
    vec![
        Box::new(RangeAssignor),
        Box::new(RoundRobinAssignor),
        Box::new(StickyAssignor),
        Box::new(CooperativeStickyAssignor),
    ]
}

/// Every partition of a subscribed topic exactly once, to a member subscribed to it.
fn check_complete(
    group: &GroupSubscription,
    out: &BTreeMap<String, Vec<TopicPartition>>,
) -> Result<(), TestCaseError> {
    let mut seen: HashMap<TopicPartition, &str> = HashMap::new();
    for (member, partitions) in out {
        for tp in partitions {
            prop_assert!(
                group.members[member].topics.contains(&tp.topic),
                "{member} got {tp} unsubscribed"
            );
            prop_assert!(seen.insert(tp.clone(), member).is_none(), "{tp} twice");
        }
    }
    let subscribed: BTreeSet<&String> = group.members.values().flat_map(|s| &s.topics).collect();
    for (topic, count) in &group.partitions_per_topic {
        if subscribed.contains(topic) {
            for p in 0..*count {
                prop_assert!(seen.contains_key(&tp(topic, p)), "{topic}/{p} unassigned");
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_assignor_is_complete(group in arbitrary_group(false)) {
        for assignor in all_assignors() {
            let out = run(assignor.as_ref(), &group);
            check_complete(&group, &out)?;
            prop_assert_eq!(out.len(), group.members.len());
        }
    }

    #[test]
    fn assignors_are_balanced_where_subscriptions_are_equal(group in arbitrary_group(true)) {
        for assignor in all_assignors() {
            let out = run(assignor.as_ref(), &group);
            if assignor.name() == "range" {
                // Per topic: member counts differ by at most one.
                for topic in group.partitions_per_topic.keys() {
                    let counts: Vec<usize> = out.values().map(|ps| ps.iter().filter(|tp| &tp.topic == topic).count()).collect();
                    let (min, max) = (counts.iter().min(), counts.iter().max());
                    prop_assert!(max.zip(min).is_none_or(|(max, min)| max - min <= 1), "{topic}: {out:?}");
                }
            } else {
                let counts: Vec<usize> = out.values().map(Vec::len).collect();
                let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
                prop_assert!(max - min <= 1, "{}: {out:?}", assignor.name());
            }
        }
    }

    /// Rebalance after rebalance, with members coming and going, the cooperative assignor
    /// never hands a partition to a new owner while its old owner still holds it, and the
    /// group converges to a complete, balanced assignment.
    #[test]
    fn cooperative_sticky_never_assigns_what_another_member_still_owns(
        group in arbitrary_group(false),
        joiners in 0..3usize,
        leavers in 0..3usize,
    ) {
        let assignor = CooperativeStickyAssignor;
        let mut group = group;
        let mut generation = 1;
        let mut owned: BTreeMap<String, Vec<TopicPartition>> = run(&assignor, &group);
        for change in 0..2 {
            // Membership change, then rebalances until nothing is revoked.
            if change == 1 {
                let topics: Vec<String> = group.partitions_per_topic.keys().cloned().collect();
                for j in 0..joiners {
                    group.members.insert(format!("new{j}"), Subscription::new(topics.clone()));
                }
                let gone: Vec<String> = group.members.keys().take(leavers.min(group.members.len().saturating_sub(1))).cloned().collect();
                for member in gone {
                    group.members.remove(&member);
                    owned.remove(&member);
                }
            }
            for _round in 0..5 {
                generation += 1;
                for (member, subscription) in group.members.iter_mut() {
                    let mine = owned.get(member).cloned().unwrap_or_default();
                    subscription.owned_partitions = mine.clone();
                    subscription.generation_id = Some(generation - 1);
                }
                let out = run(&assignor, &group);
                let mut revoked = false;
                for (member, partitions) in &out {
                    for tp in partitions {
                        let holder = owned.iter().find(|(m, ps)| *m != member && ps.contains(tp));
                        prop_assert!(holder.is_none(), "{tp} given to {member} while {holder:?} holds it");
                    }
                    let before = owned.get(member).cloned().unwrap_or_default();
                    revoked |= before.iter().any(|tp| !partitions.contains(tp));
                }
                owned = out;
                if !revoked {
                    break;
                }
            }
            check_complete(&group, &owned)?;
        }
    }
}
