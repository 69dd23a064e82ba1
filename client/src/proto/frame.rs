//! Size-prefixed frames: every Kafka request and response is a big-endian `int32` length
//! followed by that many bytes (protocol guide, "Common Request and Response Structure").
//!
//! [`FrameDecoder`] splits a byte stream into frames. It distinguishes "need more bytes"
//! (`Ok(None)`) from a malformed prefix (`Err`), and it never reserves memory for a frame it
//! has not yet received: a peer that announces 100 MiB and sends ten bytes costs ten bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The default largest frame accepted, as Kafka's `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Why a length prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix was negative.
    #[error("negative frame length {0}")]
    Negative(i32),
    /// The length prefix was zero; no Kafka message is empty.
    #[error("zero frame length")]
    Empty,
    /// The length prefix was larger than the configured maximum.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced length.
        length: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Splits a byte stream into frames.
///
/// Call order: append received bytes to a `BytesMut`, then call [`FrameDecoder::decode`]
/// until it returns `Ok(None)`. After an `Err` the stream is out of sync and must be closed.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `max_frame_size` bytes (not counting the
    /// 4-byte prefix).
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The largest frame this decoder accepts.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Checks the length prefix at the start of `buf`, if four bytes are there, without
    /// consuming anything. `Ok(None)` means fewer than four bytes are buffered.
    pub fn peek_length(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        match length {
            n if n < 0 => Err(FrameError::Negative(n)),
            0 => Err(FrameError::Empty),
            n => {
                let length = n as usize;
                if length > self.max_frame_size {
                    Err(FrameError::TooLarge {
                        length,
                        max: self.max_frame_size,
                    })
                } else {
                    Ok(Some(length))
                }
            }
        }
    }

    /// Takes one whole frame (without its prefix) off the front of `buf`, or returns
    /// `Ok(None)` when more bytes are needed. The prefix is validated as soon as it arrives.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(length) = self.peek_length(buf)? else {
            return Ok(None);
        };
        if buf.len() - 4 < length {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(length).freeze()))
    }
}

/// Appends `body` to `out` behind its 4-byte length prefix.
///
/// Fails only when the body cannot be described by an `int32` length.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    let length = i32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        length: body.len(),
        max: i32::MAX as usize,
    })?;
    out.reserve(4 + body.len());
    out.put_i32(length);
    out.put_slice(body);
    Ok(())
}

/// Writes a placeholder length prefix at the end of `out` and returns its position, so that
/// a message can be encoded straight into the output and the prefix filled in afterwards
/// with [`finish_frame`]. Saves one copy of every request and response.
pub(crate) fn begin_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(0);
    at
}

/// Fills in the length prefix written by [`begin_frame`] at `at`.
pub(crate) fn finish_frame(out: &mut BytesMut, at: usize) -> Result<(), FrameError> {
    let body = out.len() - at - 4;
    let length = i32::try_from(body).map_err(|_| FrameError::TooLarge {
        length: body,
        max: i32::MAX as usize,
    })?;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// Frames at least this long are read into a [`FramePool`] buffer.
pub(crate) const POOLED_FRAME_MIN: usize = 128 * 1024;

/// Most spare buffers a [`FramePool`] keeps.
const MAX_SPARE_FRAMES: usize = 2;

/// Reusable buffers for large frames (fetch responses of megabytes).
///
/// Record values are slices of the frame they arrived in, so a frame's memory lives until
/// the last record is dropped; a fresh allocation for each frame then cost a page fault for
/// every 4 KiB of it (the allocator maps large blocks anew each time and unmaps them when
/// freed). A frame made by [`FramePool::frame`] hands its buffer back when its last slice
/// is dropped, and the next large frame is read into it. At most two spare buffers are
/// kept, the largest ones.
///
/// A buffer is never sized by the length a peer announces: [`FramePool::take`] hands out
/// what is already allocated (or 128 KiB), and [`grow_frame`] doubles it as bytes arrive,
/// up to the announced length. A peer that announces 100 MiB and sends ten bytes costs
/// 128 KiB; once frames of some size were read, their buffers come back from the pool and
/// the next ones of that size do not grow at all.
#[derive(Debug, Clone, Default)]
pub(crate) struct FramePool {
    spares: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl FramePool {
    /// An empty buffer to read a frame of `length` bytes into: a spare one with room for all
    /// of it if there is one, else the largest spare, else a new one of at most
    /// [`POOLED_FRAME_MIN`] bytes. Grow it with [`grow_frame`] as the bytes arrive.
    pub fn take(&self, length: usize) -> Vec<u8> {
        let mut spares = self.lock();
        let index = spares
            .iter()
            .position(|b| b.capacity() >= length)
            .or_else(|| (0..spares.len()).max_by_key(|&i| spares.get(i).map_or(0, Vec::capacity)));
        match index {
            Some(index) => spares.swap_remove(index),
            None => Vec::with_capacity(length.min(POOLED_FRAME_MIN)),
        }
    }

    /// `buffer` as a frame whose memory comes back to this pool once every slice of it is
    /// dropped.
    pub fn frame(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledFrame {
            buffer,
            pool: self.clone(),
        })
    }

    /// Spare buffers held now.
    #[cfg(test)]
    pub fn spares(&self) -> usize {
        self.lock().len()
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut spares = self.lock();
        spares.push(buffer);
        if spares.len() > MAX_SPARE_FRAMES {
            if let Some((smallest, _)) = spares.iter().enumerate().min_by_key(|(_, b)| b.capacity())
            {
                spares.swap_remove(smallest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes room in `buffer`, which collects a frame of `length` bytes, for `incoming` more:
/// at least doubling (so the copies add up to less than the frame), never beyond `length`.
/// Memory thus follows the bytes received, not the length the peer announced.
pub(crate) fn grow_frame(buffer: &mut Vec<u8>, incoming: usize, length: usize) {
    let needed = buffer.len().saturating_add(incoming).min(length);
    if needed <= buffer.capacity() {
        return;
    }
    let target = buffer.capacity().saturating_mul(2).max(needed).min(length);
    buffer.reserve_exact(target - buffer.len());
}

/// The owner of a pooled frame's bytes.
struct PooledFrame {
    buffer: Vec<u8>,
    pool: FramePool,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pooled_frames_give_their_buffer_back_when_the_last_slice_goes() {
        let pool = FramePool::default();
        let mut buffer = pool.take(1000);
        buffer.extend_from_slice(&[7u8; 1000]);
        let address = buffer.as_ptr();
        let frame = pool.frame(buffer);
        let slice = frame.slice(10..20);
        drop(frame);
        assert_eq!(pool.spares(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.spares(), 1);
        let again = pool.take(800);
        assert_eq!(again.as_ptr(), address, "the same memory, reused");
        assert!(again.is_empty());
        // Three frames alive at once need three buffers; when they go, the two largest
        // are kept.
        let frames: Vec<Bytes> = [10, 5000, 3000]
            .into_iter()
            .map(|size| pool.frame(pool.take(size)))
            .collect();
        drop(again);
        drop(frames);
        assert_eq!(pool.spares(), 2);
        assert!(pool.take(4000).capacity() >= 4000);
        assert!(pool.take(2000).capacity() >= 2000);
        assert_eq!(pool.spares(), 0);
    }

    #[test]
    fn frame_buffers_grow_with_the_bytes_not_the_announced_length() {
        let pool = FramePool::default();
        let announced = DEFAULT_MAX_FRAME_SIZE;
        let mut buffer = pool.take(announced);
        assert!(
            buffer.capacity() <= POOLED_FRAME_MIN,
            "{}",
            buffer.capacity()
        );
        grow_frame(&mut buffer, 10, announced);
        buffer.extend_from_slice(&[1; 10]);
        assert!(buffer.capacity() <= POOLED_FRAME_MIN);
        // Doubling as bytes come, capped at the frame's length.
        grow_frame(&mut buffer, POOLED_FRAME_MIN, announced);
        assert_eq!(buffer.capacity(), 2 * POOLED_FRAME_MIN);
        let mut small = Vec::with_capacity(100);
        small.extend_from_slice(&[0; 100]);
        grow_frame(&mut small, 50, 130);
        assert_eq!(small.capacity(), 130, "never beyond the frame");
        grow_frame(&mut small, 1000, 130);
        assert_eq!(small.capacity(), 130);
        // A spare that holds the whole frame is taken first, else the largest one.
        let big = pool.frame(Vec::with_capacity(1 << 20));
        let medium = pool.frame(Vec::with_capacity(1 << 18));
        drop((big, medium));
        assert!(pool.take(1 << 19).capacity() >= 1 << 20);
        assert_eq!(pool.take(1 << 21).capacity(), 1 << 18, "the largest left");
        assert!(
            pool.take(1 << 21).capacity() <= POOLED_FRAME_MIN,
            "none left"
        );
    }

    #[test]
    fn partial_prefix_and_partial_body_need_more_bytes() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[5, b'h', b'e']);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"llo!");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(&buf[..], b"!");
    }

    #[test]
    fn negative_zero_and_oversized_lengths_are_errors_before_the_body_arrives() {
        let decoder = FrameDecoder::new(1024);
        let mut negative = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut negative), Err(FrameError::Negative(-1)));
        let mut zero = BytesMut::from(&0i32.to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut zero), Err(FrameError::Empty));
        let mut huge = BytesMut::from(&1025i32.to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut huge),
            Err(FrameError::TooLarge {
                length: 1025,
                max: 1024
            })
        );
        // "GET " read as a length is 0x47455420, far above 100 MiB.
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            FrameDecoder::default().decode(&mut http),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn begin_and_finish_frame_match_encode_frame() {
        let mut direct = BytesMut::new();
        encode_frame(b"abc", &mut direct).expect("3 bytes fit an int32");
        let mut deferred = BytesMut::from(&b"xx"[..]);
        let at = begin_frame(&mut deferred);
        deferred.put_slice(b"abc");
        finish_frame(&mut deferred, at).expect("3 bytes fit an int32");
        assert_eq!(&deferred[2..], &direct[..]);
    }

    proptest! {
        #[test]
        fn frames_round_trip_whatever_the_chunking(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for body in &bodies {
                encode_frame(body, &mut wire).expect("small bodies fit an int32");
            }
            let decoder = FrameDecoder::new(300);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = decoder.decode(&mut buf).expect("valid frames") {
                    out.push(frame.to_vec());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, bodies);
        }
    }
}
