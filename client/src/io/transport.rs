//! How the client reaches a broker: a [`Connector`] turns `host:port` into a byte stream.
//! [`TcpConnector`] is the default; the harness provides one that opens in-memory
//! connections, so that the same client runs under a paused tokio clock in tests.
//! [`wrap_tls`] runs the TLS handshake over whatever stream the connector opened (rustls,
//! through tokio-rustls), so TLS works over the in-memory pipe too.

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

/// Runs the TLS handshake with the broker at `address` (`host:port`; the host is sent as
/// SNI and must be named by the broker's certificate, unless hostname verification is off)
/// over `stream`. A handshake the peer or the verifier refuses (an unknown CA, a
/// certificate for another host, no shared cipher) is [`Error::Authentication`], fatal; a
/// stream that breaks is [`Error::Connect`], retriable.
pub async fn wrap_tls(
    config: std::sync::Arc<rustls::ClientConfig>,
    address: &str,
    stream: BoxedStream,
) -> Result<BoxedStream, crate::error::Error> {
    use crate::error::Error;
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        Error::Authentication {
            broker: address.to_string(),
            reason: format!("{host:?} is not a valid TLS server name: {e}"),
        }
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector.connect(name, stream).await {
        Ok(tls) => Ok(Box::new(tls) as BoxedStream),
        Err(error) => {
            let refused = error
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if refused {
                Err(Error::Authentication {
                    broker: address.to_string(),
                    reason: format!("TLS handshake failed: {error}"),
                })
            } else {
                Err(Error::Connect {
                    address: address.to_string(),
                    source: std::sync::Arc::new(error),
                })
            }
        }
    }
}
