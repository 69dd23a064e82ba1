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
//! | [`batch`] | `batch_header`, and the `record_batch_<codec>` targets to come |

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
        assert_eq!(again.records, decoded.records, "round trip changed the records");
        assert_eq!(again.last_offset_delta, decoded.last_offset_delta);
    }
}
