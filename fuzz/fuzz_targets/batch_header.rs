//! The record batch header: `BatchHeader::parse`, `validate_batch`, the `Batches` iterator
//! over a `records` field, and the broker's in-place rewrites.
//!
//! Input layout: byte 0 is a mode; bit 0 set means "write correct CRCs into every whole batch
//! first" (`franzy_fuzz::batch::fix_crcs`), so that the valid paths run too. The rest is the
//! `records` bytes.
#![no_main]

use franzy::proto::batch_header::{
    compute_crc, set_base_offset, set_log_append_time, set_partition_leader_epoch, validate_batch,
    BatchError, BatchHeader, Batches, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
};
use libfuzzer_sys::fuzz_target;

fn check_header(h: &BatchHeader) {
    assert!(
        h.total_len() >= BATCH_HEADER_LEN,
        "total_len {} < 61",
        h.total_len()
    );
    assert_eq!(h.total_len(), LOG_OVERHEAD + h.batch_length as usize);
    assert_eq!(h.magic, MAGIC_V2);
    assert!(h.record_count >= 0 && h.last_offset_delta >= 0);
    assert!(h.last_offset() >= h.base_offset);
    assert!(h.next_offset() >= h.last_offset());
    assert!(h.attributes.compression_id() <= 7);
    let _ = h.attributes.compression();
}

fn check_one(buf: &[u8]) {
    let parsed = BatchHeader::parse(buf);
    match &parsed {
        Ok(h) => check_header(h),
        Err(BatchError::Truncated { needed, available }) => {
            assert!(
                buf.len() < BATCH_HEADER_LEN,
                "truncated with a whole header"
            );
            assert_eq!(*available, buf.len());
            assert!(*needed >= BATCH_HEADER_LEN && needed > available);
        }
        Err(BatchError::InvalidLength(n)) => assert!(*n < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32),
        Err(BatchError::UnsupportedMagic(m)) => assert_ne!(*m, MAGIC_V2),
        Err(BatchError::InvalidRecordCount {
            count,
            last_offset_delta,
        }) => {
            assert!(*count < 0 || *last_offset_delta < 0)
        }
        Err(e) => panic!("parse returned an error it has no reason to: {e}"),
    }

    match validate_batch(buf) {
        Ok(h) => {
            assert_eq!(
                parsed.as_ref().ok(),
                Some(&h),
                "validate disagrees with parse"
            );
            let total = h.total_len();
            assert!(total <= buf.len());
            assert_eq!(compute_crc(&buf[..total]), h.crc);

            // The broker's rewrites keep a valid batch valid.
            let mut batch = buf[..total].to_vec();
            set_base_offset(&mut batch, 1 << 40);
            set_partition_leader_epoch(&mut batch, 7);
            let h2 = validate_batch(&batch).expect("offset and epoch are outside the crc");
            assert_eq!((h2.base_offset, h2.partition_leader_epoch), (1 << 40, 7));
            set_log_append_time(&mut batch, 1_700_000_000_000);
            let h3 = validate_batch(&batch).expect("log-append-time rewrite recomputes the crc");
            assert!(h3.attributes.is_log_append_time());
            assert_eq!(h3.max_timestamp, 1_700_000_000_000);
            assert_eq!(h3.record_count, h.record_count);
        }
        Err(BatchError::Truncated { needed, available }) => {
            assert_eq!(available, buf.len());
            assert!(needed > available);
        }
        Err(BatchError::CrcMismatch { stored, computed }) => {
            let h = parsed
                .as_ref()
                .expect("a crc is checked only after the header parses");
            assert_eq!(stored, h.crc);
            assert_ne!(stored, computed);
        }
        Err(e) => assert_eq!(
            parsed.err(),
            Some(e),
            "validate failed differently from parse"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, records)) = data.split_first() else {
        return;
    };
    let mut records = records.to_vec();
    if mode & 1 != 0 {
        franzy_fuzz::batch::fix_crcs(&mut records);
    }
    check_one(&records);

    // Every item is a whole batch (or the one error that ends iteration), the batches tile a
    // prefix of the input, and iteration ends within len / 61 + 1 steps.
    let bound = records.len() / BATCH_HEADER_LEN + 1;
    let mut batches = Batches::new(&records);
    let mut consumed = 0usize;
    let mut steps = 0usize;
    let mut errored = false;
    for item in batches.by_ref() {
        steps += 1;
        assert!(steps <= bound, "iterator did not stop after {bound} items");
        assert!(!errored, "an item after an error");
        match item {
            Ok((h, batch)) => {
                check_header(&h);
                assert_eq!(batch.len(), h.total_len());
                assert_eq!(batch, &records[consumed..consumed + batch.len()]);
                consumed += batch.len();
                check_one(batch);
            }
            Err(e) => {
                assert!(
                    !matches!(e, BatchError::Truncated { .. }),
                    "a tail is not an error"
                );
                assert_eq!(BatchHeader::parse(&records[consumed..]).err(), Some(e));
                errored = true;
            }
        }
    }
    assert!(batches.next().is_none(), "iterator resumed after ending");
    if batches.truncated_tail() {
        assert!(!errored);
        assert!(consumed < records.len());
    } else if !errored {
        assert_eq!(consumed, records.len(), "stopped early without saying why");
    }
});
