//! Keyed deadlines, Kafka's coordinator `timer.schedule(key, ...)` / `timer.cancel(key)`:
//! scheduling a key again replaces its deadline. No clock: deadlines are [`Time`]s, and
//! [`Timers::pop_due`] hands out the keys whose deadline has come, earliest first.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::cluster::Time;

/// Deadlines by key; each key has at most one.
#[derive(Debug)]
pub struct Timers<K> {
    by_deadline: BTreeSet<(Time, K)>,
    by_key: HashMap<K, Time>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            by_deadline: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Sets `key`'s deadline to `at`, replacing the one it had.
    pub fn schedule(&mut self, key: K, at: Time) {
        if let Some(previous) = self.by_key.insert(key.clone(), at) {
            self.by_deadline.remove(&(previous, key.clone()));
        }
        self.by_deadline.insert((at, key));
    }

    /// Removes `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: &K) {
        if let Some(at) = self.by_key.remove(key) {
            self.by_deadline.remove(&(at, key.clone()));
        }
    }

    /// Whether `key` has a deadline.
    pub fn is_scheduled(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    /// `key`'s deadline.
    pub fn deadline(&self, key: &K) -> Option<Time> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Time> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// The key whose deadline is earliest, if it is `now` or before, taken out.
    pub fn pop_due(&mut self, now: Time) -> Option<K> {
        let (at, _) = self.by_deadline.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_start(Duration::from_millis(ms))
    }

    #[test]
    fn keys_come_due_in_order_and_rescheduling_replaces() {
        let mut timers = Timers::default();
        timers.schedule("a", at(30));
        timers.schedule("b", at(10));
        timers.schedule("c", at(20));
        timers.schedule("b", at(40));
        timers.cancel(&"c");
        assert_eq!(timers.next(), Some(at(30)));
        assert_eq!(timers.pop_due(at(29)), None);
        assert_eq!(timers.pop_due(at(100)), Some("a"));
        assert_eq!(timers.deadline(&"b"), Some(at(40)));
        assert_eq!(timers.pop_due(at(100)), Some("b"));
        assert_eq!(timers.pop_due(at(100)), None);
        assert!(timers.is_empty());
    }
}
