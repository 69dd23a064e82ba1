//! The only place that owns sockets and tokio timers: thin drivers around the engines. No
//! policy lives here: each driver feeds the engine what happened (answers, failures, time),
//! polls what to do, does the IO, and sleeps until the engine's next deadline.
//!
//! | module | what |
//! |---|---|
//! | [`transport`] | [`Connector`](transport::Connector): how a `host:port` becomes a byte stream (TCP by default) |
//! | [`broker`] | one connection per broker: a task driving the connection engine |
//! | [`cluster`] | metadata cache + connections shared by producer and consumer; Metadata requests |
//! | [`sender`] | the producer's task: carries what the producer engine asks for, encodes outside the lock |
//! | [`group_loop`] | the consumer group's task: heartbeats, join/sync, commits, offset lookups |
//! | [`fetch_loop`] | the consumer's task: carries what the fetcher plans, decodes ahead outside the lock |
//! | [`stats_loop`] | every `statistics.interval.ms`, a statistics snapshot to the callback (and `metrics`) |

pub mod broker;
pub mod cluster;
pub mod fetch_loop;
pub mod group_loop;
pub mod sender;
pub mod stats_loop;
pub mod transport;
