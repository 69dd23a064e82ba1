//! The full record-batch decoder (`RecordBatch::decode`, and the broker's `validate`) on
//! gzip batches: the input is shaped into one whole batch with a correct length and CRC, so
//! the fuzzer spends its time in decompression and record parsing.
#![no_main]

use franzy::proto::compression::Compression;
use franzy_fuzz::batch::{check_record_batch, shaped};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(batch) = shaped(data, Compression::Gzip) else {
        return;
    };
    check_record_batch(&batch);
});
