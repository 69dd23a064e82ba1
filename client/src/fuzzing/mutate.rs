//! Targeted mutations of encoded frames.
//!
//! A [`FieldMap`] is found by decoding a frame through a buffer that records every read the
//! decoder makes: each fixed-width integer, each varint, each length followed by the bytes it
//! announces, and each record batch inside a `records` field. A [`Mutation`] then damages
//! one of those fields the way parsers get it wrong: a length or count at an edge, an
//! overlong or huge varint, a batch with a bad CRC (or a recomputed one over bad fields), an
//! offset at `i64::MIN`/`i64::MAX`, or plain truncation and bit flips.

use std::ops::Range;

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::Decodable;

use crate::proto::batch_header::{compute_crc, BatchHeader, BATCH_HEADER_LEN, MAGIC_V2};

/// What a field of a frame is, as the decoder read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A big-endian integer of this many bytes (1, 2, 4, 8) or a UUID (16).
    Int(usize),
    /// An unsigned varint (tagged-field counts, compact lengths and counts).
    Varint,
    /// An integer or varint announcing the length of the bytes right after it.
    Length,
    /// Bytes read whole: a string's or a byte array's content.
    Blob,
    /// A record batch (magic 2) inside a blob.
    Batch,
}

/// One field of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where it is in the frame (after the size prefix).
    pub at: Range<usize>,
    /// What it is.
    pub kind: FieldKind,
}

/// The fields of a frame, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    /// The fields.
    pub fields: Vec<Field>,
}

impl FieldMap {
    /// The fields of a request frame (without its size prefix). A frame that does not decode
    /// gives the fields read before the decoder stopped.
    pub fn of_request(frame: &Bytes) -> Self {
        let mut recorder = Recorder::new(frame.clone());
        if let Some(&[k0, k1, v0, v1]) = frame.get(..4) {
            let version = i16::from_be_bytes([v0, v1]);
            if let Ok(api) = ApiKey::try_from(i16::from_be_bytes([k0, k1])) {
                let header_version = api.request_header_version(version);
                if RequestHeader::decode(&mut recorder, header_version).is_ok() {
                    // Whatever was read before a failure still maps the frame's start.
                    let _ =
                        kafka_protocol::fuzzing::decode_request_from(&mut recorder, api, version);
                }
            }
        }
        recorder.into_map()
    }

    /// The fields of a response frame (without its size prefix) to `api_key` at `version`.
    pub fn of_response(frame: &Bytes, api_key: ApiKey, version: i16) -> Self {
        let mut recorder = Recorder::new(frame.clone());
        if ResponseHeader::decode(&mut recorder, api_key.response_header_version(version)).is_ok() {
            let _ = kafka_protocol::fuzzing::decode_response_from(&mut recorder, api_key, version);
        }
        recorder.into_map()
    }

    /// The fields of one kind.
    pub fn of_kind(&self, kind: FieldKind) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| f.kind == kind)
    }
}

/// A `ByteBuf` over a frame that records where each read starts and how long it is.
struct Recorder {
    data: Bytes,
    position: usize,
    reads: Vec<(Range<usize>, bool)>,
}

impl Recorder {
    fn new(data: Bytes) -> Self {
        Self {
            data,
            position: 0,
            reads: Vec::new(),
        }
    }

    fn into_map(self) -> FieldMap {
        let mut fields: Vec<Field> = Vec::new();
        let mut index = 0;
        while index < self.reads.len() {
            let (at, blob) = self.reads[index].clone();
            if blob {
                fields.push(Field {
                    at: at.clone(),
                    kind: FieldKind::Blob,
                });
                if let Some(batches) = batches_in(&self.data, at) {
                    fields.extend(batches);
                }
                index += 1;
                continue;
            }
            // A run of single bytes with the continuation bit set, ended by one without, is a
            // varint (a lone byte below 0x80 may be one too: int8 and booleans look alike).
            if at.len() == 1 {
                let mut end = at.end;
                let mut next = index;
                while self.data.get(end - 1).is_some_and(|b| b & 0x80 != 0)
                    && self
                        .reads
                        .get(next + 1)
                        .is_some_and(|(r, blob)| !blob && r.len() == 1 && r.start == end)
                {
                    next += 1;
                    end += 1;
                }
                let kind = if next > index {
                    FieldKind::Varint
                } else {
                    FieldKind::Int(1)
                };
                fields.push(Field {
                    at: at.start..end,
                    kind,
                });
                index = next + 1;
                continue;
            }
            fields.push(Field {
                at: at.clone(),
                kind: FieldKind::Int(at.len()),
            });
            index += 1;
        }
        // A numeric field right before a blob, whose value is the blob's length (or length
        // plus one, compact encoding), is that blob's length.
        for i in 1..fields.len() {
            if fields[i].kind != FieldKind::Blob {
                continue;
            }
            let previous = &fields[i - 1];
            if previous.at.end != fields[i].at.start {
                continue;
            }
            let len = fields[i].at.len() as u64;
            let value = read_number(&self.data, previous);
            if value == Some(len) || value == Some(len + 1) {
                fields[i - 1].kind = FieldKind::Length;
            }
        }
        FieldMap { fields }
    }
}

impl Buf for Recorder {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.position)
    }

    fn chunk(&self) -> &[u8] {
        self.data.get(self.position..).unwrap_or_default()
    }

    fn advance(&mut self, count: usize) {
        let count = count.min(self.remaining());
        self.reads
            .push((self.position..self.position + count, false));
        self.position += count;
    }
}

impl ByteBuf for Recorder {
    fn peek_bytes(&mut self, r: Range<usize>) -> Bytes {
        let start = (self.position + r.start).min(self.data.len());
        let end = (self.position + r.end).min(self.data.len()).max(start);
        self.data.slice(start..end)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        let size = size.min(self.remaining());
        let out = self.data.slice(self.position..self.position + size);
        self.reads.push((self.position..self.position + size, true));
        self.position += size;
        out
    }
}

/// The record batches at the start of a blob, one field each.
fn batches_in(data: &Bytes, blob: Range<usize>) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut at = blob.start;
    while at + BATCH_HEADER_LEN <= blob.end {
        let header = BatchHeader::parse(data.get(at..blob.end)?).ok()?;
        if data.get(at + 16).copied() != Some(MAGIC_V2 as u8) {
            break;
        }
        let end = at.checked_add(header.total_len())?.min(blob.end);
        out.push(Field {
            at: at..end,
            kind: FieldKind::Batch,
        });
        at = end;
    }
    Some(out)
}

/// The value of an integer or varint field, if it is one and not negative.
fn read_number(data: &[u8], field: &Field) -> Option<u64> {
    let bytes = data.get(field.at.clone())?;
    match field.kind {
        FieldKind::Int(2) => u64::try_from(i16::from_be_bytes(bytes.try_into().ok()?)).ok(),
        FieldKind::Int(4) => u64::try_from(i32::from_be_bytes(bytes.try_into().ok()?)).ok(),
        FieldKind::Int(1) | FieldKind::Varint => {
            let mut value = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                value |= u64::from(b & 0x7f) << (7 * i);
            }
            Some(value)
        }
        _ => None,
    }
}

/// A field of the record batch header (protocol guide, "Record Batch").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchField {
    /// baseOffset, int64 at 0.
    BaseOffset,
    /// batchLength, int32 at 8.
    BatchLength,
    /// partitionLeaderEpoch, int32 at 12.
    LeaderEpoch,
    /// magic, int8 at 16.
    Magic,
    /// crc, uint32 at 17.
    Crc,
    /// attributes, int16 at 21.
    Attributes,
    /// lastOffsetDelta, int32 at 23.
    LastOffsetDelta,
    /// baseTimestamp, int64 at 27.
    BaseTimestamp,
    /// maxTimestamp, int64 at 35.
    MaxTimestamp,
    /// producerId, int64 at 43.
    ProducerId,
    /// producerEpoch, int16 at 51.
    ProducerEpoch,
    /// baseSequence, int32 at 53.
    BaseSequence,
    /// recordCount, int32 at 57.
    RecordCount,
    /// The first record's length varint, at 61 (uncompressed batches).
    FirstRecordLength,
}

impl BatchField {
    const ALL: [BatchField; 14] = [
        Self::BaseOffset,
        Self::BatchLength,
        Self::LeaderEpoch,
        Self::Magic,
        Self::Crc,
        Self::Attributes,
        Self::LastOffsetDelta,
        Self::BaseTimestamp,
        Self::MaxTimestamp,
        Self::ProducerId,
        Self::ProducerEpoch,
        Self::BaseSequence,
        Self::RecordCount,
        Self::FirstRecordLength,
    ];

    fn place(self) -> (usize, usize) {
        match self {
            Self::BaseOffset => (0, 8),
            Self::BatchLength => (8, 4),
            Self::LeaderEpoch => (12, 4),
            Self::Magic => (16, 1),
            Self::Crc => (17, 4),
            Self::Attributes => (21, 2),
            Self::LastOffsetDelta => (23, 4),
            Self::BaseTimestamp => (27, 8),
            Self::MaxTimestamp => (35, 8),
            Self::ProducerId => (43, 8),
            Self::ProducerEpoch => (51, 2),
            Self::BaseSequence => (53, 4),
            Self::RecordCount => (57, 4),
            Self::FirstRecordLength => (61, 5),
        }
    }
}

/// One targeted change to a frame. Field and position numbers are taken modulo what the
/// frame has, so any value applies to any frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// An integer field set to an edge of its width (0, 1, -1, MIN, MAX, MAX-1, value±1).
    IntEdge {
        /// Which integer field.
        field: u16,
        /// Which edge.
        edge: u8,
    },
    /// A length set to lie about the bytes after it: one more, one less, -1 (null), MAX.
    LengthLie {
        /// Which length field.
        field: u16,
        /// Which lie.
        edge: u8,
    },
    /// A varint rewritten: overlong (same value in more bytes), huge, or with too many
    /// continuation bytes.
    VarintEdge {
        /// Which varint.
        field: u16,
        /// Which form.
        form: u8,
    },
    /// A record batch header field set to an edge, with the CRC recomputed (so the damage
    /// reaches the checks after the CRC) or not.
    Batch {
        /// Which batch.
        batch: u16,
        /// Which header field.
        field: BatchField,
        /// Which edge.
        edge: u8,
        /// Recompute the CRC after the change.
        fix_crc: bool,
    },
    /// A field's bytes repeated in place (an array element or a string twice).
    Repeat {
        /// Which field.
        field: u16,
    },
    /// Bits flipped in one byte.
    BitFlip {
        /// Which byte.
        at: u32,
        /// Which bits.
        mask: u8,
    },
    /// The frame cut short.
    Truncate {
        /// How many bytes stay.
        keep: u32,
    },
    /// Bytes added at the end.
    Append {
        /// The bytes.
        bytes: Vec<u8>,
    },
}

impl<'a> Arbitrary<'a> for BatchField {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(*u.choose(&Self::ALL)?)
    }
}

impl<'a> Arbitrary<'a> for Mutation {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=11)? {
            0..=2 => Self::IntEdge {
                field: u.arbitrary()?,
                edge: u.arbitrary()?,
            },
            3..=4 => Self::LengthLie {
                field: u.arbitrary()?,
                edge: u.arbitrary()?,
            },
            5 => Self::VarintEdge {
                field: u.arbitrary()?,
                form: u.arbitrary()?,
            },
            6..=8 => Self::Batch {
                batch: u.arbitrary()?,
                field: u.arbitrary()?,
                edge: u.arbitrary()?,
                fix_crc: u.ratio(3, 4)?,
            },
            9 => Self::Repeat {
                field: u.arbitrary()?,
            },
            10 => Self::BitFlip {
                at: u.arbitrary()?,
                mask: u.int_in_range(1..=255)?,
            },
            _ => match u.arbitrary::<bool>()? {
                true => Self::Truncate {
                    keep: u.arbitrary()?,
                },
                false => Self::Append {
                    bytes: (0..u.int_in_range(1..=8)?)
                        .map(|_| u.arbitrary::<u8>())
                        .collect::<arbitrary::Result<_>>()?,
                },
            },
        })
    }
}

impl Mutation {
    /// Applies the mutation to `frame` (without its size prefix), whose fields are `map`.
    /// Returns `None` when the frame has nothing the mutation can target (no batch, no
    /// length).
    pub fn apply(&self, frame: &[u8], map: &FieldMap) -> Option<Vec<u8>> {
        let pick = |kind: fn(&FieldKind) -> bool, n: u16| -> Option<Field> {
            let fields: Vec<&Field> = map.fields.iter().filter(|f| kind(&f.kind)).collect();
            if fields.is_empty() {
                return None;
            }
            fields
                .get(usize::from(n) % fields.len())
                .map(|f| (*f).clone())
        };
        let mut out = frame.to_vec();
        match self {
            Self::IntEdge { field, edge } => {
                let f = pick(|k| matches!(k, FieldKind::Int(1 | 2 | 4 | 8)), *field)?;
                let current = out.get(f.at.clone())?.to_vec();
                let value = int_edge(&current, *edge);
                out.get_mut(f.at.clone())?.copy_from_slice(&value);
            }
            Self::LengthLie { field, edge } => {
                let f = pick(|k| *k == FieldKind::Length, *field)?;
                let width = f.at.len();
                let is_varint = out.get(f.at.start).is_some_and(|b| b & 0x80 != 0) || width == 1;
                let current = read_number(
                    &out,
                    &Field {
                        at: f.at.clone(),
                        kind: if is_varint {
                            FieldKind::Varint
                        } else {
                            FieldKind::Int(width)
                        },
                    },
                )? as i64;
                let lie: i64 = match edge % 6 {
                    0 => current + 1,
                    1 => current - 1,
                    2 => -1,
                    3 => 0,
                    4 => i64::from(i32::MAX),
                    _ => current + 1000,
                };
                let bytes = if is_varint {
                    unsigned_varint(lie.clamp(0, i64::from(u32::MAX)) as u64)
                } else if width == 2 {
                    (lie.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16)
                        .to_be_bytes()
                        .to_vec()
                } else {
                    (lie.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
                        .to_be_bytes()
                        .to_vec()
                };
                out.splice(f.at.clone(), bytes);
            }
            Self::VarintEdge { field, form } => {
                let f = pick(
                    |k| matches!(k, FieldKind::Varint | FieldKind::Int(1)),
                    *field,
                )?;
                let current = read_number(&out, &f.clone())?;
                let bytes = match form % 4 {
                    // The same value in five bytes (Java accepts it; a strict parser may not).
                    0 => overlong_varint(current),
                    1 => unsigned_varint(u64::from(u32::MAX)),
                    2 => vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                    _ => unsigned_varint(u64::from(i32::MAX as u32) + 1),
                };
                out.splice(f.at.clone(), bytes);
            }
            Self::Batch {
                batch,
                field,
                edge,
                fix_crc,
            } => {
                let b = pick(|k| *k == FieldKind::Batch, *batch)?;
                let (offset, width) = field.place();
                let at = b.at.start + offset;
                let place = out.get(at..at + width)?.to_vec();
                let value = match field {
                    BatchField::FirstRecordLength => match edge % 3 {
                        0 => vec![0xff, 0xff, 0xff, 0xff, 0x0f],
                        1 => vec![0x01, 0x00, 0x00, 0x00, 0x00],
                        _ => vec![0x80, 0x80, 0x80, 0x80, 0x80],
                    },
                    BatchField::BaseOffset | BatchField::BaseTimestamp if edge % 2 == 0 => {
                        let value = if edge % 4 == 0 { i64::MAX } else { i64::MIN };
                        value.to_be_bytes().to_vec()
                    }
                    _ => int_edge(&place, *edge),
                };
                out.get_mut(at..at + width)?.copy_from_slice(&value);
                if *fix_crc && *field != BatchField::Crc {
                    let end = b.at.end.min(out.len());
                    let crc = compute_crc(out.get(b.at.start..end)?);
                    out.get_mut(b.at.start + 17..b.at.start + 21)?
                        .copy_from_slice(&crc.to_be_bytes());
                }
            }
            Self::Repeat { field } => {
                let f = pick(|_| true, *field)?;
                let bytes = out.get(f.at.clone())?.to_vec();
                out.splice(f.at.end..f.at.end, bytes);
            }
            Self::BitFlip { at, mask } => {
                let len = out.len();
                if len == 0 {
                    return None;
                }
                out[*at as usize % len] ^= mask;
            }
            Self::Truncate { keep } => {
                let len = out.len();
                if len == 0 {
                    return None;
                }
                out.truncate(*keep as usize % len);
            }
            Self::Append { bytes } => out.extend_from_slice(bytes),
        }
        Some(out)
    }
}

/// An edge value of the integer `current` (big-endian, 1, 2, 4 or 8 bytes), same width.
fn int_edge(current: &[u8], edge: u8) -> Vec<u8> {
    let width = current.len();
    let mut value = [0u8; 8];
    value[8 - width..].copy_from_slice(current);
    let shift = 64 - 8 * width as u32;
    // Sign-extended current value.
    let v = (i64::from_be_bytes(value) << shift) >> shift;
    let max = if width == 8 {
        i64::MAX
    } else {
        (1i64 << (8 * width - 1)) - 1
    };
    let min = -max - 1;
    let new = match edge % 8 {
        0 => 0,
        1 => 1,
        2 => -1,
        3 => min,
        4 => max,
        5 => max - 1,
        6 => v.saturating_add(1).min(max),
        _ => v.saturating_sub(1).max(min),
    };
    new.to_be_bytes()[8 - width..].to_vec()
}

fn unsigned_varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn overlong_varint(value: u64) -> Vec<u8> {
    let mut out = unsigned_varint(value);
    while out.len() < 5 {
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
        out.push(0);
    }
    out
}
