//! franzy-harness: an in-process, multi-broker Kafka cluster with deterministic fault
//! injection.

pub mod cluster;
pub mod handlers;
