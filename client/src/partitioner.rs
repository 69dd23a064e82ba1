//! Which partition a keyed record goes to: the Java client's default partitioner
//! (murmur2 of the key, positive, modulo the partition count), so that franzy and Java
//! producers put the same key on the same partition.

pub use crate::engine::partitioner::partition_for_key;
