//! The leader epoch history of one partition: which epoch began at which offset (KIP-101,
//! KIP-279; Kafka's `LeaderEpochFileCache`). It answers OffsetForLeaderEpoch and the leader
//! epoch of ListOffsets answers.
//!
//! Entries have strictly increasing epochs *and* strictly increasing start offsets: a new
//! epoch that starts at the same offset as the one before it (a leader change with no append
//! in between) replaces it, as Kafka's cache does.

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The log end offset when the epoch began.
    pub start_offset: i64,
}

/// The epochs of one partition, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` begins at `start_offset`. Entries that the new one contradicts
    /// (an epoch at least as new, or a start offset at least as late) are dropped first.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 || start_offset < 0 {
            return;
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch && last.start_offset <= start_offset {
                return;
            }
        }
        while self
            .entries
            .last()
            .is_some_and(|e| e.epoch >= epoch || e.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }

    /// The epoch that the record at `offset` was written in.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .take_while(|e| e.start_offset <= offset)
            .last()
            .map(|e| e.epoch)
    }

    /// OffsetForLeaderEpoch's answer for `requested` epoch on a log ending at
    /// `log_end_offset`: the largest known epoch not above `requested` and the offset at
    /// which the epoch after it began (the log end offset for the latest epoch).
    /// `(-1, -1)` when the epoch is unknown or newer than every known one.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if requested < 0 {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return UNDEFINED;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            // Older than anything still known (history truncated by DeleteRecords).
            None => (requested, higher.start_offset),
        }
    }

    /// Forgets epochs that ended before `log_start_offset`; the epoch covering it is kept,
    /// starting there.
    pub fn truncate_from_start(&mut self, log_start_offset: i64) {
        let removed = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= log_start_offset)
            .count();
        if removed == 0 {
            return;
        }
        let kept_epoch = self.entries[removed - 1].epoch;
        self.entries.drain(..removed);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: kept_epoch,
                start_offset: log_start_offset,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(pairs: &[(i32, i64)]) -> LeaderEpochs {
        let mut e = LeaderEpochs::default();
        for &(epoch, start) in pairs {
            e.assign(epoch, start);
        }
        e
    }

    #[test]
    fn an_epoch_starting_where_the_last_did_replaces_it() {
        let e = epochs(&[(0, 0), (1, 5), (2, 5), (3, 9)]);
        let got: Vec<_> = e
            .entries()
            .iter()
            .map(|x| (x.epoch, x.start_offset))
            .collect();
        assert_eq!(got, vec![(0, 0), (2, 5), (3, 9)]);
    }

    #[test]
    fn end_offsets_follow_kip_101() {
        let e = epochs(&[(0, 0), (2, 5), (3, 9)]);
        assert_eq!(e.end_offset_for(3, 12), (3, 12));
        assert_eq!(e.end_offset_for(2, 12), (2, 9));
        // Epoch 1 never had an entry: the floor is epoch 0, which ended at 5.
        assert_eq!(e.end_offset_for(1, 12), (0, 5));
        assert_eq!(e.end_offset_for(0, 12), (0, 5));
        assert_eq!(e.end_offset_for(4, 12), (-1, -1));
        assert_eq!(e.end_offset_for(-1, 12), (-1, -1));
        assert_eq!(e.epoch_for_offset(4), Some(0));
        assert_eq!(e.epoch_for_offset(5), Some(2));
        assert_eq!(e.epoch_for_offset(100), Some(3));
    }

    #[test]
    fn truncation_from_start_keeps_the_covering_epoch() {
        let mut e = epochs(&[(0, 0), (2, 5), (3, 9)]);
        e.truncate_from_start(7);
        let got: Vec<_> = e
            .entries()
            .iter()
            .map(|x| (x.epoch, x.start_offset))
            .collect();
        assert_eq!(got, vec![(2, 7), (3, 9)]);
        assert_eq!(e.end_offset_for(0, 12), (0, 7));
    }
}
