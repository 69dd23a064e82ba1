//! State machines with no IO: time comes in as an argument, outputs are polled.
//!
//! | module | what |
//! |---|---|
//! | [`connection`] | one broker connection: correlation ids, in-flight requests, negotiation, timeouts |
//! | [`metadata`] | the cluster view: brokers, topics, leaders, leader epochs, refresh |

pub mod connection;
pub mod metadata;
