//! Compression codecs of record batches (attributes bits 0-2). Everything after the 61-byte
//! batch header is compressed as one block (protocol guide, "Record Batch").
//!
//! | codec | id | format on the wire | spec |
//! |---|---|---|---|
//! | gzip | 1 | one or more gzip members (RFC 1952) | protocol guide, "Compression" |
//! | snappy | 2 | xerial snappy-java framing around raw snappy blocks; raw snappy also read | snappy-java `SnappyOutputStream` |
//! | lz4 | 3 | LZ4 frame format, independent 64 KiB blocks | KIP-57 |
//! | zstd | 4 | one or more Zstandard frames (RFC 8878) | KIP-110 |
//!
//! The xerial framing, as snappy-java writes it and Kafka's Java client reads it:
//!
//! ```text
//! 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00    magic, 8 bytes
//! int32 version = 1                    big-endian
//! int32 min compatible version = 1     big-endian
//! { int32 length, length bytes of raw snappy }*   each block compresses <= 32 KiB of input
//! ```
//!
//! All codecs are pure Rust (flate2's miniz_oxide backend, snap, lz4_flex, ruzstd): the
//! default build contains no C.
//!
//! [`decompress`] never trusts the input to be small when inflated: every codec streams into
//! a buffer that stops at `max_output` bytes and fails as soon as one more byte would be
//! produced, so a decompression bomb costs at most about `max_output` bytes of memory (the
//! output `Vec` grows by doubling, so its capacity may reach twice what it holds). Snappy
//! announces each block's length up front; that length is checked against the budget before
//! any buffer is sized by it. Zstandard frames announce a window that the decoder reserves;
//! see [`decompress`] for how that reservation is bounded by `max_output` too.

use std::io::Read;

use bytes::Bytes;

use super::error::BatchError;

/// The compression codec of a record batch, by its id in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (id 0).
    #[default]
    None,
    /// gzip (id 1).
    Gzip,
    /// Snappy in the xerial framing that the Java client writes (id 2).
    Snappy,
    /// LZ4 frame format (id 3).
    Lz4,
    /// Zstandard (id 4).
    Zstd,
}

impl Compression {
    /// The codec with attribute id `id`, or `None` for ids 5-7.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The attribute id of this codec.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// The magic bytes that open a xerial snappy-java stream.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version and minimum compatible version.
const XERIAL_HEADER_LEN: usize = 16;
/// The framing version snappy-java writes, and the oldest reader it declares compatible.
const XERIAL_VERSION: i32 = 1;
/// Uncompressed bytes per xerial block: snappy-java's default block size.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// Zstandard frame magic number 0xFD2FB528, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Largest Zstandard block; a window is never usefully smaller for decoding.
const ZSTD_MAX_BLOCK_SIZE: u64 = 128 * 1024;

/// Compresses `input` (the records section of a batch) with `codec`. [`Compression::None`]
/// returns a copy.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    compress_into(codec, input, &mut out)?;
    Ok(out)
}

/// Compresses `input` with `codec`, appending to `out`.
///
/// gzip uses the default level (6, as Java's `GZIPOutputStream`), snappy the xerial framing
/// with 32 KiB blocks, lz4 a frame of independent 64 KiB blocks without checksums beyond the
/// header's, zstd ruzstd's fastest level (about libzstd level 1).
pub fn compress_into(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    use std::io::Write;
    let failed = |e: std::io::Error| BatchError::Compression(format!("{}: {e}", codec.name()));
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(input).map_err(failed)?;
            encoder.finish().map_err(failed)?;
        }
        Compression::Snappy => xerial_compress(input, out)?,
        Compression::Lz4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent);
            let mut encoder = FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input).map_err(failed)?;
            encoder
                .finish()
                .map_err(|e| BatchError::Compression(format!("lz4: {e}")))?;
        }
        Compression::Zstd => {
            ruzstd::encoding::compress(input, out, ruzstd::encoding::CompressionLevel::Fastest);
        }
    }
    Ok(())
}

/// Decompresses `input` with `codec`, failing with [`BatchError::DecompressionLimit`] as
/// soon as the output would exceed `max_output` bytes.
///
/// Memory stays within about twice `max_output` whatever the input claims. Each codec
/// accepts what Kafka clients write:
///
/// - gzip: one or more concatenated members.
/// - snappy: the xerial framing (several concatenated streams too), or, when the input does
///   not start with [`XERIAL_MAGIC`], one raw snappy block, as librdkafka falls back to.
/// - lz4: one or more LZ4 frames.
/// - zstd: one or more frames, skippable frames skipped. A frame declares a window size that
///   the decoder reserves up front, and Java producers at high levels declare up to 128 MiB
///   for small batches. Since no back-reference can reach further than the output so far,
///   a declared window larger than `max_output` (and than one 128 KiB block) is lowered to
///   that bound before decoding, so the reservation follows the caller's limit instead of
///   the peer's claim. Windows are refused beyond 128 MiB, libzstd's default limit.
/// - none: a copy, if it fits.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output: usize,
) -> Result<Bytes, BatchError> {
    let mut out = Vec::new();
    match codec {
        Compression::None => {
            if input.len() > max_output {
                return Err(BatchError::DecompressionLimit { limit: max_output });
            }
            out.extend_from_slice(input);
        }
        Compression::Gzip => read_limited(
            codec,
            flate2::read::MultiGzDecoder::new(input),
            max_output,
            &mut out,
        )?,
        Compression::Snappy => snappy_decompress(input, max_output, &mut out)?,
        Compression::Lz4 => read_limited(
            codec,
            lz4_flex::frame::FrameDecoder::new(input),
            max_output,
            &mut out,
        )?,
        Compression::Zstd => zstd_decompress(input, max_output, &mut out)?,
    }
    Ok(Bytes::from(out))
}

fn decompression_error(codec: Compression, why: impl std::fmt::Display) -> BatchError {
    BatchError::Decompression(format!("{}: {why}", codec.name()))
}

/// Reads `reader` to its end into `out`, failing once `out` would hold more than
/// `max_output` bytes. The reader is never asked for more than one byte past the limit.
fn read_limited(
    codec: Compression,
    reader: impl Read,
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let budget = max_output.saturating_sub(out.len()) as u64;
    reader
        .take(budget.saturating_add(1))
        .read_to_end(out)
        .map_err(|e| decompression_error(codec, e))?;
    if out.len() > max_output {
        return Err(BatchError::DecompressionLimit { limit: max_output });
    }
    Ok(())
}

fn xerial_compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let block_at = out.len();
        out.resize(block_at + snap::raw::max_compress_len(chunk.len()), 0);
        let written = encoder
            .compress(chunk, &mut out[block_at..])
            .map_err(|e| BatchError::Compression(format!("snappy: {e}")))?;
        out.truncate(block_at + written);
        // A 32 KiB chunk compresses to well under 2 GiB.
        let length = i32::try_from(written).expect("invariant: snappy block of 32 KiB input");
        out[length_at..block_at].copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}

fn snappy_decompress(input: &[u8], max_output: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    if !input.starts_with(&XERIAL_MAGIC) {
        return snappy_block(input, max_output, out);
    }
    let mut rest = input;
    while !rest.is_empty() {
        // snappy-java reads concatenated streams, each with its own header, as one.
        if rest.starts_with(&XERIAL_MAGIC) {
            rest = rest.get(XERIAL_HEADER_LEN..).ok_or_else(|| {
                decompression_error(Compression::Snappy, "truncated xerial header")
            })?;
            continue;
        }
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(decompression_error(
                Compression::Snappy,
                format!("truncated xerial block length ({} bytes)", rest.len()),
            ));
        };
        let length = i32::from_be_bytes(*length);
        let block = usize::try_from(length)
            .ok()
            .and_then(|length| tail.get(..length))
            .ok_or_else(|| {
                decompression_error(
                    Compression::Snappy,
                    format!(
                        "xerial block length {length} with {} bytes remaining",
                        tail.len()
                    ),
                )
            })?;
        snappy_block(block, max_output, out)?;
        rest = &tail[block.len()..];
    }
    Ok(())
}

/// Appends one raw snappy block to `out`. The block announces its uncompressed length; that
/// length is checked against the budget before the output grows by it.
fn snappy_block(block: &[u8], max_output: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let failed = |e: snap::Error| decompression_error(Compression::Snappy, e);
    let length = snap::raw::decompress_len(block).map_err(failed)?;
    let start = out.len();
    let end = start
        .checked_add(length)
        .filter(|&end| end <= max_output)
        .ok_or(BatchError::DecompressionLimit { limit: max_output })?;
    out.resize(end, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(failed)?;
    out.truncate(start + written);
    Ok(())
}

fn zstd_decompress(input: &[u8], max_output: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    use ruzstd::decoding::{FrameDecoder, StreamingDecoder, DEFAULT_MAX_WINDOW_SIZE};

    let codec = Compression::Zstd;
    let window_cap = zstd_window_cap(max_output);
    let max_window = window_cap.map_or(DEFAULT_MAX_WINDOW_SIZE, zstd_window_size);
    let mut rest = input;
    while !rest.is_empty() {
        let mut patched_header = [0u8; 6];
        let patched = match window_cap {
            Some(cap) => zstd_lower_window(rest, cap, &mut patched_header),
            None => 0,
        };
        let mut source = (&patched_header[..patched]).chain(&rest[patched..]);
        let mut frame = FrameDecoder::new();
        frame.set_max_window_size(max_window);
        let skip = match StreamingDecoder::new_with_decoder(&mut source, frame) {
            Ok(mut decoder) => {
                read_limited(codec, &mut decoder, max_output, out)?;
                let stored = decoder.decoder.get_checksum_from_data();
                let computed = decoder.decoder.get_calculated_checksum();
                if let (Some(stored), Some(computed)) = (stored, computed) {
                    if stored != computed {
                        return Err(decompression_error(codec, "content checksum mismatch"));
                    }
                }
                0
            }
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => length as usize,
            Err(FrameDecoderError::WindowSizeTooBig { .. }) if window_cap.is_some() => {
                // Only a frame whose content alone exceeds the limit gets here: larger
                // windows were lowered above.
                return Err(BatchError::DecompressionLimit { limit: max_output });
            }
            Err(e) => return Err(decompression_error(codec, e)),
        };
        let (_, after) = source.into_inner();
        rest = after
            .get(skip..)
            .ok_or_else(|| decompression_error(codec, "truncated skippable frame"))?;
    }
    Ok(())
}

/// Window size of a Zstandard window descriptor (RFC 8878, "Window_Descriptor").
fn zstd_window_size(descriptor: u8) -> u64 {
    let base = 1u64 << (10 + u32::from(descriptor >> 3));
    base + (base / 8) * u64::from(descriptor & 0x7)
}

/// The smallest window descriptor that covers `max_output` bytes of history and one full
/// block, or `None` when that is beyond 128 MiB (then the declared windows are kept and
/// bounded by ruzstd's default limit).
fn zstd_window_cap(max_output: usize) -> Option<u8> {
    let needed = (max_output as u64).max(ZSTD_MAX_BLOCK_SIZE);
    (0..=u8::MAX)
        .find(|&descriptor| zstd_window_size(descriptor) >= needed)
        .filter(|&descriptor| {
            zstd_window_size(descriptor) <= ruzstd::decoding::DEFAULT_MAX_WINDOW_SIZE
        })
}

/// If `frame` starts a Zstandard frame whose window descriptor declares more than `cap`,
/// copies magic, frame header descriptor and a lowered window descriptor into `header`
/// and returns 6, the bytes of `frame` they replace; otherwise returns 0.
fn zstd_lower_window(frame: &[u8], cap: u8, header: &mut [u8; 6]) -> usize {
    const SINGLE_SEGMENT: u8 = 1 << 5;
    match frame.get(..6) {
        Some(start)
            if start[..4] == ZSTD_MAGIC
                && start[4] & SINGLE_SEGMENT == 0
                && zstd_window_size(start[5]) > zstd_window_size(cap) =>
        {
            header.copy_from_slice(start);
            header[5] = cap;
            6
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const MIB: usize = 1024 * 1024;

    fn is_limit(result: Result<Bytes, BatchError>, limit: usize) -> bool {
        matches!(result, Err(BatchError::DecompressionLimit { limit: l }) if l == limit)
    }

    #[test]
    fn ids_and_names() {
        for codec in ALL {
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
        }
        assert_eq!(Compression::from_id(5), None);
        assert_eq!(Compression::Zstd.name(), "zstd");
    }

    #[test]
    fn every_codec_round_trips_empty_small_and_multi_block_inputs() {
        // 100 KiB crosses snappy's 32 KiB and lz4's 64 KiB block boundaries.
        let mixed: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 7 / 3) as u8).collect();
        // 300 KiB that does not compress: several zstd blocks stored raw.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..300 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        for codec in ALL {
            for input in [&b""[..], b"a", b"hello hello hello hello", &mixed, &noise] {
                let packed = compress(codec, input).expect("compresses");
                let unpacked = decompress(codec, &packed, input.len()).expect("decompresses");
                assert_eq!(&unpacked[..], input, "{codec:?}, {} bytes", input.len());
            }
        }
    }

    #[test]
    fn the_limit_is_inclusive() {
        let input = vec![7u8; 5000];
        for codec in ALL {
            let packed = compress(codec, &input).expect("compresses");
            assert!(decompress(codec, &packed, 5000).is_ok(), "{codec:?}");
            assert!(
                is_limit(decompress(codec, &packed, 4999), 4999),
                "{codec:?}"
            );
        }
    }

    /// A xerial stream built by hand from the format description: magic, version 1,
    /// compatible version 1, then two blocks of raw snappy (RFC-less, see the snappy
    /// format_description.txt): block 1 is the literal "hello"; block 2 is the literal
    /// "abc" followed by a copy of 6 bytes from offset 3, giving "abcabcabc".
    #[test]
    fn reads_a_hand_built_xerial_stream() {
        let mut stream = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0x00];
        stream.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        // Uncompressed length 5, literal tag (5 - 1) << 2, then the bytes.
        let hello = [0x05, 0x10, b'h', b'e', b'l', b'l', b'o'];
        stream.extend((hello.len() as i32).to_be_bytes());
        stream.extend(hello);
        // Length 9; literal of 3: (3 - 1) << 2; copy with 1-byte offset: tag 0b01,
        // (length - 4) << 2, offset bits 8-10 in bits 5-7, then offset bits 0-7.
        let abc = [0x09, 0x08, b'a', b'b', b'c', (6 - 4) << 2 | 0b01, 0x03];
        stream.extend((abc.len() as i32).to_be_bytes());
        stream.extend(abc);
        let out = decompress(Compression::Snappy, &stream, 100).expect("valid xerial stream");
        assert_eq!(&out[..], b"helloabcabcabc");

        // The same blocks without framing are raw snappy, which is read too.
        let out = decompress(Compression::Snappy, &abc, 100).expect("valid raw snappy");
        assert_eq!(&out[..], b"abcabcabc");

        // Two concatenated streams read as one, as snappy-java does.
        let mut twice = stream.clone();
        twice.extend(&stream);
        let out = decompress(Compression::Snappy, &twice, 100).expect("concatenated streams");
        assert_eq!(&out[..], b"helloabcabcabchelloabcabcabc");
    }

    #[test]
    fn writes_xerial_framing_with_32_kib_blocks() {
        let input = vec![b'x'; 100 * 1024];
        let packed = compress(Compression::Snappy, &input).expect("compresses");
        assert_eq!(packed[..8], XERIAL_MAGIC);
        assert_eq!(packed[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let mut rest = &packed[16..];
        let mut blocks = Vec::new();
        while let Some((length, tail)) = rest.split_first_chunk::<4>() {
            let length = usize::try_from(i32::from_be_bytes(*length)).expect("positive");
            let block = &tail[..length];
            blocks.push(snap::raw::decompress_len(block).expect("raw snappy block"));
            rest = &tail[length..];
        }
        assert!(rest.is_empty());
        assert_eq!(blocks, [32 * 1024, 32 * 1024, 32 * 1024, 4 * 1024]);
    }

    #[test]
    fn hostile_snappy_lengths_are_errors() {
        let mut header = XERIAL_MAGIC.to_vec();
        header.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        for length in [i32::MAX, -1, i32::MIN, 8] {
            let mut stream = header.clone();
            stream.extend(length.to_be_bytes());
            stream.extend([0x05, 0x10, b'h']);
            assert!(
                matches!(
                    decompress(Compression::Snappy, &stream, MIB),
                    Err(BatchError::Decompression(_))
                ),
                "block length {length}"
            );
        }
        // A length field cut short, and a header cut short.
        let mut stream = header.clone();
        stream.extend([0, 0]);
        assert!(decompress(Compression::Snappy, &stream, MIB).is_err());
        assert!(decompress(Compression::Snappy, &header[..12], MIB).is_err());
        // A block announcing 4 GiB - 1 of output is refused before anything is allocated.
        let mut stream = header.clone();
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        stream.extend((claim.len() as i32).to_be_bytes());
        stream.extend(claim);
        assert!(is_limit(decompress(Compression::Snappy, &stream, MIB), MIB));
        assert!(is_limit(decompress(Compression::Snappy, &claim, MIB), MIB));
        // A block whose content is shorter than it announces.
        assert!(decompress(Compression::Snappy, &[0x09, 0x08, b'a', b'b', b'c'], MIB).is_err());
    }

    /// gzip of 100 MiB of zeros in one member: inflating stops one byte past 1 MiB.
    #[test]
    fn gzip_bomb_hits_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; MIB];
        for _ in 0..100 {
            encoder.write_all(&zeros).expect("in memory");
        }
        let bomb = encoder.finish().expect("in memory");
        assert!(bomb.len() < MIB);
        assert!(is_limit(decompress(Compression::Gzip, &bomb, MIB), MIB));
    }

    #[test]
    fn lz4_and_snappy_bombs_hit_the_limit() {
        let zeros = vec![0u8; 4 * MIB];
        let frame = compress(Compression::Lz4, &zeros).expect("compresses");
        let bomb = frame.repeat(25);
        assert!(is_limit(decompress(Compression::Lz4, &bomb, MIB), MIB));

        let stream = compress(Compression::Snappy, &zeros[..32 * 1024]).expect("compresses");
        let block = &stream[XERIAL_HEADER_LEN..];
        let mut bomb = stream[..XERIAL_HEADER_LEN].to_vec();
        bomb.extend(block.repeat(3200));
        assert!(is_limit(decompress(Compression::Snappy, &bomb, MIB), MIB));
    }

    /// Zstandard frames built by hand from RFC 8878: magic, frame header descriptor,
    /// optional window descriptor and content size, then blocks with 3-byte little-endian
    /// headers (bit 0 last block, bits 1-2 type: 0 raw, 1 RLE; bits 3-23 size).
    fn zstd_block(last: bool, rle: bool, size: u32, content: &[u8]) -> Vec<u8> {
        let header = size << 3 | u32::from(rle) << 1 | u32::from(last);
        let mut block = header.to_le_bytes()[..3].to_vec();
        block.extend(content);
        block
    }

    fn zstd_frame_header(window_descriptor: u8) -> Vec<u8> {
        let mut frame = ZSTD_MAGIC.to_vec();
        frame.push(0x00); // no content size, not single segment, no checksum, no dictionary
        frame.push(window_descriptor);
        frame
    }

    #[test]
    fn reads_hand_built_zstd_frames() {
        // RLE: 1000 times 'x' with a 1 MiB window (exponent 10, mantissa 0).
        let mut rle = zstd_frame_header(10 << 3);
        rle.extend(zstd_block(true, true, 1000, b"x"));
        let out = decompress(Compression::Zstd, &rle, MIB).expect("valid frame");
        assert_eq!(&out[..], &[b'x'; 1000][..]);

        // Single segment with a 1-byte content size of 5, one raw block.
        let mut raw = ZSTD_MAGIC.to_vec();
        raw.extend([0x20, 5]);
        raw.extend(zstd_block(true, false, 5, b"hello"));
        let out = decompress(Compression::Zstd, &raw, MIB).expect("valid frame");
        assert_eq!(&out[..], b"hello");

        // Frames concatenated, with a skippable frame between them.
        let mut several = raw.clone();
        several.extend([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
        several.extend(&raw);
        let out = decompress(Compression::Zstd, &several, MIB).expect("valid frames");
        assert_eq!(&out[..], b"hellohello");

        // Truncated frames are errors.
        for cut in 1..raw.len() {
            assert!(
                decompress(Compression::Zstd, &raw[..cut], MIB).is_err(),
                "cut {cut}"
            );
        }
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 100, 0, 0, 0];
        skippable.extend([0; 10]);
        assert!(decompress(Compression::Zstd, &skippable, MIB).is_err());
    }

    #[test]
    fn zstd_content_checksum_is_verified() {
        let input = b"checksummed checksummed checksummed".repeat(10);
        let mut frame = compress(Compression::Zstd, &input).expect("compresses");
        assert_eq!(
            &decompress(Compression::Zstd, &frame, MIB).expect("valid")[..],
            &input[..]
        );
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        assert!(decompress(Compression::Zstd, &frame, MIB).is_err());
    }

    #[test]
    fn zstd_declared_windows_are_bounded_by_the_output_limit() {
        // A 1 GiB window (exponent 20) for 1000 bytes of content: lowered, then decoded.
        let mut frame = zstd_frame_header(20 << 3);
        frame.extend(zstd_block(true, true, 1000, b"y"));
        for limit in [1000, MIB, DEFAULT_TEST_LIMIT] {
            let out = decompress(Compression::Zstd, &frame, limit).expect("window lowered");
            assert_eq!(out.len(), 1000);
        }
        // Above 128 MiB of allowed output, declared windows are kept and refused past
        // 128 MiB, as libzstd does by default.
        assert!(matches!(
            decompress(Compression::Zstd, &frame, 1024 * MIB),
            Err(BatchError::Decompression(_))
        ));
        // A single-segment frame announcing 100 MB of content fails before decoding.
        let mut frame = ZSTD_MAGIC.to_vec();
        frame.push(0b1010_0000); // 4-byte content size, single segment
        frame.extend(100_000_000u32.to_le_bytes());
        frame.extend(zstd_block(true, true, 1000, b"z"));
        assert!(is_limit(decompress(Compression::Zstd, &frame, MIB), MIB));
    }

    const DEFAULT_TEST_LIMIT: usize = 64 * MIB;

    /// 800 RLE blocks of 128 KiB: a 3 KiB frame that inflates to 100 MiB.
    #[test]
    fn zstd_bomb_hits_the_limit() {
        let mut bomb = zstd_frame_header(10 << 3);
        for index in 0..800 {
            bomb.extend(zstd_block(index == 799, true, 128 * 1024, &[0]));
        }
        assert!(bomb.len() < 4096);
        assert!(is_limit(decompress(Compression::Zstd, &bomb, MIB), MIB));
    }

    /// A gzip member built by hand (RFC 1952) around a stored deflate block (RFC 1951).
    #[test]
    fn reads_a_hand_built_gzip_member() {
        let data = b"kafka";
        let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        member.push(0b001); // BFINAL, BTYPE 00 (stored)
        member.extend((data.len() as u16).to_le_bytes());
        member.extend((!(data.len() as u16)).to_le_bytes());
        member.extend(data);
        member.extend(crc32_ieee(data).to_le_bytes());
        member.extend((data.len() as u32).to_le_bytes());
        let out = decompress(Compression::Gzip, &member, 100).expect("valid member");
        assert_eq!(&out[..], data);
        // Two members are one stream.
        let twice = member.repeat(2);
        let out = decompress(Compression::Gzip, &twice, 100).expect("valid members");
        assert_eq!(&out[..], b"kafkakafka");
        // A wrong CRC is an error.
        let crc_at = member.len() - 8;
        member[crc_at] ^= 1;
        assert!(decompress(Compression::Gzip, &member, 100).is_err());
    }

    /// Bitwise CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), for the gzip trailer.
    fn crc32_ieee(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc32_ieee_check_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xcbf4_3926);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trips(
            codec in proptest::sample::select(ALL.to_vec()),
            input in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..5000),
                (proptest::collection::vec(any::<u8>(), 1..16), 0..4000usize)
                    .prop_map(|(unit, times)| unit.repeat(times)),
            ],
        ) {
            let packed = compress(codec, &input).expect("compresses");
            let unpacked = decompress(codec, &packed, input.len()).expect("decompresses");
            prop_assert_eq!(&unpacked[..], &input[..]);
        }

        #[test]
        fn garbage_never_panics(
            codec in proptest::sample::select(ALL.to_vec()),
            garbage in proptest::collection::vec(any::<u8>(), 0..512),
            prefix in proptest::sample::select(vec![
                Vec::new(),
                XERIAL_MAGIC.to_vec(),
                ZSTD_MAGIC.to_vec(),
                vec![0x04, 0x22, 0x4d, 0x18],
                vec![0x1f, 0x8b, 8, 0],
            ]),
        ) {
            let mut input = prefix;
            input.extend(garbage);
            if let Ok(out) = decompress(codec, &input, 64 * 1024) {
                prop_assert!(out.len() <= 64 * 1024);
            }
        }

        #[test]
        fn corrupted_streams_never_panic(
            codec in proptest::sample::select(ALL.to_vec()),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let input = b"the quick brown fox jumps over the lazy dog ".repeat(50);
            let mut packed = compress(codec, &input).expect("compresses");
            for (at, byte) in flips {
                let at = at.index(packed.len());
                packed[at] ^= byte;
            }
            let _ = decompress(codec, &packed, 64 * 1024);
        }
    }
}
