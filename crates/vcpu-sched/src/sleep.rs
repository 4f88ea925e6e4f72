//! Timed sleeps beside the VCPU scheduler: which tasks sleep until when, and the one timer a
//! PCPU needs for both.
//!
//! The kernel keeps one [`Sleepers`] per PCPU next to its [`Scheduler`](crate::Scheduler): a
//! task that sleeps (or blocks with a deadline) is blocked in the scheduler and listed here;
//! when its time comes ([`Sleepers::due`]) the kernel wakes it in the scheduler. The PCPU's
//! one-shot timer is the earlier of the scheduler's next event and the earliest sleeper
//! ([`next_timer`]).
//!
//! Invariant: a task is listed at most once (a second [`Sleepers::add`] replaces its time).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::{Nanos, TaskId};

/// The sleeping tasks of one PCPU, by deadline.
#[derive(Clone, Debug, Default)]
pub struct Sleepers {
    by_time: BTreeSet<(Nanos, TaskId)>,
    by_task: BTreeMap<TaskId, Nanos>,
}

impl Sleepers {
    /// No sleepers.
    pub fn new() -> Self {
        Self::default()
    }

    /// `task` sleeps until `deadline` (replacing an earlier entry of it).
    pub fn add(&mut self, deadline: Nanos, task: TaskId) {
        if let Some(old) = self.by_task.insert(task, deadline) {
            self.by_time.remove(&(old, task));
        }
        self.by_time.insert((deadline, task));
        debug_assert_eq!(self.by_time.len(), self.by_task.len());
    }

    /// `task` no longer sleeps (woken early, or gone). Returns its deadline if it was listed.
    pub fn remove(&mut self, task: TaskId) -> Option<Nanos> {
        let d = self.by_task.remove(&task)?;
        self.by_time.remove(&(d, task));
        Some(d)
    }

    /// Takes every task whose deadline is at or before `now`, earliest first.
    pub fn due(&mut self, now: Nanos) -> Vec<TaskId> {
        let mut out = Vec::new();
        while let Some(&(d, t)) = self.by_time.first() {
            if d > now {
                break;
            }
            self.by_time.pop_first();
            self.by_task.remove(&t);
            out.push(t);
        }
        out
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Nanos> {
        self.by_time.first().map(|s| s.0)
    }

    /// The deadline of `task`, if it sleeps.
    pub fn deadline(&self, task: TaskId) -> Option<Nanos> {
        self.by_task.get(&task).copied()
    }

    /// Number of sleepers.
    pub fn len(&self) -> usize {
        self.by_task.len()
    }

    /// Whether nobody sleeps.
    pub fn is_empty(&self) -> bool {
        self.by_task.is_empty()
    }
}

/// The PCPU's timer: the earlier of the scheduler's next event and the earliest sleeper.
pub fn next_timer(sched: Option<Nanos>, sleeper: Option<Nanos>) -> Option<Nanos> {
    match (sched, sleeper) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_takes_the_expired_in_order_and_keeps_the_rest() {
        let mut s = Sleepers::new();
        s.add(30, TaskId(3));
        s.add(10, TaskId(1));
        s.add(20, TaskId(2));
        s.add(20, TaskId(4));
        assert_eq!(s.next(), Some(10));
        assert_eq!(s.due(20), alloc::vec![TaskId(1), TaskId(2), TaskId(4)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.next(), Some(30));
        assert!(s.due(29).is_empty());
    }

    #[test]
    fn a_task_is_listed_once_and_can_leave_early() {
        let mut s = Sleepers::new();
        s.add(10, TaskId(1));
        s.add(50, TaskId(1));
        assert_eq!(s.len(), 1);
        assert_eq!(s.deadline(TaskId(1)), Some(50));
        assert!(s.due(10).is_empty());
        assert_eq!(s.remove(TaskId(1)), Some(50));
        assert_eq!(s.remove(TaskId(1)), None);
        assert!(s.is_empty() && s.next().is_none());
    }

    #[test]
    fn the_timer_is_the_earlier_event() {
        assert_eq!(next_timer(Some(5), Some(3)), Some(3));
        assert_eq!(next_timer(Some(5), None), Some(5));
        assert_eq!(next_timer(None, Some(7)), Some(7));
        assert_eq!(next_timer(None, None), None);
    }
}
