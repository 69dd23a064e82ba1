//! `franzy produce`: records from stdin, one a line, as `kcat -P` does.
//!
//! With `-X transactional.id=ID` the input is sent in one transaction, committed at the end
//! of input (or one every `--txn-records N` records) and aborted on any error and on
//! SIGINT/SIGTERM, which then exit non-zero: a reader with `isolation.level=read_committed`
//! sees all of a transaction's lines or none.

use std::num::NonZeroU64;

use bytes::Bytes;
use franzy::producer::{DeliveryFuture, Header, Producer, ProducerRecord};

use super::{parse_delimiter, split_once, ClientArgs, Interrupt, Target};

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
    /// With -X transactional.id: commit a transaction every N records (and the rest at the
    /// end of input) instead of one for the whole input.
    #[arg(long = "txn-records", value_name = "N")]
    pub txn_records: Option<NonZeroU64>,
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
/// Fails (non-zero exit) if any record could not be delivered. With a `transactional.id`,
/// see the module doc.
pub async fn run(args: ProduceArgs) -> Result<(), String> {
    let delimiter = args
        .key_delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()?;
    let target = Target::resolve(&args.client, 1).await?;
    let config = target.config(&args.client)?;
    let transactional = config.transactional().is_some();
    if args.txn_records.is_some() && !transactional {
        return Err("--txn-records needs -X transactional.id=ID".into());
    }
    let producer = Producer::new(config).map_err(|e| e.to_string())?;
    let lines = Lines {
        input: read_stdin(),
        delimiter,
        args: &args,
    };
    let result = if transactional {
        produce_in_transactions(&producer, lines, args.txn_records).await
    } else {
        produce(&producer, lines).await
    };
    producer.close().await;
    target.shutdown().await;
    result
}

/// Reads stdin line by line on a thread of its own, which the process's exit ends: a
/// blocking read on tokio's blocking pool would keep the runtime from shutting down while
/// stdin stays open (an interrupted `produce` would hang instead of exiting).
fn read_stdin() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (lines, input) = tokio::sync::mpsc::channel(1024);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            let read = std::io::BufRead::read_until(&mut stdin, b'\n', &mut line);
            let end = matches!(read, Ok(0) | Err(_));
            let item = read.map(|_| line);
            if (!end || item.is_err()) && lines.blocking_send(item).is_err() {
                return;
            }
            if end {
                return;
            }
        }
    });
    input
}

/// The records of stdin, one a line.
struct Lines<'a> {
    input: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    delimiter: Option<Vec<u8>>,
    args: &'a ProduceArgs,
}

impl Lines<'_> {
    /// The next line's record, `None` at the end of input. Cancel-safe.
    async fn next(&mut self) -> Result<Option<ProducerRecord>, String> {
        let line = match self.input.recv().await {
            None => return Ok(None),
            Some(line) => line.map_err(|e| format!("cannot read stdin: {e}"))?,
        };
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = self.args;
        let mut record = ProducerRecord::new(args.client.topic.clone());
        match self.delimiter.as_deref().and_then(|d| split_once(line, d)) {
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
        Ok(Some(record))
    }
}

/// Sends every line, then waits for each acknowledgement.
async fn produce(producer: &Producer, mut lines: Lines<'_>) -> Result<(), String> {
    let (deliveries_tx, mut deliveries) = tokio::sync::mpsc::channel(100_000);
    let collector = tokio::spawn(async move {
        let (mut delivered, mut failed) = (0u64, 0u64);
        while let Some(delivery) = deliveries.recv().await {
            let delivery: DeliveryFuture = delivery;
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
    while let Some(record) = lines.next().await? {
        let delivery = producer.send(record).await.map_err(|e| e.to_string())?;
        if deliveries_tx.send(delivery).await.is_err() {
            return Err("delivery collector stopped".into());
        }
    }
    drop(deliveries_tx);
    producer.flush().await;
    let (delivered, failed) = collector.await.map_err(|e| e.to_string())?;
    eprintln!("franzy: {delivered} records delivered, {failed} failed");
    if failed > 0 {
        return Err(format!("{failed} records were not delivered"));
    }
    Ok(())
}

/// Sends the lines in transactions: one for the whole input, or one per `every` records.
/// Any error, and SIGINT/SIGTERM, aborts the open transaction and fails.
async fn produce_in_transactions(
    producer: &Producer,
    mut lines: Lines<'_>,
    every: Option<NonZeroU64>,
) -> Result<(), String> {
    let mut interrupt = Interrupt::watch()?;
    let mut committed = Committed::default();
    let result = tokio::select! {
        result = transactions(producer, &mut lines, every, &mut committed) => result,
        () = interrupt.recv() => Err("interrupted".to_string()),
    };
    eprintln!(
        "franzy: {} records committed in {} transactions",
        committed.records, committed.transactions
    );
    let Err(error) = result else {
        return Ok(());
    };
    // Whatever was open is aborted: its records are never seen by read_committed readers.
    match producer.abort_transaction().await {
        Ok(()) => Err(format!("{error}; transaction aborted")),
        Err(franzy::Error::InvalidTransactionState(_)) => {
            // No transaction open, or one being committed (interrupted during the commit):
            // the commit's own outcome is the truth; wait for it.
            match producer.commit_transaction().await {
                Ok(()) => Err(format!(
                    "{error}; the transaction being committed committed"
                )),
                Err(franzy::Error::InvalidTransactionState(_)) => Err(error),
                Err(commit) if commit.requires_abort() => {
                    let _ = producer.abort_transaction().await;
                    Err(format!(
                        "{error}; commit failed ({commit}); transaction aborted"
                    ))
                }
                Err(commit) => Err(format!("{error}; commit failed: {commit}")),
            }
        }
        Err(abort) => Err(format!("{error}; abort failed: {abort}")),
    }
}

#[derive(Default)]
struct Committed {
    records: u64,
    transactions: u64,
}

async fn transactions(
    producer: &Producer,
    lines: &mut Lines<'_>,
    every: Option<NonZeroU64>,
    committed: &mut Committed,
) -> Result<(), String> {
    let failed = |what: &str, error: franzy::Error| format!("{what} failed: {error}");
    producer
        .init_transactions()
        .await
        .map_err(|e| failed("init_transactions", e))?;
    let mut in_transaction = 0u64;
    let mut open = false;
    while let Some(record) = lines.next().await? {
        if !open {
            producer
                .begin_transaction()
                .await
                .map_err(|e| failed("begin_transaction", e))?;
            open = true;
        }
        // Each record's outcome is the commit's: a record that failed fails the commit.
        drop(producer.send(record).await.map_err(|e| e.to_string())?);
        in_transaction += 1;
        if every.is_some_and(|n| in_transaction >= n.get()) {
            producer
                .commit_transaction()
                .await
                .map_err(|e| failed("commit_transaction", e))?;
            committed.records += in_transaction;
            committed.transactions += 1;
            in_transaction = 0;
            open = false;
        }
    }
    if open {
        producer
            .commit_transaction()
            .await
            .map_err(|e| failed("commit_transaction", e))?;
        committed.records += in_transaction;
        committed.transactions += 1;
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
