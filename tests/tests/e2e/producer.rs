//! The producer against the harness, in memory, under a paused clock.

use std::sync::Arc;
use std::time::Duration;

use franzy::producer::{Producer, ProducerRecord};
use franzy::Config;
use franzy_harness::Cluster;
use franzy_tests::init_tracing;

async fn cluster(brokers: i32) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(brokers)
        .topic("orders", 6)
        .in_memory()
        .seed(1)
        .build()
        .await
        .expect("cluster starts")
}

fn producer(cluster: &Cluster, config: Config) -> Producer {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn smoke() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, Config::new(&cluster.bootstrap()));
    let delivery = producer
        .send(ProducerRecord::new("orders").with_key("k").with_value("v"))
        .await
        .expect("accepted");
    let metadata = tokio::time::timeout(Duration::from_secs(10), delivery)
        .await
        .expect("in time")
        .expect("delivered");
    assert_eq!(metadata.offset, 0);
    producer.close().await;
}
