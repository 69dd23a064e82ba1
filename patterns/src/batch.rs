//! The batch producer: sends many records at once and reports, per record, success or
//! failure; and the labs' resilient send: retries under a [`RetryPolicy`], then the
//! dead-letter topic (then the fallback file) for what still fails.

use franzy::{ProduceError, Producer, ProducerRecord, RecordMetadata};

use crate::classify::{Classify, KafkaErrors};
use crate::dead_letter::{DeadLetterRouter, Failure, Routed};
use crate::processor::WallClock;
use crate::retry::RetryPolicy;
use crate::stats::Counter;
use crate::PatternError;

/// Per-record outcomes of a batch, in the order the records were given.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// One result per record.
    pub results: Vec<Result<RecordMetadata, ProduceError>>,
}

impl BatchReport {
    /// Records written.
    pub fn succeeded(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }

    /// The failures, with their index in the batch.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &ProduceError)> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }

    /// Sends every failure to the dead-letter topic (or fallback file) of `router`, as
    /// the labs do, classified by [`KafkaErrors`]; the routes in failure order.
    pub async fn route_failures(
        &self,
        producer: &Producer,
        router: &DeadLetterRouter,
        clock: &WallClock,
    ) -> Result<Vec<Routed>, PatternError> {
        let mut routed = Vec::new();
        for (_, failed) in self.failures() {
            let failure = Failure::new(
                KafkaErrors.classify(failed),
                failed.error.to_string(),
                1,
                clock.now(),
            )
            .with_error_type(error_type(&failed.error));
            let letter = router.dead_letter_of_unsent(&failed.record, &failure);
            routed.push(router.send(producer, letter).await?);
        }
        Ok(routed)
    }
}

/// Sends every record (without waiting between them, so that they share batches), then
/// waits for every acknowledgement.
pub async fn send_batch(
    producer: &Producer,
    records: impl IntoIterator<Item = ProducerRecord>,
) -> BatchReport {
    let mut pending = Vec::new();
    for record in records {
        pending.push(producer.send(record).await);
    }
    let mut results = Vec::with_capacity(pending.len());
    for sent in pending {
        results.push(match sent {
            Ok(delivery) => delivery.await,
            Err(refused) => Err(refused),
        });
    }
    BatchReport { results }
}

/// Where [`send_or_dead_letter`] put a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Written to its topic.
    Written(RecordMetadata),
    /// Dead-lettered after the retries.
    DeadLettered(Routed),
}

/// The labs' resilient send: `record` is sent and waited for under `retry` (franzy's errors
/// classified by [`KafkaErrors`]; permanent and configuration errors are not retried); if
/// it still fails it goes to `router`'s dead-letter topic with the error headers (or to its
/// fallback file). `Err` when neither took it.
pub async fn send_or_dead_letter(
    producer: &Producer,
    record: ProducerRecord,
    retry: &RetryPolicy,
    router: &DeadLetterRouter,
    clock: &WallClock,
) -> Result<Delivered, PatternError> {
    let stats = router.statistics();
    let result = retry
        .run(&KafkaErrors, |attempt| {
            if attempt > 1 {
                stats.incr(Counter::Retried);
            }
            producer.send_and_wait(record.clone())
        })
        .await;
    match result {
        Ok(metadata) => {
            stats.incr(Counter::Processed);
            Ok(Delivered::Written(metadata))
        }
        Err(gave_up) => {
            let failure = Failure::new(
                gave_up.class,
                gave_up.error.error.to_string(),
                gave_up.attempts,
                clock.now(),
            )
            .with_error_type(error_type(&gave_up.error.error));
            tracing::warn!(topic = %record.topic, error = %gave_up, "sending to the dead-letter topic");
            let letter = router.dead_letter_of_unsent(&record, &failure);
            router
                .send(producer, letter)
                .await
                .map(Delivered::DeadLettered)
        }
    }
}

/// A short name of a franzy error, as the labs write an exception's type name.
pub fn error_type(error: &franzy::Error) -> String {
    match error.code() {
        Some(code) => format!("{code:?}"),
        None => {
            let debug = format!("{error:?}");
            debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("Error")
                .to_string()
        }
    }
}
