//! Boomerang pipelines: rate matching for a chain of periodic stages spread over sandboxes
//! (Quest producer → Linux stage → Quest consumer, or any chain of `n` stages), joined by
//! synchronous shmcomm channels ("hops").
//!
//! A pipeline carries packets of `packet` bytes at `lambda` bytes/s. Every stage is a task
//! with a CPU reservation of `C` µs every `T` µs — a Main VCPU on Quest, `SCHED_DEADLINE`
//! (runtime `C`, deadline = period = `T`) on Linux, each through its kernel's admission
//! control — and runs one **job** per period: it reads at most one chunk from its input hop
//! **without blocking** (whatever is there, up to `chunk` bytes), works on it, and writes what
//! it produced to its output hop without blocking. `C` is the CPU time a job needs to move one
//! chunk. Rate matching:
//!
//! ```text
//! chunk = floor(B / 3 / packet) * packet      bytes a stage moves per job
//! T     = floor(chunk * 10^6 / lambda)        µs
//! hop   = a FIFO of 3 * chunk / packet packets
//! ```
//!
//! Guarantees, for stages whose jobs each finish within their period (what an admitted
//! reservation with `C` ≥ a job's demand gives):
//!
//! * **throughput** `chunk * 10^6 / T ≥ lambda` bytes/s at every stage;
//! * **no stage blocks, nothing is lost**: a hop never holds more than 3 chunks, so a write
//!   always finds room (a full hop would be a broken premise, which the stages count);
//! * **delay**: a packet written to a hop at time `t` has been read (and, by a relay,
//!   written to the next hop) before `t + 4T`; end to end, over `n - 1` hops, before
//!   `4T (n - 1)`.
//!
//! Why (writer jobs write at `w_j ∈ [a_j, a_j + T)`, reader jobs read at `d_k ∈ [b_k, b_k + T)`,
//! `a_j = φ_W + jT`, `b_k = φ_R + kT`, arbitrary phases):
//! * in any window of length `L` at most `⌊L/T⌋ + 2` writes happen (`w_j − w_i > (j−i−1)T`)
//!   and at least `⌊L/T⌋ − 1` reads;
//! * while a hop is non-empty every read takes a full chunk (a read finding less empties it),
//!   so over a busy window the backlog is at most `(⌊L/T⌋ + 2 − ⌊L/T⌋ + 1)` chunks = 3;
//! * FIFO: a packet arriving at `t` has at most 3 chunks before and including it; the first
//!   read at or after `t` is `d_m` with `b_m < t + T`, and the third, `d_{m+2}`, is before
//!   `b_m + 3T < t + 4T`; the relay's job that reads it also ends before `b_{m+2} + T`.
//!
//! [`tests`] checks all of this by simulating random phases and job timings; the QEMU test
//! (tests/tests/questv_linux.rs) measures it across Quest and Linux.

use crate::tpipe::MIN_PERIOD_US;

/// A pipeline's request (mirrors `quest_abi::BoomerangQos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// CPU time a stage's job needs to move one chunk, µs.
    pub c_us: u32,
    /// Throughput, bytes per second.
    pub lambda: u32,
    /// Buffer of each hop, bytes (three chunks).
    pub b: u32,
    /// Packet size, bytes.
    pub packet: u32,
    /// Stages in the pipeline, 2..=[`MAX_STAGES`].
    pub stages: u32,
}

/// The derived reservation and guarantees (mirrors `quest_abi::BoomerangPlan`, less the VCPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Budget of every stage, µs.
    pub c_us: u32,
    /// Period of every stage, µs.
    pub t_us: u32,
    /// Bytes a stage moves per job.
    pub chunk: u32,
    /// Packets a stage moves per job (`chunk / packet`).
    pub packets: u32,
    /// Packets a hop holds (`3 * packets`): the sync channel's `buffer_len`.
    pub slots: u32,
    /// Guaranteed throughput, bytes/s (≥ lambda).
    pub throughput: u32,
    /// Bound on one hop's delay (write → read, or → the relay's write), µs: `4T`.
    pub hop_delay_us: u32,
    /// Bound on the end-to-end delay, µs: `4T (stages - 1)`.
    pub delay_us: u32,
}

/// Why a request cannot be met (`EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosError {
    /// `lambda`, `C` or `packet` zero.
    Zero,
    /// Fewer than 2 or more than [`MAX_STAGES`] stages.
    Stages,
    /// `B` holds fewer than three packets, or a hop would need more slots than a channel has.
    BadBuffer,
    /// The period would be shorter than the scheduler's minimum.
    PeriodTooShort,
    /// The period or the end-to-end delay would not fit (`i32` µs).
    PeriodTooLong,
    /// `C > T`.
    Overload,
}

/// Most stages a pipeline may have.
pub const MAX_STAGES: u32 = 16;

/// Rate matching: see the module documentation.
pub fn plan(q: Qos) -> Result<Plan, QosError> {
    if q.lambda == 0 || q.c_us == 0 || q.packet == 0 {
        return Err(QosError::Zero);
    }
    if !(2..=MAX_STAGES).contains(&q.stages) {
        return Err(QosError::Stages);
    }
    let packets = q.b / 3 / q.packet;
    if packets == 0 || u64::from(packets) * 3 > u64::from(quest_abi::shm::SHMCOMM_MAX_BUFFER) || q.packet > quest_abi::shm::SHMCOMM_MAX_PACKET {
        return Err(QosError::BadBuffer);
    }
    let chunk = packets * q.packet;
    let t = u64::from(chunk) * 1_000_000 / u64::from(q.lambda);
    if t < u64::from(MIN_PERIOD_US) {
        return Err(QosError::PeriodTooShort);
    }
    let delay = 4 * t * u64::from(q.stages - 1);
    if delay > i32::MAX as u64 {
        return Err(QosError::PeriodTooLong);
    }
    let t = t as u32;
    if q.c_us > t {
        return Err(QosError::Overload);
    }
    let throughput = (u64::from(chunk) * 1_000_000 / u64::from(t)).min(u64::from(u32::MAX)) as u32;
    Ok(Plan { c_us: q.c_us, t_us: t, chunk, packets, slots: 3 * packets, throughput, hop_delay_us: 4 * t, delay_us: delay as u32 })
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    #[test]
    fn the_questv_test_pipeline() {
        // 32-byte packets, 4 per 10 ms job: 12,800 B/s through a 384-byte hop.
        let p = plan(Qos { c_us: 1000, lambda: 12_800, b: 384, packet: 32, stages: 3 }).unwrap();
        assert_eq!(p, Plan { c_us: 1000, t_us: 10_000, chunk: 128, packets: 4, slots: 12, throughput: 12_800, hop_delay_us: 40_000, delay_us: 80_000 });
    }

    #[test]
    fn rejections() {
        let q = Qos { c_us: 1000, lambda: 12_800, b: 384, packet: 32, stages: 3 };
        assert_eq!(plan(Qos { lambda: 0, ..q }), Err(QosError::Zero));
        assert_eq!(plan(Qos { packet: 0, ..q }), Err(QosError::Zero));
        assert_eq!(plan(Qos { stages: 1, ..q }), Err(QosError::Stages));
        assert_eq!(plan(Qos { stages: 17, ..q }), Err(QosError::Stages));
        assert_eq!(plan(Qos { b: 95, ..q }), Err(QosError::BadBuffer));
        assert_eq!(plan(Qos { b: 3 * 1025, packet: 1, ..q }), Err(QosError::BadBuffer));
        assert_eq!(plan(Qos { lambda: 10_000_000, ..q }), Err(QosError::PeriodTooShort));
        assert_eq!(plan(Qos { lambda: 1, b: 3 << 20, packet: 1 << 16, ..q }), Err(QosError::PeriodTooLong));
        assert_eq!(plan(Qos { c_us: 10_001, ..q }), Err(QosError::Overload));
    }

    /// A deterministic pseudo-random stream (the simulation needs many draws per case).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    /// Simulates `stages` stages with period `t` (integer time), random phases, and every
    /// job doing its read-then-write at a random instant of its period (the premise: a job
    /// finishes within its period). Stage 0 produces one chunk of `k` packets per job; the
    /// others move at most `k` per job. Returns (largest hop backlog, largest end-to-end
    /// delay, packets delivered).
    fn simulate(seed: u64, stages: usize, t: u64, k: usize, periods: u64) -> (usize, u64, usize) {
        let mut rng = Rng(seed | 1);
        let phase: Vec<u64> = (0..stages).map(|_| rng.below(t)).collect();
        // Every job's action instant, then processed in time order (ties: the earlier stage).
        let mut events: Vec<(u64, usize)> = Vec::new();
        for (s, ph) in phase.iter().enumerate() {
            for j in 0..periods {
                events.push((ph + j * t + rng.below(t), s));
            }
        }
        events.sort();
        let mut hops: Vec<VecDeque<u64>> = (0..stages - 1).map(|_| VecDeque::new()).collect();
        let (mut worst_backlog, mut worst_delay, mut delivered) = (0, 0, 0);
        for (now, s) in events {
            let moved: Vec<u64> = if s == 0 {
                (0..k).map(|_| now).collect()
            } else {
                let h = &mut hops[s - 1];
                let n = h.len().min(k);
                h.drain(..n).collect()
            };
            if s == stages - 1 {
                for born in moved {
                    worst_delay = worst_delay.max(now - born);
                    delivered += 1;
                }
            } else {
                hops[s].extend(moved);
                worst_backlog = worst_backlog.max(hops[s].len());
            }
        }
        (worst_backlog, worst_delay, delivered)
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn plan_meets_the_request(c in 1u32..100_000, lambda in 1u32..10_000_000, b in 1u32..1_000_000, packet in 1u32..4096, stages in 2u32..=16) {
                if let Ok(p) = plan(Qos { c_us: c, lambda, b, packet, stages }) {
                    prop_assert!(p.throughput >= lambda);
                    prop_assert!(p.chunk % packet == 0 && 3 * p.chunk <= b && p.slots == 3 * p.packets);
                    prop_assert!(p.c_us <= p.t_us && p.t_us >= MIN_PERIOD_US);
                    prop_assert_eq!(u64::from(p.delay_us), 4 * u64::from(p.t_us) * u64::from(stages - 1));
                }
            }

            /// The guarantees hold in simulation: no hop ever holds more than 3 chunks (its
            /// slots), every packet arrives within 4T per hop, and none is lost (all but
            /// those still in flight at the end arrive).
            #[test]
            fn rate_matched_stages_keep_the_bounds(seed in any::<u64>(), stages in 2usize..6, k in 1usize..5) {
                let t = 1000;
                let periods = 300;
                let (backlog, delay, delivered) = simulate(seed, stages, t, k, periods);
                prop_assert!(backlog <= 3 * k, "backlog {} > {}", backlog, 3 * k);
                prop_assert!(delay < 4 * t * (stages as u64 - 1), "delay {} ≥ {}", delay, 4 * t * (stages as u64 - 1));
                let produced = k * periods as usize;
                prop_assert!(delivered + 3 * k * (stages - 1) >= produced, "{} of {} delivered", delivered, produced);
            }
        }
    }
}
