//! Where work goes on a multiprocessor: the pure rules the kernel applies when it places a new
//! thread, a new Main VCPU, and when an idle CPU pulls best-effort work.
//!
//! * **Threads** ([`least_loaded`]): a thread that asks for nothing special goes to the
//!   best-effort VCPU of the allowed CPU with the fewest runnable best-effort threads; ties go
//!   to the CPU with less reserved (Main VCPU) utilization, then to the lower index. Runnable
//!   threads are what compete for a CPU's best-effort time; reservations take their share off
//!   the top of it.
//! * **Main VCPUs** ([`fit_order`]): worst fit. Admission is tried on the allowed CPUs in order
//!   of increasing reserved utilization (ties: lower index) and the first CPU whose admission
//!   test accepts the VCPU gets it. Worst fit keeps reservations spread, so every CPU keeps as
//!   much slack as possible for its best-effort threads (which [`least_loaded`] spreads too) and
//!   each CPU's set stays small, where the utilization bound is least pessimistic. The price is
//!   fragmentation: a large request may find no single CPU with room that first fit would have
//!   kept free; the caller can always name a CPU.
//! * **Balancing** ([`pull_source`]): a CPU with no runnable thread pulls one *ready* (not
//!   running) best-effort thread from the CPU with the most runnable best-effort threads, if
//!   that CPU has at least two (so the source keeps one to run, and the pull cannot ping-pong:
//!   after it, the source has at least one and the puller one). Threads bound to Main or IO
//!   VCPUs never move, and the moved thread joins the puller's best-effort VCPU, so no
//!   reservation (admitted per CPU) changes.
use alloc::vec::Vec;

/// The most CPUs a mask names.
pub const MASK_CPUS: usize = 256;

/// A set of CPUs (bit `i` = CPU `i`), as `sched_setaffinity` passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuMask(pub [u64; MASK_CPUS / 64]);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask([0; MASK_CPUS / 64]);

    /// CPUs `0..n`.
    pub fn first(n: usize) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        for i in 0..n.min(MASK_CPUS) {
            m.set(i);
        }
        m
    }

    /// Only CPU `i`.
    pub fn only(i: usize) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        m.set(i);
        m
    }

    /// Adds CPU `i` (ignored past [`MASK_CPUS`]).
    pub fn set(&mut self, i: usize) {
        if i < MASK_CPUS {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    /// Whether CPU `i` is in the set.
    pub fn has(&self, i: usize) -> bool {
        i < MASK_CPUS && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// The CPUs in both sets.
    pub fn and(&self, o: &CpuMask) -> CpuMask {
        let mut m = *self;
        for (a, b) in m.0.iter_mut().zip(o.0.iter()) {
            *a &= b;
        }
        m
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The lowest CPU in the set.
    pub fn lowest(&self) -> Option<usize> {
        (0..MASK_CPUS).find(|&i| self.has(i))
    }

    /// The mask from a little-endian byte string as `sched_setaffinity` reads it (bytes past
    /// [`MASK_CPUS`] bits are ignored).
    pub fn from_bytes(b: &[u8]) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        for (i, byte) in b.iter().enumerate().take(MASK_CPUS / 8) {
            m.0[i / 8] |= u64::from(*byte) << ((i % 8) * 8);
        }
        m
    }

    /// The first `len` bytes of the mask, little-endian (zero past [`MASK_CPUS`] bits).
    pub fn to_bytes(&self, len: usize) -> Vec<u8> {
        (0..len).map(|i| if i < MASK_CPUS / 8 { (self.0[i / 8] >> ((i % 8) * 8)) as u8 } else { 0 }).collect()
    }
}

/// What placement knows about one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuLoad {
    /// CPU index.
    pub cpu: usize,
    /// Runnable (ready or running) threads on its best-effort VCPU.
    pub best_effort_runnable: u32,
    /// Sum of `C/T` of its Main VCPUs other than the best-effort one, in parts per million.
    pub reserved_ppm: u32,
}

/// The CPU a new best-effort thread goes to: among `loads` whose CPU is in `allowed`, the one
/// with the fewest runnable best-effort threads, then the least reserved utilization, then the
/// lowest index. `None` if no allowed CPU is listed.
pub fn least_loaded(loads: &[CpuLoad], allowed: &CpuMask) -> Option<usize> {
    loads
        .iter()
        .filter(|l| allowed.has(l.cpu))
        .min_by_key(|l| (l.best_effort_runnable, l.reserved_ppm, l.cpu))
        .map(|l| l.cpu)
}

/// The order in which admission is tried for a Main VCPU with affinity "any" (worst fit): the
/// allowed CPUs by increasing reserved utilization, ties by index.
pub fn fit_order(loads: &[CpuLoad], allowed: &CpuMask) -> Vec<usize> {
    let mut v: Vec<&CpuLoad> = loads.iter().filter(|l| allowed.has(l.cpu)).collect();
    v.sort_by_key(|l| (l.reserved_ppm, l.cpu));
    v.into_iter().map(|l| l.cpu).collect()
}

/// The CPU an idle CPU `me` should pull a ready best-effort thread from: the other CPU with the
/// most runnable best-effort threads, if it has at least two (ties: lower index). The kernel
/// then takes one of that CPU's *ready* best-effort threads whose affinity allows `me`.
pub fn pull_source(loads: &[CpuLoad], me: usize) -> Option<usize> {
    loads
        .iter()
        .filter(|l| l.cpu != me && l.best_effort_runnable >= 2)
        .max_by_key(|l| (l.best_effort_runnable, core::cmp::Reverse(l.cpu)))
        .map(|l| l.cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(cpu: usize, r: u32, u: u32) -> CpuLoad {
        CpuLoad { cpu, best_effort_runnable: r, reserved_ppm: u }
    }

    #[test]
    fn four_threads_spread_over_four_cpus() {
        // The creating thread runs on CPU 0; each new thread counts where it went.
        let mut loads = [l(0, 1, 0), l(1, 0, 0), l(2, 0, 0), l(3, 0, 0)];
        let all = CpuMask::first(4);
        let mut got = Vec::new();
        for _ in 0..4 {
            let c = least_loaded(&loads, &all).unwrap();
            loads[c].best_effort_runnable += 1;
            got.push(c);
        }
        assert_eq!(got, [1, 2, 3, 0]);
    }

    #[test]
    fn ties_go_to_less_reserved_then_lower_index() {
        let loads = [l(0, 1, 0), l(1, 1, 200_000), l(2, 1, 100_000), l(3, 1, 100_000)];
        assert_eq!(least_loaded(&loads, &CpuMask::first(4)), Some(0));
        let mut m = CpuMask::EMPTY;
        m.set(1);
        m.set(2);
        m.set(3);
        assert_eq!(least_loaded(&loads, &m), Some(2));
        assert_eq!(least_loaded(&loads, &CpuMask::only(7)), None);
    }

    #[test]
    fn worst_fit_order() {
        let loads = [l(0, 5, 300_000), l(1, 0, 100_000), l(2, 0, 100_000), l(3, 0, 0)];
        assert_eq!(fit_order(&loads, &CpuMask::first(4)), [3, 1, 2, 0]);
        assert_eq!(fit_order(&loads, &CpuMask::only(0)), [0]);
    }

    #[test]
    fn pull_only_from_a_cpu_with_two_runnable() {
        assert_eq!(pull_source(&[l(0, 1, 0), l(1, 0, 0)], 1), None);
        assert_eq!(pull_source(&[l(0, 2, 0), l(1, 0, 0), l(2, 3, 0)], 1), Some(2));
        assert_eq!(pull_source(&[l(0, 3, 0), l(1, 0, 0), l(2, 3, 0)], 1), Some(0));
        assert_eq!(pull_source(&[l(0, 3, 0)], 0), None);
    }

    #[test]
    fn mask_bytes_round_trip() {
        let mut m = CpuMask::EMPTY;
        m.set(2);
        m.set(9);
        m.set(200);
        let b = m.to_bytes(32);
        assert_eq!(b[0], 4);
        assert_eq!(b[1], 2);
        assert_eq!(CpuMask::from_bytes(&b), m);
        assert_eq!(CpuMask::from_bytes(&m.to_bytes(8)), { let mut x = CpuMask::EMPTY; x.set(2); x.set(9); x });
        assert_eq!(m.and(&CpuMask::first(8)).lowest(), Some(2));
        assert!(CpuMask::EMPTY.is_empty());
    }
}
