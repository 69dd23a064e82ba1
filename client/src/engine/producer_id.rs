//! Getting a producer id: the InitProducerId state machine of an idempotent producer
//! without a transactional id (KIP-98; KIP-360 for new ids after the epochs run out).
//!
//! ```text
//!            needed (idempotence on, no id, records wait, nothing in flight)
//!   Idle ───────────────────────────────▶ InFlight ──answer──▶ Assigned(id, epoch)
//!    ▲  ▲                                   │
//!    │  └──── backoff (retriable error) ◀───┤
//!    │                                      ├── no InitProducerId, idempotence by default
//!    │                                      │      ──▶ Disable (go on without)
//!    │                                      └── anything else ──▶ Fatal
//!    └── epochs used up (the accumulator's bump drops the id): needed again
//! ```
//!
//! A broker that does not know InitProducerId (no version of the API, or
//! UNSUPPORTED_VERSION) turns idempotence off when `enable.idempotence` was left at its
//! default, with a warning, as Java 3.x does for settings that imply it; when it was set
//! explicitly that is fatal. Retriable errors (no broker answered, COORDINATOR_LOAD_IN_PROGRESS,
//! ...) are retried with `retry.backoff.ms` doubling to `retry.backoff.max.ms`; any other
//! error ends the producer.
//!
//! Call order (time is an argument): [`ProducerIdState::poll_request`] in each step, given
//! whether the accumulator needs an id ([`Accumulator::needs_producer_id`]); send the
//! [`request`] it allows to any broker; feed the answer, parsed with [`parse_response`] (or
//! the request's failure), to [`ProducerIdState::handle_response`] and act on the
//! [`ProducerIdOutcome`]; sleep no later than [`ProducerIdState::poll_timeout`].
//!
//! [`Accumulator::needs_producer_id`]: super::accumulator::Accumulator::needs_producer_id

use std::time::{Duration, Instant};

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use super::backoff::{Backoff, Rng};
use super::idempotence::ProducerId;
use crate::error::Error;
use crate::proto::ErrorCode;

/// `transaction.timeout.ms` sent with InitProducerId, the Java client's default; brokers
/// ignore it without a transactional id.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// The InitProducerId request of a producer without a transactional id: no id and epoch
/// to continue from (-1, -1), so the broker hands out a new id at epoch 0.
pub fn request() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}

/// The producer id and epoch of an InitProducerId answer, or its error; a negative id or
/// epoch without an error is the broker breaking the protocol.
pub fn parse_response(body: &InitProducerIdResponse) -> Result<ProducerId, Error> {
    match ErrorCode::try_from_code(body.error_code) {
        None if body.producer_id.0 >= 0 && body.producer_epoch >= 0 => {
            Ok(ProducerId::new(body.producer_id.0, body.producer_epoch))
        }
        None => Err(Error::Protocol {
            peer: "broker".into(),
            reason: format!(
                "InitProducerId gave producer id {} epoch {}",
                body.producer_id.0, body.producer_epoch
            ),
        }),
        Some(code) => Err(Error::Broker {
            code,
            context: Some("InitProducerId".into()),
        }),
    }
}

/// What to do with the answer to an InitProducerId request.
#[derive(Debug, Clone)]
pub enum ProducerIdOutcome {
    /// Number batches with this id and epoch.
    Assigned(ProducerId),
    /// The brokers cannot give an id and idempotence was only on by default: go on without
    /// (the error says why, for the warning).
    Disable(Error),
    /// Try again after `wait`.
    Retry {
        /// Why the request failed.
        error: Error,
        /// The backoff before the next request.
        wait: Duration,
    },
    /// The producer cannot go on.
    Fatal(Error),
}

/// The InitProducerId request state of one producer.
#[derive(Debug, Clone)]
pub struct ProducerIdState {
    /// `enable.idempotence` was set explicitly: no id is fatal rather than "go on without".
    explicit: bool,
    backoff: Backoff,
    in_flight: bool,
    /// No request before this (backing off after a failure).
    not_before: Option<Instant>,
}

impl ProducerIdState {
    /// Retries `retry_backoff` apart at first, backing off up to `retry_backoff_max`;
    /// `explicit` when `enable.idempotence=true` was given.
    pub fn new(explicit: bool, retry_backoff: Duration, retry_backoff_max: Duration) -> Self {
        Self {
            explicit,
            backoff: Backoff::new(retry_backoff, retry_backoff_max),
            in_flight: false,
            not_before: None,
        }
    }

    /// Whether a request is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The request to send now, if an id is `needed`, none is in flight and no backoff runs.
    /// A request returned is in flight until [`ProducerIdState::handle_response`].
    pub fn poll_request(&mut self, needed: bool, now: Instant) -> Option<InitProducerIdRequest> {
        if !needed || self.in_flight || self.not_before.is_some_and(|at| at > now) {
            return None;
        }
        self.in_flight = true;
        Some(request())
    }

    /// When a backoff ends, if an id is `needed` and none is in flight.
    pub fn poll_timeout(&self, needed: bool, now: Instant) -> Option<Instant> {
        if !needed || self.in_flight {
            return None;
        }
        self.not_before.filter(|at| *at > now)
    }

    /// The request in flight was answered (or failed) with `result` at `now`.
    pub fn handle_response(
        &mut self,
        result: Result<ProducerId, Error>,
        now: Instant,
        rng: &mut Rng,
    ) -> ProducerIdOutcome {
        self.in_flight = false;
        match result {
            Ok(producer) => {
                self.backoff.reset();
                self.not_before = None;
                ProducerIdOutcome::Assigned(producer)
            }
            Err(error) if is_unsupported(&error) && !self.explicit => {
                ProducerIdOutcome::Disable(error)
            }
            Err(error) if error.is_retriable() => {
                let wait = self.backoff.next_delay(rng);
                self.not_before = Some(now + wait);
                ProducerIdOutcome::Retry { error, wait }
            }
            Err(error) => ProducerIdOutcome::Fatal(error),
        }
    }
}

/// The brokers do not know InitProducerId: no version in common, or UNSUPPORTED_VERSION.
fn is_unsupported(error: &Error) -> bool {
    matches!(
        error,
        Error::UnsupportedVersion { .. }
            | Error::Broker {
                code: ErrorCode::UnsupportedVersion,
                ..
            }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ApiKey;

    const MS: Duration = Duration::from_millis(1);

    fn state(explicit: bool) -> (ProducerIdState, Rng) {
        (
            ProducerIdState::new(explicit, 100 * MS, 1000 * MS),
            Rng::new(3),
        )
    }

    fn unsupported() -> Error {
        Error::UnsupportedVersion {
            address: "b:9092".into(),
            api: ApiKey::InitProducerId,
        }
    }

    #[test]
    fn one_request_when_needed_and_the_answer_assigns_the_id() {
        let (mut state, mut rng) = state(false);
        let now = Instant::now();
        assert!(state.poll_request(false, now).is_none(), "not needed");
        let request = state.poll_request(true, now).expect("needed");
        assert_eq!((request.producer_id.0, request.producer_epoch), (-1, -1));
        assert!(request.transactional_id.is_none());
        assert!(state.poll_request(true, now).is_none(), "one in flight");
        assert_eq!(state.poll_timeout(true, now), None, "the answer wakes");
        let outcome = state.handle_response(Ok(ProducerId::new(1000, 0)), now, &mut rng);
        assert!(matches!(outcome, ProducerIdOutcome::Assigned(p) if p == ProducerId::new(1000, 0)));
        assert!(!state.in_flight());
    }

    #[test]
    fn retriable_failures_retry_with_backoff() {
        let (mut state, mut rng) = state(true);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..4 {
            assert!(state.poll_request(true, now).is_some());
            let outcome = state.handle_response(
                Err(Error::broker(ErrorCode::CoordinatorLoadInProgress)),
                now,
                &mut rng,
            );
            let ProducerIdOutcome::Retry { wait, .. } = outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            assert!(
                state.poll_request(true, now + wait - MS).is_none(),
                "backing off"
            );
            assert_eq!(state.poll_timeout(true, now), Some(now + wait));
            assert_eq!(state.poll_timeout(false, now), None, "no longer needed");
            waits.push(wait);
            now += wait;
        }
        for (wait, base) in waits.iter().zip([100u64, 200, 400, 800]) {
            let ms = wait.as_millis() as u64;
            assert!(ms >= base * 8 / 10 && ms <= base * 12 / 10, "{waits:?}");
        }
        assert!(state.poll_request(true, now).is_some());
        assert!(matches!(
            state.handle_response(Ok(ProducerId::new(1, 0)), now, &mut rng),
            ProducerIdOutcome::Assigned(_)
        ));
        // The backoff starts over after a success.
        assert!(state.poll_request(true, now).is_some());
        let ProducerIdOutcome::Retry { wait, .. } =
            state.handle_response(Err(Error::RequestTimeout(MS)), now, &mut rng)
        else {
            panic!("a timeout is retriable");
        };
        assert!(wait <= 120 * MS, "{wait:?}");
    }

    #[test]
    fn no_init_producer_id_disables_idempotence_by_default_and_is_fatal_when_asked_for() {
        let now = Instant::now();
        for error in [unsupported(), Error::broker(ErrorCode::UnsupportedVersion)] {
            let (mut implicit, mut rng) = state(false);
            assert!(implicit.poll_request(true, now).is_some());
            assert!(matches!(
                implicit.handle_response(Err(error.clone()), now, &mut rng),
                ProducerIdOutcome::Disable(_)
            ));
            let (mut explicit, mut rng) = state(true);
            assert!(explicit.poll_request(true, now).is_some());
            assert!(matches!(
                explicit.handle_response(Err(error), now, &mut rng),
                ProducerIdOutcome::Fatal(_)
            ));
        }
        let (mut state, mut rng) = state(false);
        assert!(state.poll_request(true, now).is_some());
        assert!(matches!(
            state.handle_response(
                Err(Error::broker(ErrorCode::ClusterAuthorizationFailed)),
                now,
                &mut rng
            ),
            ProducerIdOutcome::Fatal(_)
        ));
    }

    #[test]
    fn answers_are_parsed_and_checked() {
        use kafka_protocol::messages::ProducerId as WireId;
        let ok = InitProducerIdResponse::default()
            .with_producer_id(WireId(1000))
            .with_producer_epoch(2);
        assert_eq!(parse_response(&ok).ok(), Some(ProducerId::new(1000, 2)));
        let negative = InitProducerIdResponse::default()
            .with_producer_id(WireId(-1))
            .with_producer_epoch(0);
        assert!(matches!(
            parse_response(&negative),
            Err(Error::Protocol { .. })
        ));
        let refused = InitProducerIdResponse::default()
            .with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code());
        assert_eq!(
            parse_response(&refused).ok().map(|_| ()),
            None,
            "an error code is an error"
        );
        assert_eq!(
            parse_response(&refused).err().and_then(|e| e.code()),
            Some(ErrorCode::TransactionalIdAuthorizationFailed)
        );
    }
}
