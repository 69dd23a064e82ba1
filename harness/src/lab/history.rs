//! What a lab run recorded, and all the checker may look at: what each producer was told
//! about each record it sent, what each reader received (with offsets), and how each
//! transaction ended. Nothing here knows about the cluster; a history can be written by
//! hand (the checker's tests do) or recorded from any client.

/// Every record a workload wrote is identified by a value of its own: the lab writes the
/// record's number, and reads it back from the record's value.
pub type RecordId = u64;

/// A run's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The producers, by index (a [`Send::producer`]).
    pub producers: Vec<ProducerInfo>,
    /// Every record sent, in the order each producer sent them.
    pub sends: Vec<Send>,
    /// What each reader received, in the order it received it.
    pub readers: Vec<Reader>,
    /// Transactions, by id (a [`Send::transaction`]).
    pub transactions: Vec<Transaction>,
}

/// A producer of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerInfo {
    /// A name for reports.
    pub name: String,
    /// Whether it is idempotent: then, within a partition, the order of its records' offsets
    /// must be the order it sent them in.
    pub idempotent: bool,
}

/// One record sent and what its producer was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// Which producer ([`History::producers`]).
    pub producer: usize,
    /// The record's id.
    pub id: RecordId,
    /// The transaction it was sent in, if any ([`History::transactions`]).
    pub transaction: Option<usize>,
    /// What the producer said.
    pub outcome: SendOutcome,
}

/// What a producer said about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged at this partition and offset.
    Acked {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// Failed, and certainly not written (`Persisted::No`).
    NotWritten,
    /// Failed, but may have been written (`Persisted::Possibly`).
    MaybeWritten,
    /// The producer never said (its delivery never completed): itself an anomaly.
    Unresolved,
}

/// One reader (a consumer) and what it received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reader {
    /// A name for reports.
    pub name: String,
    /// Whether it read with `isolation.level=read_committed`.
    pub read_committed: bool,
    /// Whether it read every partition to its end after the writes were over: only such a
    /// reader can tell that an acknowledged record is missing.
    pub complete: bool,
    /// What it received and did, in order.
    pub events: Vec<ReadEvent>,
}

/// One thing a reader received or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEvent {
    /// A record: its partition, offset, and id (`None` when its value was no id at all).
    Record {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The id read from the value.
        id: Option<RecordId>,
    },
    /// The reader moved its position on purpose (after an error): the next offset of this
    /// partition may be anything.
    Seek {
        /// The partition.
        partition: i32,
    },
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// Committed: its records must all be visible to read_committed readers.
    Committed,
    /// Aborted: read_committed readers must see none of its records.
    Aborted,
    /// The producer does not know (the commit or abort failed).
    Unknown,
}
