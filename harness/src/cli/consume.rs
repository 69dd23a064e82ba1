//! `franzy consume`: records to stdout, one a line, as `kcat -C` does.

use std::io::Write;

use franzy::consumer::{Consumer, ConsumerEvent, Offset};
use franzy::TopicPartition;

use super::{parse_delimiter, ClientArgs, Target};

/// Options of `franzy consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where to start: beginning, end, or an offset (default: beginning).
    #[arg(short = 'o', long, default_value = "beginning")]
    pub offset: String,
    /// Exit once the end of every partition is reached.
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Only this partition.
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Print the key before the value, separated by DELIM.
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
}

fn parse_offset(spec: &str) -> Result<Offset, String> {
    match spec {
        "beginning" => Ok(Offset::Beginning),
        "end" => Ok(Offset::End),
        n => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Offset::At)
            .ok_or_else(|| format!("offset {spec:?} is not beginning, end or a number")),
    }
}

/// Consumes and prints until interrupted, `-c` records, or (with `-e`) the end.
pub async fn run(args: ConsumeArgs) -> Result<(), String> {
    let start = parse_offset(&args.offset)?;
    let delimiter = args
        .key_delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()?;
    let target = Target::resolve(&args.client, 1).await?;
    let mut config = target.config(&args.client)?;
    if args.exit_at_end {
        config = config.enable_partition_eof(true);
    }
    let mut consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(p) => vec![TopicPartition::new(args.client.topic.clone(), p)],
        None => {
            let count = consumer
                .partitions_for(&args.client.topic)
                .await
                .map_err(|e| e.to_string())?;
            (0..count as i32)
                .map(|p| TopicPartition::new(args.client.topic.clone(), p))
                .collect()
        }
    };
    consumer.assign(&partitions).map_err(|e| e.to_string())?;
    for tp in &partitions {
        consumer.seek(tp, start).map_err(|e| e.to_string())?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut at_end = std::collections::HashSet::new();
    let mut printed = 0u64;
    while args.count.is_none_or(|c| printed < c) {
        match consumer.recv().await.map_err(|e| e.to_string())? {
            ConsumerEvent::Record(record) => {
                at_end.remove(&record.partition);
                if let (Some(d), Some(key)) = (&delimiter, &record.key) {
                    out.write_all(key)
                        .and_then(|()| out.write_all(d))
                        .map_err(|e| e.to_string())?;
                } else if let Some(d) = &delimiter {
                    out.write_all(d).map_err(|e| e.to_string())?;
                }
                out.write_all(record.value.as_deref().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
                printed += 1;
            }
            ConsumerEvent::PartitionEof { partition, .. } => {
                at_end.insert(partition);
                if args.exit_at_end && at_end.len() == partitions.len() {
                    break;
                }
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    consumer.close().await.map_err(|e| e.to_string())?;
    target.shutdown().await;
    Ok(())
}
