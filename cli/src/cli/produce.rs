//! `franzy produce`: records from stdin, one a line, as `kcat -P` does.

use bytes::Bytes;
use franzy::producer::{Header, Producer, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{parse_delimiter, split_once, ClientArgs, Target};

/// Options of `franzy produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Split each line into key and value at the first DELIM (kcat's -K).
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// Send every record to this partition.
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// A header for every record, as NAME=VALUE, or NAME alone for a null value (kcat's -H;
    /// repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<Header>,
}

fn parse_header(spec: &str) -> Result<Header, String> {
    let (name, value) = match spec.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(format!("header {spec:?} is not NAME=VALUE or NAME"));
    }
    let name = Bytes::copy_from_slice(name.as_bytes());
    Ok(match value {
        Some(value) => Header::new(name, Bytes::copy_from_slice(value.as_bytes())),
        None => Header::null(name),
    })
}

/// Reads stdin to the end, sends a record per line, and waits for every acknowledgement.
/// Fails (non-zero exit) if any record could not be delivered.
pub async fn run(args: ProduceArgs) -> Result<(), String> {
    let delimiter = args
        .key_delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()?;
    let target = Target::resolve(&args.client, 1).await?;
    let config = target.config(&args.client)?;
    let producer = Producer::new(config).map_err(|e| e.to_string())?;
    let (deliveries_tx, mut deliveries) = tokio::sync::mpsc::channel(100_000);
    let collector = tokio::spawn(async move {
        let (mut delivered, mut failed) = (0u64, 0u64);
        while let Some(delivery) = deliveries.recv().await {
            let delivery: franzy::producer::DeliveryFuture = delivery;
            match delivery.await {
                Ok(_) => delivered += 1,
                Err(error) => {
                    failed += 1;
                    eprintln!("franzy: {error} (persisted: {:?})", error.persisted);
                }
            }
        }
        (delivered, failed)
    });
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    while let Some(line) = lines
        .next_segment()
        .await
        .map_err(|e| format!("cannot read stdin: {e}"))?
    {
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let mut record = ProducerRecord::new(args.client.topic.clone());
        match delimiter.as_deref().and_then(|d| split_once(line, d)) {
            Some((key, value)) => {
                record = record
                    .with_key(Bytes::copy_from_slice(key))
                    .with_value(Bytes::copy_from_slice(value));
            }
            None => record = record.with_value(Bytes::copy_from_slice(line)),
        }
        if let Some(partition) = args.partition {
            record = record.with_partition(partition);
        }
        if !args.headers.is_empty() {
            record = record.with_headers(args.headers.clone());
        }
        let delivery = producer.send(record).await.map_err(|e| e.to_string())?;
        if deliveries_tx.send(delivery).await.is_err() {
            return Err("delivery collector stopped".into());
        }
    }
    drop(deliveries_tx);
    producer.flush().await;
    let (delivered, failed) = collector.await.map_err(|e| e.to_string())?;
    producer.close().await;
    eprintln!("franzy: {delivered} records delivered, {failed} failed");
    target.shutdown().await;
    if failed > 0 {
        return Err(format!("{failed} records were not delivered"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_kcat_reads_them() {
        assert_eq!(parse_header("trace=a=b"), Ok(Header::new("trace", "a=b")));
        assert_eq!(parse_header("empty="), Ok(Header::new("empty", "")));
        assert_eq!(parse_header("gone"), Ok(Header::null("gone")));
        assert!(parse_header("=v").is_err_and(|e| e.contains("NAME=VALUE")));
        assert!(parse_header("").is_err());
    }
}
