//! `FrameDecoder` over an arbitrary byte stream delivered in arbitrary chunks.
//!
//! Input layout: see `franzy_fuzz::chunks`. The chunked run is checked against a reference
//! parse of the whole stream at once: the same frames in the same order, the same error after
//! the same number of frames, the same bytes left over.
#![no_main]

use bytes::{Bytes, BytesMut};
use franzy::proto::frame::{FrameDecoder, FrameError};
use franzy_fuzz::chunks::Plan;
use libfuzzer_sys::fuzz_target;

/// What a stream holds: its whole frames, then either an error at the next prefix or the
/// bytes of an incomplete frame.
fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, Result<&[u8], FrameError>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        let Some(prefix) = rest.get(..4) else {
            return (frames, Ok(rest));
        };
        let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if length < 0 {
            return (frames, Err(FrameError::Negative(length)));
        }
        if length == 0 {
            return (frames, Err(FrameError::Empty));
        }
        let length = length as usize;
        if length > max {
            return (frames, Err(FrameError::TooLarge { length, max }));
        }
        let Some(frame) = rest.get(4..4 + length) else {
            return (frames, Ok(rest));
        };
        frames.push(frame);
        rest = &rest[4 + length..];
    }
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan::from_input(data);
    let decoder = FrameDecoder::new(plan.max_frame_size);
    let (expected_frames, expected_end) = reference(plan.stream, plan.max_frame_size);

    let mut buf = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut error = None;
    'feed: for chunk in plan.chunks() {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty(), "empty frame");
                    assert!(
                        frame.len() <= plan.max_frame_size,
                        "frame of {} bytes over the maximum {}",
                        frame.len(),
                        plan.max_frame_size
                    );
                    // In order: each frame is the next one the whole stream holds.
                    assert_eq!(
                        expected_frames.get(frames.len()).copied(),
                        Some(&frame[..]),
                        "frame {} differs from the reference",
                        frames.len()
                    );
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    // An error stops the stream: the decoder does not skip the bad prefix,
                    // so asking again gives the same answer and no frame.
                    let len_before = buf.len();
                    assert_eq!(decoder.decode(&mut buf), Err(e), "error is not sticky");
                    assert_eq!(buf.len(), len_before, "decoder consumed after an error");
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }

    assert_eq!(frames.len(), expected_frames.len(), "frame count");
    match expected_end {
        Err(e) => assert_eq!(error, Some(e), "error"),
        Ok(leftover) => {
            assert_eq!(error, None, "unexpected error");
            assert_eq!(&buf[..], leftover, "leftover bytes");
            assert_eq!(decoder.decode(&mut buf), Ok(None), "leftover is incomplete");
        }
    }
});
