//! With no CA configured, the client trusts the system's roots: here `SSL_CERT_FILE`
//! names the harness's generated CA, so a TLS connection succeeds without `ssl.ca.location`.
//! A test binary of its own, because the system's roots are read once per process and the
//! environment is set before that.

use std::sync::Arc;
use std::time::Duration;

use franzy::security::SecurityProtocol;
use franzy::{Config, Producer, ProducerRecord};
use franzy_harness::{Cluster, ListenerSecurity};

#[tokio::test(start_paused = true)]
async fn the_system_roots_are_trusted_by_default() {
    let cluster = Cluster::builder()
        .brokers(1)
        .topic("secure", 1)
        .in_memory()
        .security(ListenerSecurity::new(franzy_harness::SecurityProtocol::Ssl))
        .build()
        .await
        .expect("cluster starts");
    let ca = cluster.ca_pem_path().expect("a generated CA");
    // Set before any TLS configuration is built in this process (the roots are read once).
    std::env::set_var("SSL_CERT_FILE", ca);
    std::env::remove_var("SSL_CERT_DIR");
    let config = Config::new(cluster.bootstrap())
        .security_protocol(SecurityProtocol::Ssl)
        .set("linger.ms", "1")
        .expect("valid");
    let producer = Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .build()
        .expect("producer");
    let written = tokio::time::timeout(
        Duration::from_secs(600),
        producer.send_and_wait(ProducerRecord::new("secure").with_value("trusted")),
    )
    .await
    .expect("answered")
    .map_err(|e| e.error)
    .expect("the system's roots include the harness's CA");
    assert_eq!(written.offset, 0);
    producer.close().await;
}
