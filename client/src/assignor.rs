//! Partition assignors for consumer groups: how the group's leader splits the subscribed
//! partitions among the members. The built-in ones give the Java client's assignments
//! (`partition.assignment.strategy` names them); implement [`PartitionAssignor`] for your
//! own and give it to [`ConsumerBuilder::assignors`](crate::ConsumerBuilder::assignors).

pub use crate::engine::group::assignor::{
    Assignment, CooperativeStickyAssignor, GroupSubscription, PartitionAssignor, RangeAssignor,
    RebalanceProtocol, RoundRobinAssignor, StickyAssignor, Subscription,
};
