//! The idempotent producer's identity and sequence rules, without IO (KIP-98; the epoch bump
//! of KIP-360 for producers without a transactional id).
//!
//! The producer gets a producer id and epoch from InitProducerId and numbers the records of
//! each partition from 0; a batch carries the sequence of its first record. The broker keeps,
//! per producer and partition, the last sequence it wrote and the last five batches, so that
//! a batch sent twice is written once (the second answer repeats the first one's offset), and
//! a batch that arrives before its predecessor is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
//! That is what lets the accumulator keep up to five batches of a partition in flight and
//! still never reorder or duplicate a partition.
//!
//! A hole in a partition's sequences can never be filled: a numbered batch that failed (its
//! delivery timeout passed, the broker refused it for good, it was split) leaves the
//! batches after it out of order forever. The producer then bumps its epoch: once nothing is
//! in flight, it moves to epoch + 1 and every partition starts again at sequence 0 (a broker
//! accepts sequence 0 from a newer epoch). Near the end of the epoch range it asks for a new
//! producer id instead. The Java client does the same (`bumpIdempotentEpochAndResetIdIfNeeded`).

use crate::error::Error;
use crate::proto::ErrorCode;

/// The highest epoch the producer bumps to; past it, it asks for a new producer id (Java's
/// rule: the broker reserves `i16::MAX` for fencing).
const LAST_EPOCH: i16 = i16::MAX - 1;

/// What must happen to the producer's identity before more batches are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Nothing: batches can be numbered.
    None,
    /// Bump the epoch once nothing is in flight.
    Bump,
}

/// A producer id and its epoch, as InitProducerId gives them (the wire's -1 for "none" is
/// `None` of this type wherever there may be none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerId {
    /// The producer id.
    pub id: i64,
    /// Its epoch.
    pub epoch: i16,
}

impl ProducerId {
    /// Id `id` at `epoch`.
    pub fn new(id: i64, epoch: i16) -> Self {
        Self { id, epoch }
    }
}

/// How a batch is numbered for idempotence: the producer id and epoch it was numbered under
/// and the sequence of its first record. A batch without idempotence has none (the wire's
/// -1, -1, -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    /// Producer id and epoch.
    pub producer: ProducerId,
    /// Sequence of the batch's first record.
    pub base_sequence: i32,
}

impl Numbering {
    /// Producer id, epoch and base sequence as a batch header carries them: -1 each for a
    /// batch without a numbering.
    pub fn wire(numbering: Option<Self>) -> (i64, i16, i32) {
        numbering.map_or((-1, -1, -1), |n| {
            (n.producer.id, n.producer.epoch, n.base_sequence)
        })
    }
}

/// The producer id, its epoch, and whether they are usable.
#[derive(Debug, Clone)]
pub struct Idempotence {
    enabled: bool,
    producer: Option<ProducerId>,
    reset: Reset,
    fatal: Option<Error>,
}

impl Idempotence {
    /// Off: batches go out without producer id (-1) and sequences.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            producer: None,
            reset: Reset::None,
            fatal: None,
        }
    }

    /// On, waiting for a producer id.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::disabled()
        }
    }

    /// Whether the producer numbers its batches.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The producer id and epoch, once InitProducerId gave them.
    pub fn producer(&self) -> Option<ProducerId> {
        self.producer
    }

    /// The error that ended the producer, if any.
    pub fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// Batches may be numbered and sent: off, or on with an id and no reset pending.
    pub fn can_send(&self) -> bool {
        self.fatal.is_none()
            && (!self.enabled || (self.producer.is_some() && self.reset == Reset::None))
    }

    /// Whether an InitProducerId request is needed now (on, no id yet, nothing fatal).
    pub fn needs_producer_id(&self) -> bool {
        self.enabled && self.fatal.is_none() && self.producer.is_none()
    }

    /// The pending reset.
    pub fn reset(&self) -> Reset {
        self.reset
    }

    /// A numbered batch left a hole: bump the epoch once nothing is in flight.
    pub fn request_bump(&mut self) {
        if self.enabled && self.fatal.is_none() {
            self.reset = Reset::Bump;
        }
    }

    /// Carries out the pending bump (call only with nothing in flight): the next epoch, or
    /// no id at all when the epochs are used up, so that [`Idempotence::needs_producer_id`]
    /// asks for a new one. Returns whether the sequences must start again at 0.
    pub fn apply_bump(&mut self) -> bool {
        if self.reset != Reset::Bump {
            return false;
        }
        self.reset = Reset::None;
        self.producer = match self.producer {
            Some(producer) if producer.epoch < LAST_EPOCH => Some(ProducerId {
                epoch: producer.epoch + 1,
                ..producer
            }),
            _ => None,
        };
        true
    }

    /// The id and epoch InitProducerId gave. Sequences start again at 0.
    pub fn set_producer_id(&mut self, producer: ProducerId) {
        self.enabled = true;
        self.producer = Some(producer);
        self.reset = Reset::None;
    }

    /// Goes on without idempotence (the brokers cannot give a producer id and it was not
    /// asked for explicitly).
    pub fn disable(&mut self) {
        *self = Self::disabled();
    }

    /// The producer can no longer write: every record fails with `error`.
    pub fn set_fatal(&mut self, error: Error) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }
}

/// The sequence after `count` records from `sequence`: sequences wrap from `i32::MAX` to 0,
/// as Kafka's do.
pub fn advance(sequence: i32, count: i32) -> i32 {
    // In i64 the sum cannot overflow; the remainder is below 2^31.
    let next = (i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1);
    i32::try_from(next).unwrap_or(0)
}

/// Whether sequence `a` comes before `b` in a window of at most 2^30 sequences around them
/// (the accumulator compares batches of one partition that are at most a few thousand
/// records apart).
pub fn precedes(a: i32, b: i32) -> bool {
    let forward = (i64::from(b) - i64::from(a)).rem_euclid(i64::from(i32::MAX) + 1);
    forward != 0 && forward < (1 << 30)
}

/// What to do with a numbered batch the broker refused with `code`, given whether it was
/// the next batch the broker should write (every batch before it acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// An error that has nothing to do with sequences: handle it as usual.
    NotASequenceError,
    /// The broker already has this batch (an old broker's DUPLICATE_SEQUENCE_NUMBER): it
    /// is delivered, at an offset the answer does not say.
    AlreadyWritten,
    /// A batch before it is still unanswered or will be retried: retry it after them.
    RetryInOrder,
    /// The broker no longer knows the producer (its state was removed with old segments):
    /// bump the epoch and retry the batch, which was not written.
    RetryAfterBump,
    /// The broker expected another sequence although every batch before this one was
    /// acknowledged: records may have been lost. Fail the batch and bump the epoch.
    Fail,
    /// The producer was fenced: nothing more can be written.
    Fatal,
}

/// Classifies a partition error of a numbered batch (the Java client's
/// `Sender.canRetry` and `TransactionManager.handleFailedBatch` for idempotent producers).
pub fn verdict(code: ErrorCode, is_next: bool) -> SequenceVerdict {
    match code {
        ErrorCode::DuplicateSequenceNumber => SequenceVerdict::AlreadyWritten,
        ErrorCode::OutOfOrderSequenceNumber if !is_next => SequenceVerdict::RetryInOrder,
        ErrorCode::OutOfOrderSequenceNumber => SequenceVerdict::Fail,
        ErrorCode::UnknownProducerId if !is_next => SequenceVerdict::RetryInOrder,
        ErrorCode::UnknownProducerId => SequenceVerdict::RetryAfterBump,
        ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced => SequenceVerdict::Fatal,
        _ => SequenceVerdict::NotASequenceError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_and_compare_across_the_wrap() {
        assert_eq!(advance(0, 5), 5);
        assert_eq!(advance(i32::MAX, 1), 0);
        assert_eq!(advance(i32::MAX - 2, 10), 7);
        assert!(precedes(5, 6));
        assert!(!precedes(6, 5));
        assert!(!precedes(7, 7));
        assert!(precedes(i32::MAX - 1, 3));
        assert!(!precedes(3, i32::MAX - 1));
    }

    #[test]
    fn bumps_wait_for_a_request_and_run_out_into_a_new_id() {
        let mut state = Idempotence::enabled();
        assert!(state.needs_producer_id() && !state.can_send());
        state.set_producer_id(ProducerId::new(7, 0));
        assert!(state.can_send() && !state.needs_producer_id());
        assert!(!state.apply_bump(), "no bump was asked for");
        state.request_bump();
        assert!(!state.can_send());
        assert!(state.apply_bump());
        assert_eq!(state.producer(), Some(ProducerId::new(7, 1)));
        assert!(state.can_send());
        state.set_producer_id(ProducerId::new(7, LAST_EPOCH));
        state.request_bump();
        assert!(state.apply_bump());
        assert!(state.needs_producer_id(), "epochs used up: a new id");
        assert_eq!(state.producer(), None);
    }

    #[test]
    fn a_fatal_error_stops_everything_and_disabled_never_numbers() {
        let mut state = Idempotence::enabled();
        state.set_producer_id(ProducerId::new(1, 0));
        state.set_fatal(Error::broker(ErrorCode::ProducerFenced));
        assert!(!state.can_send() && !state.needs_producer_id());
        state.request_bump();
        assert_eq!(state.reset(), Reset::None);
        let off = Idempotence::disabled();
        assert!(off.can_send() && !off.needs_producer_id() && !off.is_enabled());
    }

    #[test]
    fn out_of_order_is_retried_only_behind_an_unanswered_batch() {
        use SequenceVerdict::*;
        assert_eq!(
            verdict(ErrorCode::OutOfOrderSequenceNumber, false),
            RetryInOrder
        );
        assert_eq!(verdict(ErrorCode::OutOfOrderSequenceNumber, true), Fail);
        assert_eq!(verdict(ErrorCode::UnknownProducerId, true), RetryAfterBump);
        assert_eq!(
            verdict(ErrorCode::DuplicateSequenceNumber, true),
            AlreadyWritten
        );
        assert_eq!(verdict(ErrorCode::ProducerFenced, false), Fatal);
        assert_eq!(
            verdict(ErrorCode::NotLeaderOrFollower, true),
            NotASequenceError
        );
    }
}
