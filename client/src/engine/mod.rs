//! State machines with no IO: time comes in as an argument, outputs are polled.
//!
//! | module | what |
//! |---|---|
//! | [`backoff`] | exponential backoff with jitter, seeded |
//! | [`connection`] | one broker connection: correlation ids, in-flight requests, negotiation, timeouts |
//! | [`fetcher`] | the consumer: positions, Fetch/ListOffsets planning, prefetch buffer, resets |
//! | [`partitioner`] | Java-compatible murmur2 and uniform sticky partitioning |
//! | [`metadata`] | the cluster view: brokers, topics, leaders, leader epochs, refresh |
//! | [`accumulator`] | producer batches: partitioning, linger, sizes, drain per leader, retries |
//! | [`idempotence`] | producer id and epoch, sequence arithmetic, epoch bumps |

pub mod accumulator;
pub mod backoff;
pub mod connection;
pub mod fetcher;
pub mod idempotence;
pub mod metadata;
pub mod partitioner;
pub mod producer;
pub mod producer_id;
pub mod refresh;
