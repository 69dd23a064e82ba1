//! franzy: a pure-Rust, async Kafka client that speaks the wire protocol itself.
//!
//! ```no_run
//! use franzy::{Config, Consumer, Offset, Producer, ProducerRecord, TopicPartition};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("localhost:9092").set("linger.ms", "5")?;
//! let producer = Producer::new(config.clone())?;
//! // One record, waiting for its acknowledgement...
//! let written = producer
//!     .send_and_wait(ProducerRecord::new("orders").with_key("customer-7").with_value("{}"))
//!     .await?;
//! println!("written to {}/{} at {}", written.topic, written.partition, written.offset);
//! // ... or many, each acknowledged through its future.
//! let delivery = producer.send(ProducerRecord::new("orders").with_value("{}")).await?;
//! delivery.await?;
//! producer.close().await;
//!
//! let consumer = Consumer::new(config)?;
//! let tp = TopicPartition::new("orders", written.partition);
//! consumer.assign(&[tp.clone()])?;
//! consumer.seek(&tp, Offset::At(written.offset))?;
//! // Records until the consumer is closed (from another task: every method takes &self).
//! while let Some(record) = consumer.recv().await? {
//!     println!("{}/{} at {}: {:?}", record.topic, record.partition, record.offset, record.value);
//!     if let Some(trace) = record.header("trace-id") {
//!         println!("  trace-id {:?}", trace.value);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A Java client's `.properties` file configures franzy as it is
//! ([`Config::from_properties`]): every Kafka and librdkafka key is accepted, keys franzy does
//! not implement are kept and logged once at warn level, and a value franzy cannot honour
//! (`security.protocol=SSL`) is an error naming the key. The [`config`] module lists what is
//! supported, with defaults.
//!
//! | module | what |
//! |---|---|
//! | [`admin`] | [`Admin`]: topics, configs, groups and their lag and offset resets, offsets, records, transactions, the cluster |
//! | [`producer`] | [`Producer`]: `send` records, await their delivery (or `send_and_wait`); `flush`, `close`; transactions |
//! | [`consumer`] | [`Consumer`]: group subscriptions (topics or a pattern) with rebalance callbacks and commits, or manual assignment; seek, pause, prefetching `recv` / `recv_event` / `Stream`, all through `&self` |
//! | [`assignor`] | partition assignors: range, roundrobin, sticky, cooperative-sticky, and the [`PartitionAssignor`](assignor::PartitionAssignor) trait for your own |
//! | [`record`] | the record types: [`ProducerRecord`], [`RecordMetadata`], [`ConsumerRecord`], [`ConsumerEvent`], [`Offset`], [`Header`] |
//! | [`config`] | [`Config`]: typed setters; Kafka's and librdkafka's property names and `.properties` files, from one table |
//! | [`builder`] | [`ClientBuilder`]: transport and seed for a producer or consumer |
//! | [`error`] | [`Error`] and its classification (retriable, abortable, fatal); [`ProduceError`] |
//! | [`group_metadata`] | [`ConsumerGroupMetadata`]: a group member's id and generation, for offsets sent to a transaction |
//! | [`stats`] | [`Stats`]: a producer's or consumer's counters, latency histograms, per broker and partition; JSON |
//! | [`topic_partition`] | [`TopicPartition`]: one partition of one topic |
//! | [`transport`] | [`Connector`](transport::Connector): how a `host:port` becomes a byte stream (TCP by default) |
//! | [`partitioner`] | [`partition_for_key`](partitioner::partition_for_key): the Java client's murmur2 partitioner |
//! | [`proto`] | the wire: frames, headers, messages, record batches, compression. No IO. |
//! | `fuzzing` | with the `fuzzing` feature: generators of every request and response at every version, record batches and targeted mutations, for fuzzing Kafka implementations (`franzy fuzz`, cargo-fuzz) |
//!
//! Inside, not public (DESIGN.md has the file map): `engine`, one sans-IO state machine per
//! role (the producer's accumulator, InitProducerId and transactions, the consumer's fetcher, connections,
//! metadata and its refresh policy), with time as an argument; `io`, the tokio drivers that
//! carry what the engines ask for. The `internals` cargo feature makes both public for the
//! fuzz targets and the end-to-end tests: an unstable surface, outside semver.
//!
//! ```text
//! user ── Producer/Consumer (async API) ── io (tokio drivers) ── broker
//!                 │                            │ handle_* in, poll_* out
//!                 └──── record, error ──── engine (state machines, no IO, time as argument)
//!                                              │
//!                                            proto (bytes <-> values)
//! ```

pub mod admin;
pub mod assignor;
pub mod builder;
pub mod config;
pub mod consumer;
mod delivery;
// `engine` and `io` are private unless the unstable `internals` feature asks for them. Their
// API is written for every user the feature lets in (the drivers, the fuzz targets, the
// end-to-end tests), so without it some of it is used only by unit tests: not dead code.
#[cfg(feature = "internals")]
pub mod engine;
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod engine;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod group_metadata;
#[cfg(feature = "internals")]
pub mod io;
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod io;
pub mod partitioner;
pub mod producer;
pub mod proto;
pub mod record;
pub mod security;
pub mod stats;
pub mod topic_partition;
pub mod transport;

pub use admin::Admin;
pub use builder::ClientBuilder;
pub use config::{Acks, Config, GroupProtocol, IsolationLevel, OffsetReset, Partitioner};
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerHandle, OffsetAndMetadata, RebalanceListener,
};
pub use error::{Error, Persisted, ProduceError, Result};
pub use group_metadata::ConsumerGroupMetadata;
pub use producer::{DeliveryFuture, Producer, ProducerBuilder};
pub use record::{
    ConsumerEvent, ConsumerRecord, Header, Offset, ProducerRecord, RecordMetadata, TimestampType,
};
pub use stats::Stats;
pub use topic_partition::TopicPartition;

/// Re-export of the `kafka-protocol` crate whose generated message structs franzy uses, so
/// that callers name the same types without a version mismatch.
pub use kafka_protocol;
