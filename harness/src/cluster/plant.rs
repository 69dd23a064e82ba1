//! Deliberate bugs, for testing checkers only.
//!
//! A checker that never fails proves nothing: the fault lab (`franzy lab --plant ...`) turns
//! one of these on to show that its history checker catches each class of anomaly. Each bug
//! fires on a few appends chosen by count (the [`PLANT_FIRST`]th idempotent append, then
//! every [`PLANT_EVERY`]th), never at random, so a planted run is as repeatable as any other.
//! Nothing here runs unless [`crate::ClusterBuilder::plant`] asked for it.

use std::fmt;
use std::str::FromStr;

/// The first idempotent append a planted bug acts on (counted from 1, cluster wide).
pub const PLANT_FIRST: u64 = 10;
/// After the first, a planted bug acts on every this many idempotent appends.
pub const PLANT_EVERY: u64 = 40;

/// A bug the cluster can be told to have. For testing checkers; never in a real run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlantedBug {
    /// The batch is appended, then appended again right after itself (its producer's state
    /// is not consulted for the copy): consumers read its records twice.
    DuplicateAppend,
    /// The batch is acknowledged at the offsets it got, then taken out of the log (its
    /// producer's state still remembers it, so the producer goes on without an error): the
    /// acknowledged records are lost and the next batch takes their offsets.
    DropAcked,
    /// The batch is acknowledged, then swapped with the batch before it in the log: both
    /// batches' records sit at offsets other than the ones acknowledged, in the wrong order.
    Reorder,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 3] = [Self::DuplicateAppend, Self::DropAcked, Self::Reorder];

    /// The name `franzy lab --plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::DuplicateAppend => "duplicate-append",
            Self::DropAcked => "drop-acked",
            Self::Reorder => "reorder",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
                format!("unknown planted bug {name:?} (known: {})", names.join(", "))
            })
    }
}

/// A planted bug and the count of appends it has seen.
#[derive(Debug, Clone)]
pub(crate) struct Plant {
    bug: PlantedBug,
    appends: u64,
    fired: u64,
}

impl Plant {
    pub(crate) fn new(bug: PlantedBug) -> Self {
        Self {
            bug,
            appends: 0,
            fired: 0,
        }
    }

    /// Counts an idempotent append; the bug to apply to it, if this is one it acts on.
    pub(crate) fn on_append(&mut self) -> Option<PlantedBug> {
        self.appends += 1;
        let fires = self.appends >= PLANT_FIRST && (self.appends - PLANT_FIRST) % PLANT_EVERY == 0;
        fires.then(|| {
            self.fired += 1;
            self.bug
        })
    }

    /// How often the bug acted.
    pub(crate) fn fired(&self) -> u64 {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_bug_fires_by_count() {
        for bug in PlantedBug::ALL {
            assert_eq!(bug.name().parse::<PlantedBug>(), Ok(bug));
        }
        assert!("leak".parse::<PlantedBug>().is_err());
        let mut plant = Plant::new(PlantedBug::Reorder);
        let fired: Vec<u64> = (1..=100).filter(|_| plant.on_append().is_some()).collect();
        assert_eq!(
            fired,
            vec![
                PLANT_FIRST,
                PLANT_FIRST + PLANT_EVERY,
                PLANT_FIRST + 2 * PLANT_EVERY
            ]
        );
        assert_eq!(plant.fired(), 3);
    }
}
