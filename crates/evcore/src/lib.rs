//! Event-loop logic without a kernel (issue 25): what a timerfd, an eventfd counter and an
//! epoll item decide, as plain values the kernel keeps behind its locks
//! (`kernel/src/timerfd.rs`, `eventfd.rs`, `epoll.rs`) and the host tests check.
//!
//! * [`Timer`]: a timerfd's state. No kernel timer is armed: the expirations up to "now" are
//!   counted when the timer is looked at ([`Timer::catch_up`]), so a periodic timer costs
//!   nothing between reads and a late reader sees every period it missed, as on Linux.
//! * [`Counter`]: eventfd's 64-bit counter (Linux's `ULLONG_MAX - 1` top, semaphore mode).
//! * [`report`]: whether an epoll item is reported (level- and edge-triggered).
//!
//! Hand-written: these are the Linux semantics in a few lines each, with no crate that keeps
//! them apart from an I/O runtime.
#![no_std]

/// A timerfd: the next expiry (ns of its clock, `None` while disarmed), the period (0: one
/// expiry), the expirations not yet read, and a count of every expiry and every arming
/// (epoll's edge-triggered items report again after it changes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    pub next: Option<u64>,
    pub interval: u64,
    pub expired: u64,
    pub generation: u64,
}

impl Timer {
    /// Counts the expirations up to `now` (a periodic timer moves to its first expiry after
    /// `now`; a one-shot timer disarms).
    pub fn catch_up(&mut self, now: u64) {
        let Some(n) = self.next else { return };
        if n > now {
            return;
        }
        let k = (now - n).checked_div(self.interval).map_or(1, |q| q + 1);
        self.expired = self.expired.saturating_add(k);
        self.generation = self.generation.wrapping_add(k);
        self.next = if self.interval == 0 { None } else { Some(n.saturating_add(k.saturating_mul(self.interval))) };
    }

    /// timerfd_settime at `now`: `value` 0 disarms; otherwise the first expiry is `value`
    /// (`absolute`) or `now + value`, then every `interval`. Unread expirations are dropped,
    /// as on Linux.
    pub fn arm(&mut self, now: u64, value: u64, interval: u64, absolute: bool) {
        self.catch_up(now);
        self.expired = 0;
        self.interval = interval;
        self.generation = self.generation.wrapping_add(1);
        self.next = match value {
            0 => None,
            v if absolute => Some(v),
            v => Some(now.saturating_add(v)),
        };
    }

    /// read(2) at `now`: the expirations since the last read, if any.
    pub fn take(&mut self, now: u64) -> Option<u64> {
        self.catch_up(now);
        (self.expired > 0).then(|| core::mem::take(&mut self.expired))
    }

    /// timerfd_gettime at `now` (after [`catch_up`](Self::catch_up)): (interval, time left);
    /// an armed timer has at least 1 ns left, a disarmed one 0.
    pub fn spec(&self, now: u64) -> (u64, u64) {
        (self.interval, self.next.map_or(0, |n| n.saturating_sub(now).max(1)))
    }

    /// When a waiter must look again (after [`catch_up`](Self::catch_up)): the next expiry
    /// while none is unread.
    pub fn wake_at(&self) -> Option<u64> {
        if self.expired > 0 { None } else { self.next }
    }
}

/// Seconds and nanoseconds as nanoseconds: `None` (EINVAL) if negative or not normalised.
pub fn timespec_ns(sec: i64, nsec: i64) -> Option<u64> {
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return None;
    }
    Some((sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64))
}

/// An eventfd counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub count: u64,
    pub semaphore: bool,
}

impl Counter {
    /// The largest count (Linux's `ULLONG_MAX - 1`).
    pub const MAX: u64 = u64::MAX - 1;

    /// read(2): the whole count (1 in semaphore mode) if above 0.
    pub fn take(&mut self) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let v = if self.semaphore { 1 } else { self.count };
        self.count -= v;
        Some(v)
    }

    /// write(2) of `v`: added if the sum stays at most [`MAX`](Self::MAX); `false` means wait
    /// (or EAGAIN). A write of `u64::MAX` is EINVAL before this is asked.
    pub fn add(&mut self, v: u64) -> bool {
        if Self::MAX - self.count < v {
            return false;
        }
        self.count += v;
        true
    }

    pub fn readable(&self) -> bool {
        self.count > 0
    }

    pub fn writable(&self) -> bool {
        self.count < Self::MAX
    }
}

/// `EPOLLERR | EPOLLHUP`: reported whether asked for or not.
pub const ALWAYS: u32 = 0x8 | 0x10;
/// `EPOLLET`.
pub const EDGE: u32 = 1 << 31;

/// Whether an epoll item asking for `wanted` (its event mask, `EPOLLET` included) is
/// reported when its file has `ready` events and change count `generation`, having last been
/// reported at count `seen`: the events to report, or `None`.
///
/// Level-triggered: while any wanted event (or an error or hang-up) is there.
/// Edge-triggered: the same, and only if the file changed since the last report.
pub fn report(ready: u32, wanted: u32, generation: u64, seen: u64) -> Option<u32> {
    let ev = ready & (wanted | ALWAYS);
    if ev == 0 || (wanted & EDGE != 0 && generation == seen) {
        return None;
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn periodic_timer_counts_every_missed_period() {
        let mut t = Timer::default();
        t.arm(0, 10 * MS, 10 * MS, false);
        assert_eq!(t.take(9 * MS), None);
        assert_eq!(t.take(10 * MS), Some(1));
        assert_eq!(t.take(55 * MS), Some(4)); // 20, 30, 40, 50
        assert_eq!(t.next, Some(60 * MS));
        assert_eq!(t.spec(55 * MS), (10 * MS, 5 * MS));
    }

    #[test]
    fn one_shot_absolute_and_disarm() {
        let mut t = Timer::default();
        t.arm(100, 500, 0, true);
        assert_eq!(t.wake_at(), Some(500));
        assert_eq!(t.take(499), None);
        assert_eq!(t.take(10_000), Some(1));
        assert_eq!(t.next, None);
        assert_eq!(t.take(20_000), None);
        assert_eq!(t.spec(20_000), (0, 0));
        // An absolute time already past expires at once.
        t.arm(1000, 10, 0, true);
        assert_eq!(t.take(1000), Some(1));
        // Arming drops unread expirations; 0 disarms.
        t.arm(0, 5, 5, false);
        t.catch_up(100);
        assert!(t.expired > 0);
        t.arm(100, 0, 0, false);
        assert_eq!((t.expired, t.next), (0, None));
    }

    #[test]
    fn generation_moves_on_expiry_and_arming() {
        let mut t = Timer::default();
        t.arm(0, 10, 10, false);
        let g = t.generation;
        t.catch_up(5);
        assert_eq!(t.generation, g);
        t.catch_up(35);
        assert_eq!(t.generation, g + 3);
        assert_eq!(t.wake_at(), None, "unread expirations: nothing to wait for");
    }

    #[test]
    fn timespecs() {
        assert_eq!(timespec_ns(1, 5), Some(1_000_000_005));
        assert_eq!(timespec_ns(-1, 0), None);
        assert_eq!(timespec_ns(0, 1_000_000_000), None);
        assert_eq!(timespec_ns(i64::MAX, 999_999_999), Some(u64::MAX));
    }

    #[test]
    fn counter_modes_and_top() {
        let mut c = Counter { count: 3, semaphore: false };
        assert!(c.add(4));
        assert_eq!(c.take(), Some(7));
        assert_eq!(c.take(), None);
        let mut s = Counter { count: 2, semaphore: true };
        assert_eq!((s.take(), s.take(), s.take()), (Some(1), Some(1), None));
        let mut f = Counter { count: 0, semaphore: false };
        assert!(f.add(Counter::MAX));
        assert!(!f.add(1));
        assert!(f.readable() && !f.writable());
    }

    #[test]
    fn level_and_edge_reports() {
        const IN: u32 = 1;
        const OUT: u32 = 4;
        const HUP: u32 = 0x10;
        assert_eq!(report(IN | OUT, IN, 1, 1), Some(IN), "level: reported again without a change");
        assert_eq!(report(OUT, IN, 1, 0), None, "not asked for");
        assert_eq!(report(HUP, IN, 1, 0), Some(HUP), "hang-up always");
        assert_eq!(report(IN, IN | EDGE, 5, u64::MAX), Some(IN), "edge: first report");
        assert_eq!(report(IN, IN | EDGE, 5, 5), None, "edge: no change since");
        assert_eq!(report(IN, IN | EDGE, 6, 5), Some(IN), "edge: a change");
    }

    proptest! {
        /// However the reads are spread, a periodic timer read until `end` has counted exactly
        /// the expiries in [first, end].
        #[test]
        fn reads_count_every_expiry_once(first in 1u64..1000, period in 1u64..1000, reads in proptest::collection::vec(0u64..5000, 0..20)) {
            let mut t = Timer::default();
            t.arm(0, first, period, false);
            let mut times = reads;
            times.sort_unstable();
            let mut total = 0;
            for &now in &times {
                total += t.take(now).unwrap_or(0);
            }
            let end = times.last().copied().unwrap_or(0);
            let want = if end < first { 0 } else { (end - first) / period + 1 };
            prop_assert_eq!(total, want);
            let n = t.next.unwrap();
            if end >= first {
                prop_assert!(n > end && n <= end + period);
            } else {
                prop_assert_eq!(n, first);
            }
        }

        #[test]
        fn counter_never_passes_its_top(start in 0u64..=Counter::MAX, v in any::<u64>()) {
            let mut c = Counter { count: start, semaphore: false };
            let ok = c.add(v);
            prop_assert!(c.count <= Counter::MAX);
            prop_assert_eq!(ok, start.checked_add(v).is_some_and(|s| s <= Counter::MAX));
        }
    }
}
