//! The consumer's fetch engine fed scripted answers: Fetch and ListOffsets responses built
//! from the input (any offsets, watermarks, error codes and record bytes), failures, seeks,
//! pauses and time, with `poll_event` drained as a user would (see `franzy_fuzz::fetcher`
//! for the layout and the invariants). No input may panic it, loop it, or make it hand out
//! records out of order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    franzy_fuzz::fetcher::run(data);
});
