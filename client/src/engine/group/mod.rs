//! The consumer group: membership in the classic group protocol (FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup; KIP-345 static membership, KIP-394 member ids, KIP-429
//! cooperative rebalancing) or in KIP-848's consumer protocol (`group.protocol=consumer`:
//! ConsumerGroupHeartbeat, the broker assigning), the partition assignors the leader runs,
//! the consumer protocol's payloads, and offset commits (OffsetCommit, OffsetFetch). No IO:
//! time is an argument, requests are polled out and answers fed in.
//!
//! | module | what |
//! |---|---|
//! | [`assignor`] | range, roundrobin, sticky, cooperative-sticky; the [`assignor::PartitionAssignor`] trait |
//! | [`protocol`] | `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`, versions 0-3 |
//! | [`requests`] | the group's requests as values, built per negotiated version |
//! | `member` | [`GroupEngine`]: the member's state machine, commits and lookups, in call order |
//! | `member::consumer_protocol` | the KIP-848 member inside [`GroupEngine`]: heartbeats, reconciliation, fencing |

pub mod assignor;
mod member;
pub mod protocol;
pub mod requests;

pub use member::{Committed, GroupConfig, GroupEngine, GroupEvent, Token};
pub use requests::{GroupRequest, OffsetAndMetadata, Target};
