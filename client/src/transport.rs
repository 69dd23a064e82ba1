//! How the client reaches a broker: a [`Connector`] turns `host:port` into a byte stream.
//! [`TcpConnector`] is the default; give another to [`ClientBuilder::connector`] (the
//! harness's in-memory transport is one, so that the same client runs under a paused tokio
//! clock in tests).
//!
//! [`ClientBuilder::connector`]: crate::ClientBuilder::connector

pub use crate::io::transport::{BoxedStream, BrokerStream, ConnectFuture, Connector, TcpConnector};
