//! State machines with no IO: time comes in as an argument, outputs are polled. One engine
//! per role holds every decision of that role: [`producer::ProducerEngine`] for the producer,
//! [`fetcher::Fetcher`] for the consumer; each module documents its call order. Nothing here
//! imports the drivers (`io`), the public clients or the async runtime.
//!
//! The shape, as quinn-proto's: inputs are `handle_*` (answers, failures, decoded batches,
//! time passing), outputs `poll_*` (requests to send, batches to encode, events for the
//! user, the next deadline). A driver loops: feed in what happened, poll out what to do, do
//! the IO, sleep until `poll_timeout` or the next event.
//!
//! | module | what |
//! |---|---|
//! | [`producer`] | the producer's engine: accumulator, InitProducerId, transactions, metadata refreshes, in call order |
//! | [`accumulator`] | producer batches: partitioning, linger, sizes, encoding jobs, drain per leader, retries |
//! | [`idempotence`] | producer id and epoch, batch numbering, sequence arithmetic, epoch bumps |
//! | [`producer_id`] | the InitProducerId state machine: retries, the fallback without idempotence |
//! | [`transaction`] | the transactional producer's state machine: coordinators, partitions and offsets in the transaction, commit and abort, torn commits |
//! | [`fetcher`] | the consumer's engine: positions, Fetch/ListOffsets planning, prefetch buffer, resets, outages |
//! | [`group`] | the consumer group: membership, assignors, commits |
//! | [`refresh`] | when to refresh the metadata, with spacing and backoff: one policy for every role |
//! | [`metadata`] | the cluster view: brokers, topics, leaders, leader epochs |
//! | [`connection`] | one broker connection: correlation ids, in-flight requests, negotiation, timeouts |
//! | [`partitioner`] | Java-compatible murmur2 and uniform sticky partitioning |
//! | [`backoff`] | exponential backoff with jitter, seeded |

pub mod accumulator;
pub mod admin;
pub mod backoff;
pub mod connection;
pub mod fetcher;
pub mod group;
pub mod idempotence;
pub mod metadata;
pub mod partitioner;
pub mod producer;
pub mod producer_id;
pub mod refresh;
pub mod sasl;
pub mod transaction;
