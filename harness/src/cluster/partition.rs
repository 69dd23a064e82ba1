//! One partition: its replica set, in-sync replicas, leader and leader epoch, and its log.
//!
//! Every replica shares the one [`PartitionLog`] (replication is instant), so a replica is
//! out of sync only while its broker is down. Leadership follows Kafka's clean election: a
//! new leader comes from the ISR, the last ISR member stays in the ISR when its broker goes
//! down, and the leader epoch grows by one at every change of leader.

use super::partition_log::PartitionLog;

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    index: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
    leader_epoch: i32,
    log: PartitionLog,
}

impl Partition {
    /// A new partition on `replicas` (preferred leader first); `is_up` tells which brokers
    /// are up. The first live replica leads, at epoch 0.
    pub(crate) fn new(index: i32, replicas: Vec<i32>, is_up: impl Fn(i32) -> bool) -> Self {
        let isr: Vec<i32> = replicas.iter().copied().filter(|&b| is_up(b)).collect();
        let leader = isr.first().copied().unwrap_or(-1);
        Self {
            index,
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            log: PartitionLog::new(0),
        }
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// Replica brokers, preferred leader first.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// In-sync replicas, in replica order.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The leader's broker id, or -1 when the partition has no leader.
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub(crate) fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    /// Makes `leader` (-1 for none) the leader in a new epoch.
    pub(crate) fn elect(&mut self, leader: i32) {
        self.leader = leader;
        self.leader_epoch = self.leader_epoch.saturating_add(1);
        self.log.begin_epoch(self.leader_epoch);
    }

    /// Broker `broker` went down: it leaves the ISR (unless it is the last member) and, if it
    /// led, the first live ISR member takes over, or nobody.
    pub(crate) fn broker_down(&mut self, broker: i32, is_up: impl Fn(i32) -> bool) {
        if !self.replicas.contains(&broker) {
            return;
        }
        if self.isr.len() > 1 {
            self.isr.retain(|&b| b != broker);
        }
        if self.leader == broker {
            let next = self
                .replicas
                .iter()
                .copied()
                .find(|&b| b != broker && is_up(b) && self.isr.contains(&b))
                .unwrap_or(-1);
            self.elect(next);
        }
    }

    /// Broker `broker` came back: with a leader it catches up at once and rejoins the ISR;
    /// without one it is elected if it was in the ISR (or `unclean` allows any replica).
    pub(crate) fn broker_up(&mut self, broker: i32, unclean: bool, is_up: impl Fn(i32) -> bool) {
        if !self.replicas.contains(&broker) {
            return;
        }
        if self.leader == -1 {
            if !self.isr.contains(&broker) && !unclean {
                return;
            }
            self.elect(broker);
            // With a leader again, every live replica catches up at once.
            self.isr = self
                .replicas
                .iter()
                .copied()
                .filter(|&b| is_up(b))
                .collect();
            return;
        }
        if !self.isr.contains(&broker) {
            self.isr.push(broker);
            let order = self.replicas.clone();
            self.isr
                .sort_by_key(|b| order.iter().position(|r| r == b).unwrap_or(usize::MAX));
        }
    }

    /// Adds `broker` to the ISR if it is a replica (used when a test forces a leader).
    pub(crate) fn join_isr(&mut self, broker: i32) {
        if self.replicas.contains(&broker) && !self.isr.contains(&broker) {
            self.isr.push(broker);
            let order = self.replicas.clone();
            self.isr
                .sort_by_key(|b| order.iter().position(|r| r == b).unwrap_or(usize::MAX));
        }
    }
}
