//! Helpers shared by the fuzz targets in `fuzz_targets/` and by the seed generator in
//! `examples/gen_seeds.rs`.
//!
//! Each helper turns part of libFuzzer's input into a choice the decoder under test does not
//! see on the wire (how a stream is chunked, which API a response answers, which codec a batch
//! uses) or shapes bytes so that cheap checks a fuzzer cannot guess (the CRC-32C of a batch)
//! pass and the deeper code runs. The encoding of each choice is documented next to it, so that
//! the generator can write seeds in the same layout.
//!
//! | module | used by |
//! |---|---|
//! | [`chunks`] | `frame_decode` |
//! | [`api`] | `response_decode` |
//! | [`batch`] | `batch_header`, and the `record_batch_<codec>` targets |
//! | [`fetcher`] | `fetcher` (and `tests/seeds.rs`, which runs it on every seed) |

pub mod chunks {
    //! How `frame_decode` reads its input.
    //!
    //! ```text
    //! byte 0        bits 0-3: k, the number of chunk-size bytes that follow (0-15)
    //!               bit 4:    tiny maximum: byte 1 (after the k sizes) sets max = byte + 1
    //!                         (1-256 bytes); otherwise max = 64 KiB
    //! bytes 1..=k   chunk sizes, used in turn and cycled; 0 means "all that is left"
    //! [byte]        the tiny maximum, if bit 4 is set
    //! rest          the byte stream fed to the frame decoder
    //! ```

    /// The frame size limit of `frame_decode` unless the input asks for a tiny one.
    pub const DEFAULT_MAX: usize = 64 * 1024;

    /// A byte stream and how to deliver it.
    #[derive(Debug, Clone)]
    pub struct Plan<'a> {
        /// Largest frame the decoder accepts.
        pub max_frame_size: usize,
        /// Chunk sizes, cycled; empty means the whole stream at once.
        pub sizes: Vec<usize>,
        /// The stream itself.
        pub stream: &'a [u8],
    }

    impl<'a> Plan<'a> {
        /// Splits fuzzer input into a plan. Never fails: missing bytes mean defaults.
        pub fn from_input(data: &'a [u8]) -> Self {
            let Some((&control, rest)) = data.split_first() else {
                return Self {
                    max_frame_size: DEFAULT_MAX,
                    sizes: Vec::new(),
                    stream: &[],
                };
            };
            let k = usize::from(control & 0x0f).min(rest.len());
            let (size_bytes, rest) = rest.split_at(k);
            let sizes = size_bytes
                .iter()
                .map(|&b| if b == 0 { usize::MAX } else { usize::from(b) })
                .collect();
            let (max_frame_size, stream) = match (control & 0x10 != 0, rest.split_first()) {
                (true, Some((&max, stream))) => (usize::from(max) + 1, stream),
                _ => (DEFAULT_MAX, rest),
            };
            Self {
                max_frame_size,
                sizes,
                stream,
            }
        }

        /// The stream cut into the planned chunks, in order; they concatenate to the stream.
        pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
            let mut rest = self.stream;
            let mut turn = 0usize;
            std::iter::from_fn(move || {
                if rest.is_empty() {
                    return None;
                }
                let size = if self.sizes.is_empty() {
                    usize::MAX
                } else {
                    self.sizes[turn % self.sizes.len()]
                };
                turn += 1;
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                rest = tail;
                Some(chunk)
            })
        }

        /// Writes the layout above for a stream (the inverse of [`Plan::from_input`]).
        /// `sizes` are clamped to 1..=255, with `usize::MAX` written as 0; `tiny_max` is the
        /// maximum frame size in 1..=256, if any.
        pub fn encode(sizes: &[usize], tiny_max: Option<usize>, stream: &[u8]) -> Vec<u8> {
            let k = sizes.len().min(15);
            let mut out = vec![k as u8 | if tiny_max.is_some() { 0x10 } else { 0 }];
            out.extend(sizes[..k].iter().map(|&s| {
                if s == usize::MAX {
                    0
                } else {
                    s.clamp(1, 255) as u8
                }
            }));
            if let Some(max) = tiny_max {
                out.push((max.clamp(1, 256) - 1) as u8);
            }
            out.extend_from_slice(stream);
            out
        }
    }
}

pub mod api {
    //! How `response_decode` picks the request a response answers: a response does not name
    //! its API or version (the client remembers them by correlation id), so they come from the
    //! fuzzer input, mapped onto valid values so that no run is wasted on a refusal.
    //!
    //! ```text
    //! bytes 0-1   u16 BE, modulo the number of API keys: index into ApiKey::iter()
    //! bytes 2-3   u16 BE, modulo the size of that API's valid_versions(): offset from min
    //! rest        the response frame (header and body, no length prefix)
    //! ```

    use franzy::proto::ApiKey;

    /// Every API key the codec knows, in `ApiKey::iter()` order.
    pub fn keys() -> Vec<ApiKey> {
        ApiKey::iter().collect()
    }

    /// Reads the selector bytes: `(api, version, frame)`, or `None` if fewer than four bytes.
    pub fn select<'a>(keys: &[ApiKey], data: &'a [u8]) -> Option<(ApiKey, i16, &'a [u8])> {
        let (selector, frame) = data.split_at_checked(4)?;
        let key_pick = usize::from(u16::from_be_bytes([selector[0], selector[1]]));
        let api = *keys.get(key_pick % keys.len().max(1))?;
        let range = api.valid_versions();
        let span = i32::from(range.max) - i32::from(range.min) + 1;
        let version_pick = i32::from(u16::from_be_bytes([selector[2], selector[3]]));
        let version = i16::try_from(i32::from(range.min) + version_pick % span.max(1)).ok()?;
        Some((api, version, frame))
    }

    /// The four selector bytes that [`select`] maps to `api` at `version`.
    pub fn selector(keys: &[ApiKey], api: ApiKey, version: i16) -> Option<[u8; 4]> {
        let index = u16::try_from(keys.iter().position(|&k| k == api)?).ok()?;
        let range = api.valid_versions();
        let offset = u16::try_from(version.checked_sub(range.min)?).ok()?;
        let [a, b] = index.to_be_bytes();
        let [c, d] = offset.to_be_bytes();
        Some([a, b, c, d])
    }
}

pub mod batch {
    //! Shaping fuzzer bytes into record batches whose header and CRC-32C are right, so that
    //! the fuzzer spends its time in the code behind those checks instead of on a checksum it
    //! cannot guess.

    use franzy::proto::batch_header::{
        compute_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
    };
    use franzy::proto::compression::Compression;

    /// A decompression limit for `record_batch_<codec>` targets: far above anything a
    /// 4 KiB input should legitimately inflate to, far below libFuzzer's `-malloc_limit_mb`.
    pub const DECOMPRESSED_LIMIT: usize = 16 * 1024 * 1024;

    /// Writes a correct CRC into every batch of `records` that parses and is whole, walking
    /// them as `Batches` does. Returns how many were fixed.
    pub fn fix_crcs(records: &mut [u8]) -> usize {
        let mut at = 0;
        let mut fixed = 0;
        while let Ok(header) = BatchHeader::parse(&records[at..]) {
            let Some(end) = at.checked_add(header.total_len()) else {
                break;
            };
            let Some(batch) = records.get_mut(at..end) else {
                break;
            };
            let crc = compute_crc(batch);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            fixed += 1;
            at = end;
        }
        fixed
    }

    /// Makes `data` one whole batch compressed with `codec` as far as the header can say:
    /// `batchLength` covers exactly the input, magic is 2, attribute bits 0-2 name `codec`
    /// (the other bits stay as the fuzzer chose), and the CRC matches. All the other fields
    /// and the records section stay arbitrary. `None` when `data` is shorter than a header
    /// or longer than an `int32` length can describe.
    ///
    /// A valid batch of that codec comes back unchanged, so seeds are plain batches.
    pub fn shaped(data: &[u8], codec: Compression) -> Option<Vec<u8>> {
        if data.len() < BATCH_HEADER_LEN {
            return None;
        }
        let batch_length = i32::try_from(data.len() - LOG_OVERHEAD).ok()?;
        let mut batch = data.to_vec();
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[16] = MAGIC_V2 as u8;
        batch[22] = (batch[22] & !0x07) | codec.id();
        let crc = compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        Some(batch)
    }

    /// Decodes a shaped batch with the full record decoder and checks what must hold for
    /// any batch it accepts: offsets and timestamps inside the header's bounds, the declared
    /// record count, and a re-encoding that decodes to the same batch.
    pub fn check_record_batch(batch: &[u8]) {
        use bytes::Bytes;
        use franzy::proto::record_batch::{validate, DecodeLimits, RecordBatch, ValidationLevel};

        let limits = DecodeLimits::new(DECOMPRESSED_LIMIT);
        let bytes = Bytes::copy_from_slice(batch);
        let decoded = RecordBatch::decode(&bytes, &limits);
        let validated = validate(batch, ValidationLevel::Records, &limits);
        assert_eq!(
            decoded.is_ok(),
            validated.is_ok(),
            "decode and validate disagree: {:?} vs {:?}",
            decoded.as_ref().err(),
            validated.as_ref().err()
        );
        let Ok(decoded) = decoded else { return };
        let header = BatchHeader::parse(batch).expect("a decoded batch has a header");
        assert_eq!(decoded.records.len(), header.record_count as usize);
        for record in &decoded.records {
            let offset = decoded.record_offset(record);
            assert!(offset >= decoded.base_offset && offset <= decoded.last_offset());
        }
        let encoded = decoded.encode().expect("a decoded batch re-encodes");
        let again = RecordBatch::decode(&encoded, &limits).expect("a re-encoded batch decodes");
        assert_eq!(
            again.records, decoded.records,
            "round trip changed the records"
        );
        assert_eq!(again.last_offset_delta, decoded.last_offset_delta);
    }
}

pub mod fetcher {
    //! The consumer's fetch engine (`franzy::engine::fetcher::Fetcher`) driven by a script:
    //! Fetch and ListOffsets answers built field by field from the input (any offsets,
    //! watermarks, error codes and `records` bytes), failures, seeks, pauses, time passing,
    //! and draining `poll_event` as a user would. [`run`] panics when an invariant breaks.
    //!
    //! ```text
    //! byte 0   settings: bit 0 read_committed; bit 1 enable.partition.eof;
    //!          bits 2-3 auto.offset.reset (0 earliest, 1 latest, 2-3 none);
    //!          bits 4-5 partitions assigned - 1 (t/0..t/3; even ones led by broker 0,
    //!          odd ones by broker 1); bit 6 seek each to offset 0 first
    //! then steps, each an op byte (op % 9) and its operands, until the input ends:
    //!  0 FETCH            answer the oldest fetch in flight (planning new ones first): version (4 + b % 15), top-level
    //!                     error, count (b % 5), then per partition: partition (b % 5; 4 is
    //!                     never assigned), error, high watermark i64, last stable offset
    //!                     i64, log start offset i64, flags (bit 0: fix the CRCs of whole
    //!                     batches), records length u16, records
    //!  1 FETCH_FAILURE    fail the oldest fetch in flight; error kind
    //!  2 LIST_OFFSETS     answer the oldest lookup in flight: count (b % 5), then per
    //!                     partition: partition, error, offset i64, timestamp i64
    //!  3 LOOKUP_FAILURE   fail the oldest lookup in flight; error kind
    //!  4 DRAIN            take up to 4 * b events (0: all)
    //!  5 DECODE_AHEAD     what the driver does after an answer, outside the lock
    //!  6 TIME             advance the clock by a u16 of milliseconds
    //!  7 SEEK             partition, kind (b % 4: offset, beginning, end, timestamp), i64
    //!  8 CONTROL          b % 6: pause, resume, metadata failure, metadata answer,
    //!                     assign fewer, assign all (partition in the next byte for 0-1)
    //! ```
    //!
    //! Error bytes pick from [`ERRORS`] (`b % 10`); integers are big-endian. Checked after
    //! every step: `poll_timeout` is never in the past (no busy loop), planned fetch offsets
    //! are not negative, and requests build at every version. Checked for every event: a
    //! partition's records come in increasing offset order from its position on, the
    //! position passes each record, offsets are not negative, and at most one outage per
    //! peer (brokers 0 and 1, and "any broker") is pending.

    use std::collections::{HashMap, HashSet, VecDeque};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use franzy::config::{IsolationLevel, OffsetReset};
    use franzy::engine::fetcher::{decode_ahead, Fetcher, FetcherConfig};
    use franzy::engine::metadata::Metadata;
    use franzy::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use franzy::kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use franzy::kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use franzy::kafka_protocol::messages::{
        BrokerId, FetchResponse, ListOffsetsResponse, MetadataResponse, TopicName,
    };
    use franzy::kafka_protocol::protocol::StrBytes;
    use franzy::proto::record_batch::DecodeLimits;
    use franzy::{Config, ConsumerEvent, Error, Offset, TopicPartition};

    /// The topic every script reads.
    pub const TOPIC: &str = "t";
    /// Its id, in the metadata and in Fetch v13+ answers.
    pub const TOPIC_ID: u128 = 0x7a;
    /// Partitions of [`TOPIC`].
    pub const PARTITIONS: i32 = 4;
    /// Decompressed bytes per batch: small, so that a few KiB of input cannot become
    /// millions of records.
    pub const DECOMPRESSED_LIMIT: usize = 256 * 1024;
    /// Most events a script may produce; more means `poll_event` does not end.
    const MAX_EVENTS: usize = 1_000_000;

    /// Error codes an error byte picks from (`b % 10`); `None` is no error, and the last
    /// entry is a code Kafka does not define.
    pub const ERRORS: [Option<i16>; 10] = [
        None,
        Some(1),    // OFFSET_OUT_OF_RANGE
        Some(6),    // NOT_LEADER_OR_FOLLOWER
        Some(74),   // FENCED_LEADER_EPOCH
        Some(75),   // UNKNOWN_LEADER_EPOCH
        Some(3),    // UNKNOWN_TOPIC_OR_PARTITION
        Some(2),    // CORRUPT_MESSAGE
        Some(29),   // TOPIC_AUTHORIZATION_FAILED
        Some(56),   // KAFKA_STORAGE_ERROR
        Some(9999), // unknown
    ];

    /// Operations, in op-byte order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Op {
        /// Answer the first planned fetch.
        Fetch = 0,
        /// Fail the first planned fetch.
        FetchFailure = 1,
        /// Answer the first planned lookup.
        ListOffsets = 2,
        /// Fail the first planned lookup.
        LookupFailure = 3,
        /// Take events.
        Drain = 4,
        /// Decode buffered batches ahead.
        DecodeAhead = 5,
        /// Let time pass.
        Time = 6,
        /// Seek a partition.
        Seek = 7,
        /// Pause, resume, metadata outcome, reassignment.
        Control = 8,
    }

    /// One partition of a scripted Fetch answer.
    #[derive(Debug, Clone)]
    pub struct FetchedPartition {
        /// Partition index (`% 5`).
        pub partition: u8,
        /// Error byte.
        pub error: u8,
        /// High watermark.
        pub high_watermark: i64,
        /// Last stable offset.
        pub last_stable_offset: i64,
        /// Log start offset.
        pub log_start_offset: i64,
        /// Fix the CRCs of whole batches in `records`.
        pub fix_crcs: bool,
        /// The `records` field (at most 65535 bytes).
        pub records: Vec<u8>,
    }

    /// Writes scripts in the layout above (for the seed generator).
    #[derive(Debug, Clone)]
    pub struct Script(Vec<u8>);

    impl Script {
        /// A script starting with the settings byte.
        pub fn new(settings: u8) -> Self {
            Self(vec![settings])
        }

        /// The bytes.
        pub fn into_bytes(self) -> Vec<u8> {
            self.0
        }

        fn op(mut self, op: Op, operands: &[u8]) -> Self {
            self.0.push(op as u8);
            self.0.extend_from_slice(operands);
            self
        }

        /// Answers the first planned fetch.
        pub fn fetch(self, version: i16, error: u8, partitions: &[FetchedPartition]) -> Self {
            let mut out = vec![
                u8::try_from(version - 4).unwrap_or(0),
                error,
                u8::try_from(partitions.len()).unwrap_or(0),
            ];
            for p in partitions {
                out.push(p.partition);
                out.push(p.error);
                out.extend(p.high_watermark.to_be_bytes());
                out.extend(p.last_stable_offset.to_be_bytes());
                out.extend(p.log_start_offset.to_be_bytes());
                out.push(u8::from(p.fix_crcs));
                let len = u16::try_from(p.records.len()).unwrap_or(u16::MAX);
                out.extend(len.to_be_bytes());
                out.extend(&p.records[..usize::from(len)]);
            }
            self.op(Op::Fetch, &out)
        }

        /// Fails the first planned fetch with error kind `kind`.
        pub fn fetch_failure(self, kind: u8) -> Self {
            self.op(Op::FetchFailure, &[kind])
        }

        /// Answers the first planned lookup: (partition, error, offset, timestamp).
        pub fn list_offsets(self, partitions: &[(u8, u8, i64, i64)]) -> Self {
            let mut out = vec![u8::try_from(partitions.len()).unwrap_or(0)];
            for (partition, error, offset, timestamp) in partitions {
                out.push(*partition);
                out.push(*error);
                out.extend(offset.to_be_bytes());
                out.extend(timestamp.to_be_bytes());
            }
            self.op(Op::ListOffsets, &out)
        }

        /// Fails the first planned lookup.
        pub fn lookup_failure(self, kind: u8) -> Self {
            self.op(Op::LookupFailure, &[kind])
        }

        /// Takes up to `4 * limit` events (0: all).
        pub fn drain(self, limit: u8) -> Self {
            self.op(Op::Drain, &[limit])
        }

        /// Decodes buffered batches ahead.
        pub fn decode_ahead(self) -> Self {
            self.op(Op::DecodeAhead, &[])
        }

        /// Lets `millis` pass.
        pub fn time(self, millis: u16) -> Self {
            self.op(Op::Time, &millis.to_be_bytes())
        }

        /// Seeks `partition`: kind 0 to `value`, 1 beginning, 2 end, 3 timestamp `value`.
        pub fn seek(self, partition: u8, kind: u8, value: i64) -> Self {
            let mut out = vec![partition, kind];
            out.extend(value.to_be_bytes());
            self.op(Op::Seek, &out)
        }

        /// A control step (see the layout); `partition` is read for pause and resume only.
        pub fn control(self, what: u8, partition: u8) -> Self {
            if what % 6 < 2 {
                self.op(Op::Control, &[what, partition])
            } else {
                self.op(Op::Control, &[what])
            }
        }
    }

    /// What a run did, for checking that seeds reach the paths they are meant for.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Outcome {
        /// Records handed out.
        pub records: usize,
        /// Partition errors handed out (corrupt data, out of range, broker codes).
        pub partition_errors: usize,
        /// Corrupt data errors among them.
        pub corrupt: usize,
        /// Outage errors handed out.
        pub outages: usize,
        /// Fetch answers applied.
        pub fetch_answers: usize,
    }

    struct Reader<'a> {
        data: &'a [u8],
    }

    impl Reader<'_> {
        fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.data.split_first()?;
            self.data = rest;
            Some(b)
        }

        fn take(&mut self, n: usize) -> Option<&[u8]> {
            let (taken, rest) = self.data.split_at_checked(n)?;
            self.data = rest;
            Some(taken)
        }

        fn u16(&mut self) -> Option<u16> {
            let b = self.take(2)?;
            Some(u16::from_be_bytes([b[0], b[1]]))
        }

        fn i64(&mut self) -> Option<i64> {
            let b = self.take(8)?;
            let mut x = [0u8; 8];
            x.copy_from_slice(b);
            Some(i64::from_be_bytes(x))
        }
    }

    fn error_code(b: u8) -> i16 {
        ERRORS[usize::from(b) % ERRORS.len()].unwrap_or(0)
    }

    fn failure(kind: u8) -> Error {
        match kind % 3 {
            0 => Error::Disconnected {
                address: "b:9092".into(),
            },
            1 => Error::RequestTimeout(Duration::from_secs(30)),
            _ => Error::Protocol {
                peer: "b:9092".into(),
                reason: "response out of order".into(),
            },
        }
    }

    /// Metadata in which t/p is led by broker `p % 2`, epoch 5.
    pub fn metadata(now: Instant) -> Metadata {
        let brokers = (0..2)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("localhost"))
                    .with_port(9092 + id)
            })
            .collect();
        let partitions = (0..PARTITIONS)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(p % 2))
                    .with_leader_epoch(5)
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
            .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
            .with_partitions(partitions);
        let response = MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(vec![topic]);
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(&response, now);
        md
    }

    /// The state [`run`] keeps: requests in flight, and what checks the order of events.
    struct Checker {
        assigned: Vec<TopicPartition>,
        events: usize,
        outcome: Outcome,
        fetches: VecDeque<u64>,
        lookups: VecDeque<u64>,
    }

    impl Checker {
        fn drain(&mut self, f: &mut Fetcher, limit: usize) {
            // Outages are queued only by answers and failures, never while draining: one
            // per peer at most.
            let mut outages_pending: HashSet<String> = HashSet::new();
            let mut taken = 0;
            loop {
                if limit != 0 && taken >= limit {
                    return;
                }
                let before: HashMap<i32, Option<i64>> = self
                    .assigned
                    .iter()
                    .map(|tp| (tp.partition, f.position(tp)))
                    .collect();
                let Some(event) = f.poll_event() else {
                    return;
                };
                taken += 1;
                self.events += 1;
                assert!(self.events <= MAX_EVENTS, "poll_event does not end");
                match event {
                    Ok(ConsumerEvent::Record(r)) => {
                        self.outcome.records += 1;
                        assert_eq!(&*r.topic, TOPIC);
                        let tp = TopicPartition::new(TOPIC, r.partition);
                        assert!(self.assigned.contains(&tp), "a record of {tp}");
                        assert!(r.offset >= 0, "negative offset {}", r.offset);
                        if let Some(Some(position)) = before.get(&r.partition) {
                            assert!(
                                r.offset >= *position,
                                "record {} of {tp} before its position {position}",
                                r.offset
                            );
                        }
                        let after = f.position(&tp).expect("a position after a record");
                        assert!(
                            after > r.offset,
                            "position {after} after record {}",
                            r.offset
                        );
                    }
                    Ok(ConsumerEvent::PartitionEof { partition: tp, .. }) => {
                        assert!(self.assigned.contains(&tp), "end of {tp}");
                    }
                    Ok(other) => panic!("an event the fuzz target does not know: {other:?}"),
                    Err(Error::BrokerUnreachable { broker, .. }) => {
                        self.outcome.outages += 1;
                        assert!(
                            outages_pending.insert(format!("broker {broker}")),
                            "two outages of broker {broker} in one go"
                        );
                    }
                    Err(Error::AllBrokersDown { .. }) => {
                        self.outcome.outages += 1;
                        assert!(outages_pending.insert("any".into()), "two AllBrokersDown");
                    }
                    Err(error) => {
                        self.outcome.partition_errors += 1;
                        if matches!(error, Error::CorruptRecord { .. }) {
                            self.outcome.corrupt += 1;
                        }
                        assert!(!error.is_fatal(), "{error}");
                    }
                }
            }
        }
    }

    /// Runs a script (see the module documentation), panicking if an invariant breaks.
    pub fn run(data: &[u8]) -> Outcome {
        let mut input = Reader { data };
        let Some(settings) = input.byte() else {
            return Outcome::default();
        };
        let mut config = FetcherConfig::from_config(&Config::new("localhost:9092"));
        if settings & 1 != 0 {
            config.isolation_level = IsolationLevel::ReadCommitted;
        }
        config.partition_eof = settings & 2 != 0;
        config.auto_offset_reset = match (settings >> 2) & 3 {
            0 => OffsetReset::Earliest,
            1 => OffsetReset::Latest,
            _ => OffsetReset::None,
        };
        config.decode_limits = DecodeLimits::new(DECOMPRESSED_LIMIT);
        let all: Vec<TopicPartition> = (0..=i32::from((settings >> 4) & 3))
            .map(|p| TopicPartition::new(TOPIC, p))
            .collect();
        let start = Instant::now();
        let mut now = start;
        let md = metadata(now);
        let mut f = Fetcher::new(config, 0x5eed);
        f.assign(&all);
        if settings & 0x40 != 0 {
            for tp in &all {
                f.seek(tp, Offset::At(0)).expect("assigned");
            }
        }
        let mut checker = Checker {
            assigned: all.clone(),
            events: 0,
            outcome: Outcome::default(),
            fetches: VecDeque::new(),
            lookups: VecDeque::new(),
        };
        while let Some(op) = input.byte() {
            if step(op, &mut input, &mut f, &md, &mut now, &mut checker, &all).is_none() {
                break;
            }
            if let Some(at) = f.poll_timeout(now, &md) {
                assert!(at > now, "a deadline in the past: a busy loop");
            }
        }
        decode_ahead_step(&mut f);
        checker.drain(&mut f, 0);
        checker.outcome
    }

    fn decode_ahead_step(f: &mut Fetcher) {
        let raw = f.take_undecoded();
        let decoded = decode_ahead(raw, &f.decode_limits());
        f.handle_decoded(decoded);
    }

    fn step(
        op: u8,
        input: &mut Reader<'_>,
        f: &mut Fetcher,
        md: &Metadata,
        now: &mut Instant,
        checker: &mut Checker,
        all: &[TopicPartition],
    ) -> Option<()> {
        match op % 9 {
            0 => {
                let version = 4 + i16::from(input.byte()? % 15);
                let top = error_code(input.byte()?);
                let count = input.byte()? % 5;
                let mut partitions = Vec::new();
                for _ in 0..count {
                    let partition = i32::from(input.byte()? % 5);
                    let error = error_code(input.byte()?);
                    let high_watermark = input.i64()?;
                    let last_stable_offset = input.i64()?;
                    let log_start_offset = input.i64()?;
                    let flags = input.byte()?;
                    let len = usize::from(input.u16()?);
                    let mut records = input.take(len)?.to_vec();
                    if flags & 1 != 0 {
                        crate::batch::fix_crcs(&mut records);
                    }
                    partitions.push(
                        PartitionData::default()
                            .with_partition_index(partition)
                            .with_error_code(error)
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(last_stable_offset)
                            .with_log_start_offset(log_start_offset)
                            .with_records(Some(Bytes::from(records))),
                    );
                }
                let plan = next_fetch(f, md, *now, version, &mut checker.fetches)?;
                let response = FetchResponse::default()
                    .with_error_code(top)
                    .with_responses(vec![FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
                        .with_partitions(partitions)]);
                f.handle_fetch_response(plan, version, response, *now);
                checker.outcome.fetch_answers += 1;
            }
            1 => {
                let kind = input.byte()?;
                if let Some(plan) = next_fetch(f, md, *now, 18, &mut checker.fetches) {
                    f.handle_fetch_failure(plan, &failure(kind), *now);
                }
            }
            2 => {
                let count = input.byte()? % 5;
                let mut partitions = Vec::new();
                for _ in 0..count {
                    let partition = i32::from(input.byte()? % 5);
                    let error = error_code(input.byte()?);
                    let offset = input.i64()?;
                    let timestamp = input.i64()?;
                    partitions.push(
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(partition)
                            .with_error_code(error)
                            .with_offset(offset)
                            .with_timestamp(timestamp),
                    );
                }
                if let Some(plan) = next_lookup(f, md, *now, &mut checker.lookups) {
                    let response = ListOffsetsResponse::default().with_topics(vec![
                        ListOffsetsTopicResponse::default()
                            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(partitions),
                    ]);
                    f.handle_list_offsets_response(plan, &response, *now);
                }
            }
            3 => {
                let kind = input.byte()?;
                if let Some(plan) = next_lookup(f, md, *now, &mut checker.lookups) {
                    f.handle_list_offsets_failure(plan, &failure(kind), *now);
                }
            }
            4 => {
                let limit = usize::from(input.byte()?) * 4;
                checker.drain(f, limit);
            }
            5 => decode_ahead_step(f),
            6 => {
                let millis = input.u16()?;
                *now += Duration::from_millis(u64::from(millis));
            }
            7 => {
                let partition = i32::from(input.byte()? % 5);
                let kind = input.byte()?;
                let value = input.i64()?;
                let offset = match kind % 4 {
                    0 => Offset::At(value),
                    1 => Offset::Beginning,
                    2 => Offset::End,
                    _ => Offset::Timestamp(value),
                };
                let tp = TopicPartition::new(TOPIC, partition);
                let result = f.seek(&tp, offset);
                let valid = !matches!(offset, Offset::At(at) if at < 0);
                assert_eq!(
                    result.is_ok(),
                    checker.assigned.contains(&tp) && valid,
                    "seek {tp} {offset:?}: {result:?}"
                );
            }
            _ => {
                let what = input.byte()? % 6;
                match what {
                    0 | 1 => {
                        let tp = TopicPartition::new(TOPIC, i32::from(input.byte()? % 5));
                        let tps = std::slice::from_ref(&tp);
                        let result = if what == 0 {
                            f.pause(tps)
                        } else {
                            f.resume(tps)
                        };
                        assert_eq!(result.is_ok(), checker.assigned.contains(&tp));
                    }
                    2 => {
                        let error = failure(0);
                        let _ = f.handle_metadata_failure(&error, *now, *now, md);
                    }
                    3 => {
                        let _ = f.handle_metadata_response(*now, md);
                    }
                    4 => {
                        checker.assigned = all.iter().step_by(2).cloned().collect();
                        f.assign(&checker.assigned);
                    }
                    _ => {
                        checker.assigned = all.to_vec();
                        f.assign(all);
                    }
                }
            }
        }
        Some(())
    }

    /// Plans fetches (checking them and building each at `version`) and returns the oldest
    /// one in flight.
    fn next_fetch(
        f: &mut Fetcher,
        md: &Metadata,
        now: Instant,
        version: i16,
        in_flight: &mut VecDeque<u64>,
    ) -> Option<u64> {
        for plan in f.poll_fetches(now, md) {
            for (tp, offset) in plan.partitions() {
                assert!(offset >= 0, "fetching {tp} at {offset}");
            }
            let _ = plan.request(version);
            in_flight.push_back(plan.id());
        }
        assert!(
            in_flight.len() <= 2,
            "more than one fetch per broker in flight"
        );
        in_flight.pop_front()
    }

    /// Plans lookups (building each) and returns the oldest one in flight.
    fn next_lookup(
        f: &mut Fetcher,
        md: &Metadata,
        now: Instant,
        in_flight: &mut VecDeque<u64>,
    ) -> Option<u64> {
        for plan in f.poll_list_offsets(now, md) {
            let _ = plan.request(10);
            in_flight.push_back(plan.id());
        }
        assert!(
            in_flight.len() <= 2,
            "more than one lookup per broker in flight"
        );
        in_flight.pop_front()
    }
}
