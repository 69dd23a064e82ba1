//! How the client reaches a broker: a [`Connector`] turns `host:port` into a byte stream.
//! [`TcpConnector`] is the default; the harness provides one that opens in-memory
//! connections, so that the same client runs under a paused tokio clock in tests.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream to a broker.
pub trait BrokerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> BrokerStream for T {}

/// A boxed [`BrokerStream`].
pub type BoxedStream = Box<dyn BrokerStream>;

/// A future returned by [`Connector::connect`].
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send + 'a>>;

/// Opens connections to brokers.
pub trait Connector: Send + Sync + 'static {
    /// Connects to `address` (`host:port`, as in `bootstrap.servers` or Metadata).
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a>;
}

/// Plain TCP with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}
