//! `franzy consume`: records to stdout as `kcat -C` does, one a line by default or as `-f`
//! says.
//!
//! Output streams: records go through a buffer that is flushed whenever the consumer has no
//! further record ready (and at least every [`BATCH_LIMIT`] records), so that lines appear
//! as soon as records arrive while a fast stream still costs one write per batch rather than
//! per record. SIGINT and SIGTERM stop the loop between records: what was received is
//! flushed, the consumer is closed and the exit status is 0, as kcat's.
//!
//! With `-G GROUP` (kcat's balanced consumer), the consumer joins GROUP subscribed to the
//! topic: the group splits the partitions among its members, each starts at its committed
//! offset (else where `-o beginning|end` says), positions handed out are committed as it
//! goes (`enable.auto.commit`, unless `-X` says otherwise), and SIGINT or SIGTERM commits
//! and leaves the group before exiting. `-e` then exits once every partition this member
//! is assigned has reached its end. As in kcat, a topic starting with `^` is a regular
//! expression: the group subscribes to every topic it matches, including later ones.
//!
//! Errors from the consumer are printed on stderr as kcat prints them (`% ERROR: ...`).
//! Consuming goes on after a non-fatal one; a fatal one ends the command with a non-zero
//! status (`% ERROR: ...: terminating`). A partition stopped by an error (corrupt data, an
//! offset out of range with `auto.offset.reset=none`, a non-retriable broker error) never
//! reaches its end, so `-e` counts it as finished and then exits non-zero.

use std::collections::HashSet;
use std::future::poll_fn;
use std::io::{BufWriter, ErrorKind, Stdout, Write};
use std::task::Poll;

use franzy::consumer::{Consumer, ConsumerEvent, ConsumerHandle, Offset};
use franzy::{Error, OffsetReset, TopicPartition};

use super::format::Format;
use super::{parse_delimiter, ClientArgs, Failure, Interrupt, Target};

/// At most this many records are written between two flushes, and between two looks at
/// the signals, however fast they arrive.
const BATCH_LIMIT: usize = 4096;

/// Size of the stdout buffer.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Options of `franzy consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where to start: beginning, end, or an offset.
    #[arg(short = 'o', long, default_value = "beginning")]
    pub offset: String,
    /// Exit once the end of every partition is reached.
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Only this partition.
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Print the key before the value, separated by DELIM (ignored with -f).
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// Output format, as kcat's -f: %s (or %v) value, %k key, %S and %K their lengths (-1
    /// for null), %R the value length as 4 big-endian bytes, %t topic, %p partition,
    /// %o offset, %T timestamp (ms), %h headers (n=v,...), %% percent; escapes \n \r \t
    /// \xHH \\. Default: '%s\n', or '%k<DELIM>%s\n' with -K.
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
    /// Print a null key or value as NULL instead of nothing.
    #[arg(short = 'Z')]
    pub null_as_text: bool,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Join this consumer group (kcat's -G): the group assigns the partitions, offsets are
    /// committed; -o beginning|end applies where nothing is committed.
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,
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

fn output_format(args: &ConsumeArgs) -> Result<Format, String> {
    let format = match &args.format {
        Some(spec) => Format::parse(spec)?,
        None => {
            let delimiter = args
                .key_delimiter
                .as_deref()
                .map(parse_delimiter)
                .transpose()?;
            Format::kcat_default(delimiter.as_deref())
        }
    };
    Ok(format.null_as_text(args.null_as_text))
}

/// Consumes and prints until interrupted, `-c` records, (with `-e`) the end, or a fatal
/// error.
pub async fn run(args: ConsumeArgs) -> Result<(), Failure> {
    let start = parse_offset(&args.offset)?;
    let format = output_format(&args)?;
    let mut interrupt = Interrupt::watch()?;
    let (target, consumer, partitions) = tokio::select! {
        biased;
        () = interrupt.recv() => return Ok(()),
        connected = connect(&args, start) => connected?,
    };
    let mut printer = Printer {
        format,
        out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout()),
        topic: args.client.topic.clone(),
        partitions: partitions.len(),
        group: args.group.is_some().then(|| consumer.handle()),
        exit_at_end: args.exit_at_end,
        limit: args.count,
        printed: 0,
        at_end: HashSet::new(),
        stopped: HashSet::new(),
    };
    let mut outcome = loop {
        if printer.limit_reached() {
            break Ok(());
        }
        let event = tokio::select! {
            biased;
            () = interrupt.recv() => break Ok(()),
            event = consumer.recv_event() => event,
        };
        let mut step = printer.handle(event);
        let mut handled = 1;
        while step.is_none() && handled < BATCH_LIMIT {
            match poll_fn(|cx| Poll::Ready(consumer.poll_recv_event(cx))).await {
                Poll::Ready(event) => {
                    step = printer.handle(event);
                    handled += 1;
                }
                Poll::Pending => break,
            }
        }
        if let Some(outcome) = step.or_else(|| printer.flush()) {
            break outcome;
        }
    };
    if let Some(Err(failure)) = printer.flush() {
        outcome = outcome.and(Err(failure));
    }
    consumer.close().await;
    target.shutdown().await;
    outcome
}

/// Resolves the target, starts the consumer and assigns it the partitions to read (or,
/// with `-G`, subscribes it in its group).
async fn connect(
    args: &ConsumeArgs,
    start: Offset,
) -> Result<(Target, Consumer, Vec<TopicPartition>), String> {
    let target = Target::resolve(&args.client, 1).await?;
    let mut config = target.config(&args.client)?;
    if args.exit_at_end {
        config = config.enable_partition_eof(true);
    }
    if let Some(group) = &args.group {
        let reset = match start {
            Offset::Beginning => OffsetReset::Earliest,
            Offset::End => OffsetReset::Latest,
            _ => {
                return Err(
                    "with -G, -o takes beginning or end (where nothing is committed)".into(),
                )
            }
        };
        if args.partition.is_some() {
            return Err("-p and -G do not go together: the group assigns the partitions".into());
        }
        // -X auto.offset.reset wins over -o, as the last word on the command line.
        let explicit_reset = args
            .client
            .properties
            .iter()
            .any(|p| p.trim_start().starts_with("auto.offset.reset="));
        config = config.group_id(group.clone());
        if !explicit_reset {
            config = config.auto_offset_reset(reset);
        }
        let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
        // kcat's rule: a topic starting with ^ is a regular expression.
        let topic = args.client.topic.as_str();
        if topic.starts_with('^') {
            consumer.subscribe_pattern(topic)
        } else {
            consumer.subscribe([topic])
        }
        .map_err(|e| e.to_string())?;
        return Ok((target, consumer, Vec::new()));
    }
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
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
    Ok((target, consumer, partitions))
}

/// Writes what the consumer hands out and decides when to stop. `None` from a method means
/// go on; `Some(outcome)` means stop with that outcome.
struct Printer {
    format: Format,
    out: BufWriter<Stdout>,
    topic: String,
    partitions: usize,
    exit_at_end: bool,
    /// With `-G`: the partitions to finish are those the group assigned.
    group: Option<ConsumerHandle>,
    limit: Option<u64>,
    printed: u64,
    /// Partitions whose end was reached (and no record came since).
    at_end: HashSet<i32>,
    /// Partitions stopped by an error.
    stopped: HashSet<i32>,
}

impl Printer {
    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
    }

    fn handle(
        &mut self,
        event: Result<Option<ConsumerEvent>, Error>,
    ) -> Option<Result<(), Failure>> {
        match event {
            Ok(Some(ConsumerEvent::Record(record))) => {
                self.at_end.remove(&record.partition);
                if let Err(error) = self.format.write(&mut self.out, &record) {
                    return Some(write_failed(error));
                }
                self.printed += 1;
                self.limit_reached().then_some(Ok(()))
            }
            Ok(Some(ConsumerEvent::PartitionEof {
                partition: tp,
                offset,
            })) => {
                let (topic, partition) = (tp.topic, tp.partition);
                self.at_end.insert(partition);
                let finished = self.finished();
                if let Some(outcome) = self.flush() {
                    return Some(outcome);
                }
                eprintln!(
                    "% Reached end of topic {topic} [{partition}] at offset {offset}{}",
                    if finished.is_some() { ": exiting" } else { "" }
                );
                finished
            }
            // Events this version does not know are not for printing.
            Ok(Some(_)) => None,
            // Closed: nothing more will come.
            Ok(None) => Some(Ok(())),
            Err(error) => {
                if let Some(outcome) = self.flush() {
                    return Some(outcome);
                }
                if error.is_fatal() {
                    eprintln!("% ERROR: {error}: terminating");
                    return Some(Err(Failure::Reported));
                }
                eprintln!("% ERROR: {error}");
                if let Some(partition) = stopped_partition(&error, &self.topic) {
                    self.stopped.insert(partition);
                    self.at_end.remove(&partition);
                    return self.finished();
                }
                None
            }
        }
    }

    /// With `-e`: whether every partition reached its end or was stopped by an error.
    fn finished(&self) -> Option<Result<(), Failure>> {
        if !self.exit_at_end {
            return None;
        }
        match &self.group {
            Some(group) => {
                let assignment = group.assignment();
                let done = |tp: &TopicPartition| {
                    self.at_end.contains(&tp.partition) || self.stopped.contains(&tp.partition)
                };
                if assignment.is_empty() || !assignment.iter().all(done) {
                    return None;
                }
            }
            None if self.at_end.len() + self.stopped.len() < self.partitions => return None,
            None => {}
        }
        if self.stopped.is_empty() {
            return Some(Ok(()));
        }
        let mut stopped: Vec<i32> = self.stopped.iter().copied().collect();
        stopped.sort_unstable();
        Some(Err(Failure::Message(format!(
            "partitions {stopped:?} of {} stopped on errors before their end",
            self.topic
        ))))
    }

    fn flush(&mut self) -> Option<Result<(), Failure>> {
        self.out.flush().err().map(write_failed)
    }
}

/// A closed stdout (`franzy consume ... | head`) ends the command quietly, as SIGPIPE
/// ends kcat; any other write error is a failure.
fn write_failed(error: std::io::Error) -> Result<(), Failure> {
    if error.kind() == ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::Message(format!("cannot write to stdout: {error}")))
    }
}

/// The partition of `topic` that `error` stopped, if it is one that stops a partition until
/// the next seek (see [`franzy::consumer`]): corrupt data, an offset out of range, or a
/// non-retriable broker error for the partition. The error names it as data.
fn stopped_partition(error: &Error, topic: &str) -> Option<i32> {
    let stops = match error {
        Error::CorruptRecord { .. } | Error::OffsetOutOfRange { .. } => true,
        Error::Partition { code, .. } => !code.is_retriable(),
        _ => false,
    };
    let tp = error.partition().filter(|tp| stops && tp.topic == topic)?;
    Some(tp.partition)
}

#[cfg(test)]
mod tests {
    use franzy::proto::ErrorCode;

    use super::*;

    #[test]
    fn offsets_parse_as_kcat_names_them() {
        assert_eq!(parse_offset("beginning"), Ok(Offset::Beginning));
        assert_eq!(parse_offset("end"), Ok(Offset::End));
        assert_eq!(parse_offset("17"), Ok(Offset::At(17)));
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("middle").is_err_and(|e| e.contains("middle")));
    }

    #[test]
    fn errors_that_stop_a_partition_name_it() {
        let corrupt = Error::CorruptRecord {
            partition: TopicPartition::new("orders", 2),
            offset: Some(7),
            broker: Some(1),
            reason: "bad crc".into(),
        };
        assert_eq!(stopped_partition(&corrupt, "orders"), Some(2));
        assert_eq!(stopped_partition(&corrupt, "other"), None);
        let out_of_range = Error::OffsetOutOfRange {
            partition: TopicPartition::new("orders", 0),
            offset: 99,
        };
        assert_eq!(stopped_partition(&out_of_range, "orders"), Some(0));
        let denied = Error::Partition {
            partition: TopicPartition::new("orders", 5),
            code: ErrorCode::TopicAuthorizationFailed,
            message: None,
        };
        assert_eq!(stopped_partition(&denied, "orders"), Some(5));
        // A prefix of another topic's name is not this topic.
        assert_eq!(stopped_partition(&denied, "order"), None);
        let transient = Error::Partition {
            partition: TopicPartition::new("orders", 5),
            code: ErrorCode::NotLeaderOrFollower,
            message: None,
        };
        assert_eq!(stopped_partition(&transient, "orders"), None);
        let disconnected = Error::Disconnected {
            address: "127.0.0.1:9092".into(),
        };
        assert_eq!(stopped_partition(&disconnected, "orders"), None);
    }

    #[test]
    fn the_default_format_is_kcats() {
        use clap::Parser;

        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            args: ConsumeArgs,
        }
        let parse = |argv: &[&str]| {
            let command = Command::try_parse_from(argv).expect("valid arguments");
            output_format(&command.args)
        };
        assert_eq!(
            parse(&["consume", "-t", "t"]).expect("ok"),
            Format::kcat_default(None)
        );
        assert_eq!(
            parse(&["consume", "-t", "t", "-K", "\\t"]).expect("ok"),
            Format::kcat_default(Some(b"\t"))
        );
        // -f wins over -K, as in kcat.
        assert_eq!(
            parse(&["consume", "-t", "t", "-K", ":", "-f", "%s\\n"]).expect("ok"),
            Format::parse("%s\n").expect("ok")
        );
        assert!(parse(&["consume", "-t", "t", "-f", "%y"]).is_err_and(|e| e.contains("%y")));
    }
}
