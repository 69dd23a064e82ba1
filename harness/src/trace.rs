//! A digest of everything a cluster saw on the wire: every request frame and every response
//! frame, in the order the server handled them, with the connection and broker they came
//! through, and the connections it closed or left unanswered. Two runs that give the same
//! digest exchanged the same bytes in the same order; the fault lab prints it as `trace=` so
//! that a seed replayed on another machine can be compared byte for byte.
//!
//! Off unless [`crate::ClusterBuilder::trace`] turns it on; when off, the server pays one
//! `Option` check per frame.

use std::sync::Mutex;

/// 64-bit FNV-1a over the frames, with the number of frames seen.
#[derive(Debug)]
pub(crate) struct Trace {
    state: Mutex<TraceState>,
}

#[derive(Debug, Clone, Copy)]
struct TraceState {
    hash: u64,
    events: u64,
}

/// What a traced event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Direction {
    /// A request frame as received (without its length prefix).
    Request = 1,
    /// A response frame as sent (with its length prefix).
    Response = 2,
    /// The server closed the connection (a fault, a bad frame, an unsupported request).
    Closed = 3,
    /// The server will answer nothing more on this connection (a `NeverAnswer` fault).
    Silenced = 4,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(TraceState {
                hash: FNV_OFFSET,
                events: 0,
            }),
        }
    }

    /// Feeds one event: which connection and broker, which way, and its bytes.
    pub(crate) fn feed(&self, connection: u64, broker: i32, direction: Direction, bytes: &[u8]) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut hash = state.hash;
        let mut eat = |data: &[u8]| {
            for &byte in data {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        };
        eat(&connection.to_be_bytes());
        eat(&broker.to_be_bytes());
        eat(&[direction as u8]);
        eat(&(bytes.len() as u64).to_be_bytes());
        eat(bytes);
        state.hash = hash;
        state.events += 1;
    }

    /// The digest so far and the number of events fed.
    pub(crate) fn digest(&self) -> (u64, u64) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.hash, state.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_bytes_order_and_direction() {
        let digest = |events: &[(u64, Direction, &[u8])]| {
            let trace = Trace::new();
            for (connection, direction, bytes) in events {
                trace.feed(*connection, 0, *direction, bytes);
            }
            trace.digest()
        };
        let a = digest(&[
            (0, Direction::Request, b"ab"),
            (0, Direction::Response, b"c"),
        ]);
        assert_eq!(
            a,
            digest(&[
                (0, Direction::Request, b"ab"),
                (0, Direction::Response, b"c")
            ])
        );
        assert_eq!(a.1, 2);
        for other in [
            digest(&[
                (0, Direction::Response, b"c"),
                (0, Direction::Request, b"ab"),
            ]),
            digest(&[
                (0, Direction::Request, b"a"),
                (0, Direction::Response, b"bc"),
            ]),
            digest(&[
                (1, Direction::Request, b"ab"),
                (0, Direction::Response, b"c"),
            ]),
            digest(&[
                (0, Direction::Response, b"ab"),
                (0, Direction::Response, b"c"),
            ]),
        ] {
            assert_ne!(a.0, other.0);
        }
    }
}
