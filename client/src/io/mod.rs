//! The only place that owns sockets and tokio timers: thin drivers around the engines.
//!
//! | module | what |
//! |---|---|
//! | [`transport`] | [`Connector`](transport::Connector): how a `host:port` becomes a byte stream (TCP by default) |
//! | [`broker`] | one connection per broker: a task driving the connection engine |
//! | [`cluster`] | metadata + connections shared by producer, consumer and admin |
//! | [`fetch_loop`] | the consumer's background task: sends what the fetcher plans, feeds answers back |
//! | [`sender`] | the producer's task: drains the accumulator into Produce requests |

pub mod broker;
pub mod cluster;
pub mod fetch_loop;
pub mod sender;
pub mod transport;
