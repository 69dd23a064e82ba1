//! The history checker: reads a [`History`] and nothing else (not the cluster, not the
//! logs) and says what went wrong. Jepsen's Kafka checker is the inspiration (lost writes,
//! duplicates, order, aborted reads); the rules here are franzy's own:
//!
//! - **lost**: a record acknowledged (and, in a transaction, committed) that a reader who
//!   read every partition to its end never saw. A read_committed reader is not expected to
//!   see records of aborted transactions.
//! - **duplicated**: a record seen at two different offsets (by any readers). A record whose
//!   producer said "maybe written" (`Persisted::Possibly`) may show up once, or not at all;
//!   twice is a duplicate like any other.
//! - **reordered**: within a partition, the records of one idempotent producer must sit in
//!   the order it sent them. Counted once per record found before one sent earlier.
//! - **misplaced**: an acknowledged record read only at offsets other than the one it was
//!   acknowledged at.
//! - **aborted_reads**: a read_committed reader saw a record of an aborted transaction.
//! - **backwards**: a reader received, in one partition, an offset at or below one it had
//!   already received there, without seeking in between.
//! - **unexpected**: a record read that nobody sent, or that its producer was told was
//!   certainly not written (`Persisted::No`).
//! - **inconsistent**: two readers saw different records at the same offset.
//! - **unresolved**: a send whose outcome the producer never reported.
//!
//! Every class counts towards [`Findings::anomalies`]; a clean history has none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use super::history::{History, ReadEvent, RecordId, SendOutcome, Transaction};

/// How many example lines [`Findings::notes`] keeps.
const MAX_NOTES: usize = 20;

/// What the checker found, by class (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Acknowledged records no complete reader saw.
    pub lost: usize,
    /// Records seen at more than one offset.
    pub duplicated: usize,
    /// Records of an idempotent producer found after a later one of the same partition.
    pub reordered: usize,
    /// Acknowledged records never read at the offset they were acknowledged at.
    pub misplaced: usize,
    /// Records of aborted transactions read by read_committed readers.
    pub aborted_reads: usize,
    /// Offsets received at or below an earlier one of the same partition and reader.
    pub backwards: usize,
    /// Records read that nobody sent, or that were certainly not written.
    pub unexpected: usize,
    /// Offsets two readers saw different records at.
    pub inconsistent: usize,
    /// Sends never resolved.
    pub unresolved: usize,
    /// The first few anomalies, described.
    pub notes: Vec<String>,
}

impl Findings {
    /// Every anomaly, all classes together.
    pub fn anomalies(&self) -> usize {
        self.lost
            + self.duplicated
            + self.reordered
            + self.misplaced
            + self.aborted_reads
            + self.backwards
            + self.unexpected
            + self.inconsistent
            + self.unresolved
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(text());
        }
    }

    /// The classes with a count, as `name=count` words (for a failing run's report).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, count) in [
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("reordered", self.reordered),
            ("misplaced", self.misplaced),
            ("aborted_reads", self.aborted_reads),
            ("backwards", self.backwards),
            ("unexpected", self.unexpected),
            ("inconsistent", self.inconsistent),
            ("unresolved", self.unresolved),
        ] {
            if count > 0 {
                let _ = write!(
                    out,
                    "{}{name}={count}",
                    if out.is_empty() { "" } else { " " }
                );
            }
        }
        out
    }
}

/// Checks a history; see the module doc for the rules.
pub fn check(history: &History) -> Findings {
    let mut findings = Findings::default();
    // Each record's send, and its place in its producer's order.
    let mut sends: HashMap<RecordId, (usize, usize)> = HashMap::with_capacity(history.sends.len());
    let mut sent_by_producer = vec![0usize; history.producers.len()];
    for (index, send) in history.sends.iter().enumerate() {
        let rank = sent_by_producer.get(send.producer).copied().unwrap_or(0);
        if let Some(count) = sent_by_producer.get_mut(send.producer) {
            *count += 1;
        }
        sends.insert(send.id, (index, rank));
        if send.outcome == SendOutcome::Unresolved {
            findings.unresolved += 1;
            findings.note(|| format!("record {} was never resolved by its producer", send.id));
        }
    }
    let transaction = |index: usize| {
        history.sends[index]
            .transaction
            .and_then(|t| history.transactions.get(t).copied())
    };

    // What sits where, as all readers together saw it, and where each record was seen.
    let mut at: BTreeMap<(i32, i64), Option<RecordId>> = BTreeMap::new();
    let mut seen_at: BTreeMap<RecordId, BTreeSet<(i32, i64)>> = BTreeMap::new();
    for reader in &history.readers {
        let mut last: HashMap<i32, i64> = HashMap::new();
        for event in &reader.events {
            let (partition, offset, id) = match *event {
                ReadEvent::Seek { partition } => {
                    last.remove(&partition);
                    continue;
                }
                ReadEvent::Record {
                    partition,
                    offset,
                    id,
                } => (partition, offset, id),
            };
            if let Some(&previous) = last.get(&partition) {
                if offset <= previous {
                    findings.backwards += 1;
                    findings.note(|| {
                        format!(
                            "{} received partition {partition} offset {offset} after offset {previous}",
                            reader.name
                        )
                    });
                }
            }
            last.insert(partition, offset);
            match at.get(&(partition, offset)) {
                Some(before) if *before != id => {
                    findings.inconsistent += 1;
                    findings.note(|| {
                        format!(
                            "partition {partition} offset {offset} held {before:?} for one reader, {id:?} for {}",
                            reader.name
                        )
                    });
                }
                Some(_) => {}
                None => {
                    at.insert((partition, offset), id);
                }
            }
            let Some(id) = id else {
                continue;
            };
            seen_at.entry(id).or_default().insert((partition, offset));
            if reader.read_committed {
                let aborted = sends
                    .get(&id)
                    .is_some_and(|&(index, _)| transaction(index) == Some(Transaction::Aborted));
                if aborted {
                    findings.aborted_reads += 1;
                    findings.note(|| {
                        format!(
                            "{} (read_committed) read record {id} of an aborted transaction at partition {partition} offset {offset}",
                            reader.name
                        )
                    });
                }
            }
        }
    }

    // Records read that should not exist.
    let mut unexpected_ids = BTreeSet::new();
    for (&(partition, offset), id) in &at {
        let known = id.and_then(|id| sends.get(&id).map(|&(index, _)| (id, index)));
        match known {
            None => {
                findings.unexpected += 1;
                findings.note(|| {
                    format!("partition {partition} offset {offset} holds {id:?}, which nobody sent")
                });
            }
            Some((id, index)) => {
                if history.sends[index].outcome == SendOutcome::NotWritten
                    && unexpected_ids.insert(id)
                {
                    findings.unexpected += 1;
                    findings.note(|| {
                        format!(
                            "record {id} was reported certainly not written, yet read at partition {partition} offset {offset}"
                        )
                    });
                }
            }
        }
    }

    // Duplicates and misplaced acknowledgements.
    for (&id, places) in &seen_at {
        if places.len() > 1 {
            findings.duplicated += 1;
            findings.note(|| format!("record {id} read at {places:?}"));
        }
        let acked = sends
            .get(&id)
            .and_then(|&(index, _)| match history.sends[index].outcome {
                SendOutcome::Acked { partition, offset } => Some((partition, offset)),
                _ => None,
            });
        if let Some(place) = acked {
            if !places.contains(&place) {
                findings.misplaced += 1;
                findings.note(|| {
                    format!("record {id} was acknowledged at {place:?} but read at {places:?}")
                });
            }
        }
    }

    // Order: within a partition, each idempotent producer's records in its send order, as
    // each reader received them (readers may have seen the log at different times).
    let mut reordered: BTreeSet<RecordId> = BTreeSet::new();
    for reader in &history.readers {
        let mut walked: BTreeSet<RecordId> = BTreeSet::new();
        let mut last_rank: BTreeMap<(i32, usize), (usize, RecordId)> = BTreeMap::new();
        for event in &reader.events {
            let ReadEvent::Record {
                partition,
                offset,
                id: Some(id),
            } = *event
            else {
                continue;
            };
            let Some(&(index, rank)) = sends.get(&id) else {
                continue;
            };
            let producer = history.sends[index].producer;
            let idempotent = history
                .producers
                .get(producer)
                .is_some_and(|p| p.idempotent);
            if !idempotent || !walked.insert(id) {
                continue;
            }
            if let Some(&(previous_rank, previous)) = last_rank.get(&(partition, producer)) {
                if rank < previous_rank {
                    if reordered.insert(id) {
                        findings.reordered += 1;
                        findings.note(|| {
                            format!(
                                "{}: partition {partition}: record {id} (sent earlier) at offset {offset} came after record {previous}",
                                reader.name
                            )
                        });
                    }
                    continue;
                }
            }
            last_rank.insert((partition, producer), (rank, id));
        }
    }

    // Lost: what a complete reader should have seen and did not.
    let mut lost: BTreeSet<RecordId> = BTreeSet::new();
    for reader in history.readers.iter().filter(|r| r.complete) {
        let read: BTreeSet<RecordId> = reader
            .events
            .iter()
            .filter_map(|e| match e {
                ReadEvent::Record { id, .. } => *id,
                ReadEvent::Seek { .. } => None,
            })
            .collect();
        for (index, send) in history.sends.iter().enumerate() {
            let SendOutcome::Acked { partition, offset } = send.outcome else {
                continue;
            };
            let required = match transaction(index) {
                None | Some(Transaction::Committed) => true,
                Some(Transaction::Aborted) | Some(Transaction::Unknown) => {
                    !reader.read_committed && send.transaction.is_some()
                }
            };
            if required && !read.contains(&send.id) && lost.insert(send.id) {
                findings.lost += 1;
                findings.note(|| {
                    format!(
                        "record {} acknowledged at partition {partition} offset {offset} was never read by {}",
                        send.id, reader.name
                    )
                });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::history::{ProducerInfo, Reader, Send};
    use super::*;

    fn producer() -> Vec<ProducerInfo> {
        vec![ProducerInfo {
            name: "p".into(),
            idempotent: true,
        }]
    }

    fn acked(id: RecordId, partition: i32, offset: i64) -> Send {
        Send {
            producer: 0,
            id,
            transaction: None,
            outcome: SendOutcome::Acked { partition, offset },
        }
    }

    fn failed(id: RecordId, outcome: SendOutcome) -> Send {
        Send {
            producer: 0,
            id,
            transaction: None,
            outcome,
        }
    }

    fn record(partition: i32, offset: i64, id: RecordId) -> ReadEvent {
        ReadEvent::Record {
            partition,
            offset,
            id: Some(id),
        }
    }

    fn reader(complete: bool, events: Vec<ReadEvent>) -> Reader {
        Reader {
            name: "reader".into(),
            read_committed: false,
            complete,
            events,
        }
    }

    fn history(sends: Vec<Send>, readers: Vec<Reader>) -> History {
        History {
            producers: producer(),
            sends,
            readers,
            transactions: Vec::new(),
        }
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let h = history(
            vec![acked(1, 0, 0), acked(2, 1, 0), acked(3, 0, 1)],
            vec![reader(
                true,
                vec![record(0, 0, 1), record(1, 0, 2), record(0, 1, 3)],
            )],
        );
        assert_eq!(check(&h), Findings::default());
    }

    #[test]
    fn an_acknowledged_record_nobody_read_is_lost_only_for_a_complete_reader() {
        let sends = vec![acked(1, 0, 0), acked(2, 0, 1)];
        let partial = history(sends.clone(), vec![reader(false, vec![record(0, 0, 1)])]);
        assert_eq!(check(&partial).anomalies(), 0);
        let complete = history(sends, vec![reader(true, vec![record(0, 0, 1)])]);
        let findings = check(&complete);
        assert_eq!((findings.lost, findings.anomalies()), (1, 1));
        assert!(
            findings.notes[0].contains("record 2"),
            "{:?}",
            findings.notes
        );
    }

    #[test]
    fn maybe_written_records_may_show_up_once_or_not_at_all_but_not_twice() {
        let sends = vec![
            acked(1, 0, 0),
            failed(2, SendOutcome::MaybeWritten),
            failed(3, SendOutcome::MaybeWritten),
        ];
        let once = history(
            sends.clone(),
            vec![reader(true, vec![record(0, 0, 1), record(0, 1, 2)])],
        );
        assert_eq!(check(&once), Findings::default());
        let twice = history(
            sends,
            vec![reader(
                true,
                vec![record(0, 0, 1), record(0, 1, 2), record(0, 2, 2)],
            )],
        );
        let findings = check(&twice);
        assert_eq!((findings.duplicated, findings.anomalies()), (1, 1));
    }

    #[test]
    fn a_record_certainly_not_written_must_not_be_read() {
        let h = history(
            vec![acked(1, 0, 0), failed(2, SendOutcome::NotWritten)],
            vec![reader(true, vec![record(0, 0, 1), record(0, 1, 2)])],
        );
        let findings = check(&h);
        assert_eq!((findings.unexpected, findings.anomalies()), (1, 1));
        // Nor a record nobody sent, or a value that is no id.
        let h = history(
            vec![acked(1, 0, 0)],
            vec![reader(
                true,
                vec![
                    record(0, 0, 1),
                    record(0, 1, 99),
                    ReadEvent::Record {
                        partition: 0,
                        offset: 2,
                        id: None,
                    },
                ],
            )],
        );
        assert_eq!(check(&h).unexpected, 2);
    }

    #[test]
    fn a_duplicate_is_counted_once_not_again_as_a_reorder() {
        // The batch holding 1 and 2 was appended twice.
        let h = history(
            vec![acked(1, 0, 0), acked(2, 0, 1), acked(3, 0, 4)],
            vec![reader(
                true,
                vec![
                    record(0, 0, 1),
                    record(0, 1, 2),
                    record(0, 2, 1),
                    record(0, 3, 2),
                    record(0, 4, 3),
                ],
            )],
        );
        let findings = check(&h);
        assert_eq!(findings.duplicated, 2);
        assert_eq!(findings.reordered, 0);
        assert_eq!(findings.anomalies(), 2);
    }

    #[test]
    fn swapped_records_are_reordered_and_misplaced() {
        let h = history(
            vec![acked(1, 0, 0), acked(2, 0, 1), acked(3, 1, 0)],
            vec![reader(
                true,
                vec![record(0, 0, 2), record(0, 1, 1), record(1, 0, 3)],
            )],
        );
        let findings = check(&h);
        assert_eq!(findings.reordered, 1);
        assert_eq!(findings.misplaced, 2);
        assert_eq!(findings.lost, 0);
    }

    #[test]
    fn a_reorder_one_reader_saw_counts_even_if_another_read_the_log_before() {
        // The first reader read 1 at offset 0 before the log was rewritten; the second
        // finds 2 there and 1 after it.
        let h = history(
            vec![acked(1, 0, 0), acked(2, 0, 1)],
            vec![
                reader(false, vec![record(0, 0, 1)]),
                reader(true, vec![record(0, 0, 2), record(0, 1, 1)]),
            ],
        );
        let findings = check(&h);
        assert_eq!(findings.reordered, 1, "{findings:?}");
        assert!(findings.inconsistent > 0);
    }

    #[test]
    fn order_is_per_producer_and_partition_and_only_for_idempotent_producers() {
        let mut h = history(
            vec![
                acked(1, 0, 1),
                Send {
                    producer: 1,
                    id: 2,
                    transaction: None,
                    outcome: SendOutcome::Acked {
                        partition: 0,
                        offset: 0,
                    },
                },
                acked(3, 1, 0),
            ],
            vec![reader(
                true,
                vec![record(0, 0, 2), record(0, 1, 1), record(1, 0, 3)],
            )],
        );
        h.producers.push(ProducerInfo {
            name: "q".into(),
            idempotent: true,
        });
        assert_eq!(check(&h), Findings::default());
        // A producer that is not idempotent may reorder its own records.
        let mut h = history(
            vec![acked(1, 0, 1), acked(2, 0, 0)],
            vec![reader(true, vec![record(0, 0, 2), record(0, 1, 1)])],
        );
        h.producers[0].idempotent = false;
        assert_eq!(check(&h), Findings::default());
    }

    #[test]
    fn offsets_going_backwards_count_unless_the_reader_seeked() {
        let sends = vec![acked(1, 0, 0), acked(2, 0, 1)];
        let again = history(
            sends.clone(),
            vec![reader(
                true,
                vec![record(0, 0, 1), record(0, 1, 2), record(0, 1, 2)],
            )],
        );
        assert_eq!(check(&again).backwards, 1);
        let seeked = history(
            sends,
            vec![reader(
                true,
                vec![
                    record(0, 0, 1),
                    record(0, 1, 2),
                    ReadEvent::Seek { partition: 0 },
                    record(0, 0, 1),
                    record(0, 1, 2),
                ],
            )],
        );
        assert_eq!(check(&seeked), Findings::default());
    }

    #[test]
    fn two_readers_disagreeing_on_an_offset_is_inconsistent() {
        let h = history(
            vec![acked(1, 0, 0), failed(2, SendOutcome::MaybeWritten)],
            vec![
                reader(true, vec![record(0, 0, 1)]),
                reader(false, vec![record(0, 0, 2)]),
            ],
        );
        let findings = check(&h);
        assert_eq!(findings.inconsistent, 1);
    }

    #[test]
    fn read_committed_readers_must_not_see_aborted_records_but_must_see_committed_ones() {
        let mut sends = vec![acked(1, 0, 0), acked(2, 0, 1), acked(3, 0, 3)];
        sends[0].transaction = Some(0);
        sends[1].transaction = Some(1);
        sends[2].transaction = Some(2);
        let committed_reader = |events| Reader {
            name: "rc".into(),
            read_committed: true,
            complete: true,
            events,
        };
        let mut h = history(
            sends,
            vec![committed_reader(vec![record(0, 0, 1), record(0, 3, 3)])],
        );
        h.transactions = vec![
            Transaction::Committed,
            Transaction::Aborted,
            Transaction::Unknown,
        ];
        // 2 was aborted: not seeing it is right; 3's transaction is unknown: either is fine.
        assert_eq!(check(&h), Findings::default());
        h.readers[0].events.insert(1, record(0, 1, 2));
        let findings = check(&h);
        assert_eq!((findings.aborted_reads, findings.anomalies()), (1, 1));
        // A committed record missing is lost; an uncommitted reader must see aborted ones too.
        h.readers = vec![committed_reader(vec![record(0, 3, 3)])];
        assert_eq!(check(&h).lost, 1);
        h.readers = vec![reader(true, vec![record(0, 0, 1), record(0, 3, 3)])];
        assert_eq!(check(&h).lost, 1, "the aborted record is in the log");
    }

    #[test]
    fn unresolved_sends_are_anomalies() {
        let h = history(
            vec![acked(1, 0, 0), failed(2, SendOutcome::Unresolved)],
            vec![reader(true, vec![record(0, 0, 1)])],
        );
        let findings = check(&h);
        assert_eq!((findings.unresolved, findings.anomalies()), (1, 1));
        assert_eq!(findings.summary(), "unresolved=1");
    }
}
