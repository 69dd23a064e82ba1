//! The harness's own statistics: requests per API, bytes in and out, the largest request
//! seen (`Cluster::stats`). Counted by the server loop with atomics in fixed memory (one
//! counter per possible API key), never a growing list.

use std::sync::atomic::{AtomicU64, Ordering};

use franzy::proto::ApiKey;

/// API keys counted one by one; requests naming a key past it count under
/// [`HarnessStats::unknown_api_requests`].
const KEYS: usize = 128;

/// A snapshot of what the cluster's brokers received and sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HarnessStats {
    /// Requests received per API (every broker together), in key order, APIs with none
    /// left out.
    pub requests_per_api: Vec<(ApiKey, u64)>,
    /// Requests whose API key the harness does not know.
    pub unknown_api_requests: u64,
    /// Bytes of request frames received (without their 4-byte size).
    pub bytes_in: u64,
    /// Bytes of response frames sent (with their size).
    pub bytes_out: u64,
    /// The largest request frame received, in bytes.
    pub largest_request: u64,
}

impl HarnessStats {
    /// Requests of every API together.
    pub fn requests(&self) -> u64 {
        self.requests_per_api.iter().map(|(_, n)| n).sum::<u64>() + self.unknown_api_requests
    }

    /// Requests of `api`.
    pub fn requests_of(&self, api: ApiKey) -> u64 {
        self.requests_per_api
            .iter()
            .find(|(a, _)| *a == api)
            .map_or(0, |(_, n)| *n)
    }
}

/// The live counters.
#[derive(Debug)]
pub(crate) struct Counters {
    per_key: [AtomicU64; KEYS],
    unknown: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    largest: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            per_key: std::array::from_fn(|_| AtomicU64::new(0)),
            unknown: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }
}

impl Counters {
    /// A request frame arrived (its body, after the size).
    pub(crate) fn request(&self, frame: &[u8]) {
        let len = frame.len() as u64;
        self.bytes_in.fetch_add(len, Ordering::Relaxed);
        self.largest.fetch_max(len, Ordering::Relaxed);
        let key = frame
            .get(..2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .and_then(|k| usize::try_from(k).ok())
            .filter(|k| *k < KEYS && ApiKey::try_from(*k as i16).is_ok());
        match key {
            Some(k) => self.per_key[k].fetch_add(1, Ordering::Relaxed),
            None => self.unknown.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// A response frame of `len` bytes was sent.
    pub(crate) fn response(&self, len: usize) {
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HarnessStats {
        let requests_per_api = self
            .per_key
            .iter()
            .enumerate()
            .filter_map(|(k, n)| {
                let n = n.load(Ordering::Relaxed);
                let api = ApiKey::try_from(i16::try_from(k).ok()?).ok()?;
                (n > 0).then_some((api, n))
            })
            .collect();
        HarnessStats {
            requests_per_api,
            unknown_api_requests: self.unknown.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            largest_request: self.largest.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_key_and_hostile_keys_do_not_index_past_the_table() {
        let c = Counters::default();
        c.request(&[0, 3, 0, 12, 0, 0, 0, 1]);
        c.request(&[0, 3, 0, 12]);
        c.request(&[0x7f, 0xff, 0, 0]);
        c.request(&[0xff, 0xff]);
        c.request(&[1]);
        c.response(100);
        let s = c.snapshot();
        assert_eq!(s.requests_of(ApiKey::Metadata), 2);
        assert_eq!(s.unknown_api_requests, 3);
        assert_eq!(
            (s.bytes_in, s.bytes_out, s.largest_request),
            (8 + 4 + 4 + 2 + 1, 100, 8)
        );
        assert_eq!(s.requests(), 5);
    }
}
