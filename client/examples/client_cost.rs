//! The client's own work per record, for an instruction counter: produces or consumes a fixed
//! number of records against a broker in another process, in the loops `franzy bench` runs
//! (records to partitions in turn one batch's worth at a time, every `DeliveryFuture` awaited;
//! consume from the beginning of every partition), but without the harness or the CLI, so
//! that it builds with this crate alone. BENCHMARKS.md ("Instructions per record") has the
//! commands; run it twice with different counts and divide the difference.
//!
//! ```sh
//! cargo build --release -p franzy --example client_cost
//! valgrind --tool=callgrind target/release/examples/client_cost produce BOOTSTRAP TOPIC COUNT
//! valgrind --tool=callgrind target/release/examples/client_cost consume BOOTSTRAP TOPIC COUNT
//! ```

use std::sync::Arc;

use bytes::Bytes;
use franzy::consumer::{Consumer, Offset};
use franzy::producer::{DeliveryFuture, Producer, ProducerRecord};
use franzy::{Config, TopicPartition};

const VALUE_BYTES: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, bootstrap, topic, count, properties @ ..] = args.as_slice() else {
        eprintln!("usage: client_cost produce|consume BOOTSTRAP TOPIC COUNT [KEY=VALUE...]");
        std::process::exit(2);
    };
    let count: u64 = match count.parse() {
        Ok(count) => count,
        Err(error) => {
            eprintln!("client_cost: COUNT: {error}");
            std::process::exit(2);
        }
    };
    let mut config = Config::new(bootstrap.as_str()).client_id("client-cost".to_string());
    for property in properties {
        let Some((key, value)) = property.split_once('=') else {
            eprintln!("client_cost: {property:?} is not KEY=VALUE");
            std::process::exit(2);
        };
        config = match config.set(key, value) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("client_cost: {error}");
                std::process::exit(2);
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("client_cost: runtime: {error}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match kind.as_str() {
            "produce" => produce(config, topic, count).await,
            "consume" => consume(config, topic, count).await,
            other => Err(format!("unknown kind {other:?}")),
        }
    });
    match result {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("client_cost: {error}");
            std::process::exit(1);
        }
    }
}

async fn produce(config: Config, topic: &str, count: u64) -> Result<String, String> {
    let batch_records = (config.batch_size_bytes() / VALUE_BYTES).max(1) as u64;
    let producer = Producer::new(config).map_err(|e| e.to_string())?;
    let partitions = producer
        .partitions_for(topic)
        .await
        .map_err(|e| e.to_string())?
        .max(1);
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let topic: Arc<str> = topic.into();
    let mut futures: Vec<DeliveryFuture> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let partition = ((i / batch_records) % partitions as u64) as i32;
        let record = ProducerRecord::new(topic.clone())
            .with_value(value.clone())
            .with_partition(partition);
        futures.push(producer.send(record).await.map_err(|e| e.to_string())?);
    }
    let mut failed = 0u64;
    for future in futures {
        if future.await.is_err() {
            failed += 1;
        }
    }
    producer.close().await;
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    Ok(format!("produced {count} records"))
}

async fn consume(config: Config, topic: &str, count: u64) -> Result<String, String> {
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let partitions = consumer
        .partitions_for(topic)
        .await
        .map_err(|e| e.to_string())?;
    let assignment: Vec<TopicPartition> = (0..partitions as i32)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    for tp in &assignment {
        consumer
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let mut bytes = 0u64;
    for _ in 0..count {
        let Some(record) = consumer.recv().await.map_err(|e| e.to_string())? else {
            return Err("the consumer closed".into());
        };
        bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
    }
    consumer.close().await;
    Ok(format!("consumed {count} records, {bytes} value bytes"))
}
