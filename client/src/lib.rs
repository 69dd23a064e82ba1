//! franzy: a pure-Rust, async Kafka client that speaks the wire protocol itself.
//!
//! ```no_run
//! use franzy::{Config, Consumer, ConsumerEvent, Offset, Producer, ProducerRecord, TopicPartition};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("localhost:9092").set("linger.ms", "5")?;
//! let producer = Producer::new(config.clone())?;
//! let delivery = producer
//!     .send(ProducerRecord::new("orders").with_key("customer-7").with_value("{}"))
//!     .await?;
//! let written = delivery.await?;
//! println!("written to {}/{} at {}", written.topic, written.partition, written.offset);
//! producer.close().await;
//!
//! let mut consumer = Consumer::new(config)?;
//! let tp = TopicPartition::new("orders", written.partition);
//! consumer.assign(&[tp.clone()])?;
//! consumer.seek(&tp, Offset::At(written.offset))?;
//! if let ConsumerEvent::Record(record) = consumer.recv().await? {
//!     assert_eq!(record.key.as_deref(), Some(&b"customer-7"[..]));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A Java client's `.properties` file configures franzy as it is
//! ([`Config::from_properties`]): every Kafka and librdkafka key is accepted, keys franzy does
//! not implement are kept and logged once at warn level, and a value franzy cannot honour
//! (`security.protocol=SSL`, a `transactional.id`) is an error naming the key. The
//! [`config`] module lists what is supported, with defaults.
//!
//! | module | what |
//! |---|---|
//! | [`proto`] | the wire: frames, headers, messages, record batches, compression. No IO. |
//! | [`engine`] | state machines: connections, metadata, accumulator. No IO, no clock. |
//! | [`consumer`] | [`Consumer`]: manual assignment, seek, pause, prefetching `recv` / `Stream` |
//! | [`builder`] | [`ClientBuilder`]: transport and seed for a producer or consumer |
//! | [`config`] | [`Config`]: typed setters; Kafka's and librdkafka's property names and `.properties` files, from one table |
//! | [`io`] | tokio drivers: transports, broker connections, the shared cluster client |
//! | [`error`] | [`Error`] and its classification (retriable, abortable, fatal) |
//! | [`record`] | the record types: [`ProducerRecord`], [`RecordMetadata`], [`ConsumerRecord`], [`ConsumerEvent`], [`Offset`], [`Header`] |
//! | [`topic_partition`] | [`TopicPartition`]: one partition of one topic |
//! | [`producer`] | [`Producer`]: `send` records, await their delivery; `flush`, `close` |
//!
//! ```text
//! user ── Producer/Consumer (async API) ── engine (state machines, no IO) ── io (tokio) ── broker
//!                                              │
//!                                            proto (bytes <-> values)
//! ```

pub mod builder;
pub mod config;
pub mod consumer;
mod delivery;
pub mod engine;
pub mod error;
pub mod io;
pub mod producer;
pub mod proto;
pub mod record;
pub mod topic_partition;

pub use builder::ClientBuilder;
pub use config::{Acks, Config, IsolationLevel, OffsetReset, Partitioner};
pub use consumer::{Consumer, ConsumerBuilder};
pub use error::{Error, Persisted, ProduceError, Result};
pub use producer::{DeliveryFuture, Producer, ProducerBuilder};
pub use record::{
    ConsumerEvent, ConsumerRecord, Header, Offset, ProducerRecord, RecordMetadata, TimestampType,
};
pub use topic_partition::TopicPartition;

/// Re-export of the `kafka-protocol` crate whose generated message structs franzy uses, so
/// that callers name the same types without a version mismatch.
pub use kafka_protocol;
