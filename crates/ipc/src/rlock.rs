//! fcntl record locks: per file, a list of locks `[start, end)` (end `u64::MAX`: to the end of
//! the file and beyond), read (shared) or write (exclusive), each held by an [`Owner`].
//!
//! Invariants (checked by `check` in tests): one owner's locks never overlap each other, and
//! adjacent or overlapping locks of one owner and type are merged (Linux's behaviour, which
//! F_GETLK makes visible); locks of different owners may overlap only if both are read locks.
//!
//! Deadlock detection ([`would_deadlock`]) follows the wait-for graph: a process about to wait
//! for the holders of a range deadlocks if one of them (transitively) waits for it. Like Linux
//! it considers only process-owned (POSIX) locks.
use alloc::vec::Vec;

/// Who holds a lock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Owner {
    /// A process (classic POSIX locks: F_SETLK).
    Process(u32),
    /// An open file description (F_OFD_SETLK), by its id.
    Ofd(u64),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Lock {
    pub owner: Owner,
    pub start: u64,
    /// Exclusive; `u64::MAX` for "to the end of the file, however long".
    pub end: u64,
    pub write: bool,
    /// The pid F_GETLK reports (-1 for an OFD lock).
    pub pid: i32,
}

/// The locks of one file.
#[derive(Clone, Default, Debug)]
pub struct Table {
    locks: Vec<Lock>,
}

/// Why a lock request is malformed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeError {
    /// A start before 0 or an empty/overflowing range (EINVAL).
    Invalid,
    /// Beyond the largest offset (EOVERFLOW).
    Overflow,
}

/// The byte range of a `struct flock`: `base` is what `l_whence` names (0, the offset, or the
/// size), `start` and `len` as given (`len` 0: to the end; negative: the bytes before).
pub fn range(base: i64, start: i64, len: i64) -> Result<(u64, u64), RangeError> {
    let s = base.checked_add(start).ok_or(RangeError::Overflow)?;
    let (s, e) = if len > 0 {
        (s, Some(s.checked_add(len).ok_or(RangeError::Overflow)?))
    } else if len == 0 {
        (s, None)
    } else {
        (s.checked_add(len).ok_or(RangeError::Overflow)?, Some(s))
    };
    if s < 0 {
        return Err(RangeError::Invalid);
    }
    Ok((s as u64, e.map_or(u64::MAX, |e| e as u64)))
}

fn overlaps(a: &Lock, start: u64, end: u64) -> bool {
    a.start < end && start < a.end
}

impl Table {
    pub fn new() -> Table {
        Table { locks: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    pub fn locks(&self) -> &[Lock] {
        &self.locks
    }

    /// The first lock of another owner in the way of `owner` locking `[start, end)`.
    pub fn conflict(&self, owner: Owner, start: u64, end: u64, write: bool) -> Option<Lock> {
        self.locks.iter().find(|l| l.owner != owner && overlaps(l, start, end) && (write || l.write)).copied()
    }

    /// Every owner in the way (each once).
    pub fn blockers(&self, owner: Owner, start: u64, end: u64, write: bool) -> Vec<Owner> {
        let mut v: Vec<Owner> = Vec::new();
        for l in &self.locks {
            if l.owner != owner && overlaps(l, start, end) && (write || l.write) && !v.contains(&l.owner) {
                v.push(l.owner);
            }
        }
        v
    }

    /// Sets `owner`'s lock on `[start, end)` to `kind` (`None`: unlocks), replacing what the
    /// owner had there, splitting and merging. The caller has checked [`Table::conflict`].
    pub fn set(&mut self, owner: Owner, pid: i32, start: u64, end: u64, kind: Option<bool>) {
        if start >= end {
            return;
        }
        // Cut [start, end) out of the owner's locks.
        let mut out: Vec<Lock> = Vec::with_capacity(self.locks.len() + 2);
        for l in self.locks.drain(..) {
            if l.owner != owner || !overlaps(&l, start, end) {
                out.push(l);
                continue;
            }
            if l.start < start {
                out.push(Lock { end: start, ..l });
            }
            if l.end > end {
                out.push(Lock { start: end, ..l });
            }
        }
        self.locks = out;
        let Some(write) = kind else { return };
        // Merge with the owner's touching locks of the same type.
        let (mut s, mut e) = (start, end);
        self.locks.retain(|l| {
            if l.owner == owner && l.write == write && l.start <= e && s <= l.end {
                s = s.min(l.start);
                e = e.max(l.end);
                false
            } else {
                true
            }
        });
        self.locks.push(Lock { owner, start: s, end: e, write, pid });
        self.locks.sort_by_key(|l| (l.start, l.owner));
    }

    /// Drops every lock of `owner`; whether it had any.
    pub fn release(&mut self, owner: Owner) -> bool {
        let n = self.locks.len();
        self.locks.retain(|l| l.owner != owner);
        n != self.locks.len()
    }

    #[cfg(test)]
    fn check(&self) {
        for (i, a) in self.locks.iter().enumerate() {
            assert!(a.start < a.end);
            for b in &self.locks[i + 1..] {
                if a.owner == b.owner {
                    assert!(!overlaps(a, b.start, b.end), "one owner's locks overlap: {a:?} {b:?}");
                    assert!(!(a.write == b.write && (a.end == b.start || b.end == a.start)), "unmerged: {a:?} {b:?}");
                } else {
                    assert!(!(overlaps(a, b.start, b.end) && (a.write || b.write)), "conflicting locks held: {a:?} {b:?}");
                }
            }
        }
    }
}

/// Whether `me`, about to wait for `blockers`, would deadlock: `waits_for(o)` gives the owners
/// that owner `o` waits for (empty if it does not wait). Bounded: at most `limit` owners are
/// visited (beyond, no deadlock is reported, as Linux bounds its search).
pub fn would_deadlock(me: Owner, blockers: &[Owner], waits_for: impl Fn(Owner) -> Vec<Owner>, limit: usize) -> bool {
    let mut seen: Vec<Owner> = Vec::new();
    let mut todo: Vec<Owner> = blockers.iter().copied().filter(|o| matches!(o, Owner::Process(_))).collect();
    while let Some(o) = todo.pop() {
        if o == me {
            return true;
        }
        if seen.contains(&o) || seen.len() >= limit {
            continue;
        }
        seen.push(o);
        todo.extend(waits_for(o).into_iter().filter(|o| matches!(o, Owner::Process(_))));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Owner = Owner::Process(1);
    const B: Owner = Owner::Process(2);

    #[test]
    fn ranges_follow_fcntl() {
        assert_eq!(range(0, 5, 10), Ok((5, 15)));
        assert_eq!(range(100, -10, 0), Ok((90, u64::MAX)));
        assert_eq!(range(0, 10, -5), Ok((5, 10)));
        assert_eq!(range(0, -1, 1), Err(RangeError::Invalid));
        assert_eq!(range(0, 3, -5), Err(RangeError::Invalid));
        assert_eq!(range(i64::MAX, 1, 0), Err(RangeError::Overflow));
    }

    #[test]
    fn unlock_in_the_middle_splits_and_relock_merges() {
        let mut t = Table::new();
        t.set(A, 1, 0, 100, Some(true));
        t.set(A, 1, 40, 60, None);
        t.check();
        assert_eq!(t.locks().len(), 2);
        assert!(t.conflict(B, 40, 60, true).is_none());
        assert_eq!(t.conflict(B, 0, 1, false).map(|l| (l.start, l.end)), Some((0, 40)));
        t.set(A, 1, 40, 60, Some(true));
        t.check();
        assert_eq!(t.locks(), &[Lock { owner: A, start: 0, end: 100, write: true, pid: 1 }]);
        // A read lock in the middle of one's own write lock splits it in three.
        t.set(A, 1, 10, 20, Some(false));
        t.check();
        assert_eq!(t.locks().len(), 3);
    }

    #[test]
    fn read_locks_share_write_locks_exclude() {
        let mut t = Table::new();
        t.set(A, 1, 0, 10, Some(false));
        assert!(t.conflict(B, 5, 15, false).is_none());
        assert!(t.conflict(B, 5, 15, true).is_some());
        assert!(t.conflict(A, 5, 15, true).is_none(), "one's own locks never conflict");
        t.set(B, 2, 5, 15, Some(false));
        t.check();
        assert_eq!(t.blockers(Owner::Ofd(9), 0, u64::MAX, true), alloc::vec![A, B]);
        assert!(t.release(A));
        assert!(!t.release(A));
        assert!(t.conflict(Owner::Ofd(9), 0, 5, true).is_none());
    }

    #[test]
    fn deadlock_is_a_cycle_of_processes() {
        // A waits for B; B now asks to wait for A.
        let waits = |o: Owner| if o == A { alloc::vec![B] } else { alloc::vec![] };
        assert!(would_deadlock(B, &[A], waits, 100));
        assert!(!would_deadlock(Owner::Process(3), &[A], waits, 100));
        // Through a third process.
        let c = Owner::Process(3);
        let waits = |o: Owner| match o {
            Owner::Process(1) => alloc::vec![c],
            Owner::Process(3) => alloc::vec![B],
            _ => alloc::vec![],
        };
        assert!(would_deadlock(B, &[A], waits, 100));
        // OFD owners are not followed.
        let waits = |o: Owner| if o == A { alloc::vec![Owner::Ofd(1)] } else { alloc::vec![] };
        assert!(!would_deadlock(Owner::Ofd(1), &[A], waits, 100));
    }

    proptest! {
        /// Against a byte model: after any sequence of sets (each allowed only without
        /// conflict), the table's answer for each byte and owner equals the model's.
        #[test]
        fn matches_a_byte_model(ops in proptest::collection::vec((0u32..3, 0u64..40, 1u64..12, 0u8..3), 1..80)) {
            let mut t = Table::new();
            let mut model = [[None::<bool>; 3]; 64];
            for (o, s, n, k) in ops {
                let owner = Owner::Process(o);
                let kind = match k { 0 => None, 1 => Some(false), _ => Some(true) };
                let (s, e) = (s, s + n);
                let conflict = kind.is_some_and(|w| t.conflict(owner, s, e, w).is_some());
                let model_conflict = kind.is_some_and(|w| (s..e).any(|b| (0..3).any(|x| x != o as usize && model[b as usize][x].is_some_and(|mw| mw || w))));
                prop_assert_eq!(conflict, model_conflict);
                if conflict { continue; }
                t.set(owner, o as i32, s, e, kind);
                for b in s..e { model[b as usize][o as usize] = kind; }
                t.check();
                for b in 0..64u64 {
                    for x in 0..3u32 {
                        let got = t.locks().iter().find(|l| l.owner == Owner::Process(x) && l.start <= b && b < l.end).map(|l| l.write);
                        prop_assert_eq!(got, model[b as usize][x as usize]);
                    }
                }
            }
        }
    }
}
