//! Tuned pipes: deriving the endpoint VCPUs from a QoS request by rate matching.
//!
//! A tuned pipe carries a byte stream from a writer task to a reader task through a buffer of
//! `B` bytes. The request is `{C, lambda, B}`: throughput `lambda` bytes/s, and `C` µs of CPU
//! time that each endpoint needs to move one **chunk** of `B / 2` bytes (the writer to produce
//! and write it, the reader to read and consume it).
//!
//! Rate matching gives both endpoints the same Main VCPU (sporadic server) `(C, T)` with
//!
//! ```text
//! chunk = B / 2
//! T     = floor(chunk * 10^6 / lambda)   µs: the time lambda needs to fill one chunk
//! ```
//!
//! so per period the writer can produce, and the reader consume, one chunk: both run at
//! `chunk / T >= lambda` bytes/s and neither outruns the other. Guarantees, for a writer that
//! writes at most one chunk per `T` and endpoints that need at most `C` per chunk, once
//! admission control has accepted both VCPUs (a schedulable sporadic server with pending work
//! receives its budget `C` within every period `T`):
//!
//! * **throughput** `chunk * 10^6 / T` bytes/s (rounded down; at least `lambda`, because `T`
//!   was rounded down);
//! * **no blocking, no loss**: the reader consumes a chunk per period, so at most one chunk
//!   waits while the next is being written: the buffer holds `2 * chunk = B` bytes, the writer
//!   never finds it full (and a pipe never drops data anyway);
//! * **delay** `D = 2T`: a byte written at time `w` has at most one chunk ahead of it; the
//!   reader may have spent its budget of the current window, so it may wait up to `T` for the
//!   replenishment, and then reads that backlog within its next `C` of service, which a
//!   schedulable server receives within `T`.
//!
//! The kernel (kernel/src/tpipe.rs) creates the two VCPUs with these parameters on the
//! caller's PCPU, which runs admission control (`EBUSY` if either is refused), and binds the
//! first task that writes and the first that reads. The QEMU test measures every message's
//! delay against `D` with a CPU hog on a higher-priority VCPU beside the pipe.

/// The request (mirrors `quest_abi::TpipeQos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// CPU time per chunk (B/2 bytes) of each endpoint, µs.
    pub c_us: u32,
    /// Throughput, bytes per second.
    pub lambda: u32,
    /// Buffer size, bytes.
    pub b: u32,
}

/// The derived endpoint VCPUs and the guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Budget of both Main VCPUs, µs.
    pub c_us: u32,
    /// Period of both Main VCPUs, µs.
    pub t_us: u32,
    /// Bytes moved per period (B/2).
    pub chunk: u32,
    /// Guaranteed throughput, bytes/s (>= lambda).
    pub throughput: u32,
    /// Worst-case delay from write to read, µs (2T).
    pub delay_us: u32,
}

/// Why a request cannot be met (the kernel answers `EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosError {
    /// `lambda == 0` or `C == 0`.
    Zero,
    /// `B` odd or below 2.
    BadBuffer,
    /// The period would be shorter than [`MIN_PERIOD_US`].
    PeriodTooShort,
    /// The period (or the delay 2T) would not fit the VCPU parameters (`i32` µs).
    PeriodTooLong,
    /// `C > T`: an endpoint would need more than a whole CPU to keep up.
    Overload,
}

/// Shortest period handed to the scheduler, µs.
pub const MIN_PERIOD_US: u32 = 100;

/// Rate matching: see the module documentation.
pub fn rate_match(q: Qos) -> Result<Plan, QosError> {
    if q.lambda == 0 || q.c_us == 0 {
        return Err(QosError::Zero);
    }
    if q.b < 2 || q.b % 2 != 0 {
        return Err(QosError::BadBuffer);
    }
    let chunk = q.b / 2;
    let t = u64::from(chunk) * 1_000_000 / u64::from(q.lambda);
    if t < u64::from(MIN_PERIOD_US) {
        return Err(QosError::PeriodTooShort);
    }
    if 2 * t > i32::MAX as u64 {
        return Err(QosError::PeriodTooLong);
    }
    let t = t as u32;
    if q.c_us > t {
        return Err(QosError::Overload);
    }
    let throughput = (u64::from(chunk) * 1_000_000 / u64::from(t)).min(u64::from(u32::MAX)) as u32;
    Ok(Plan { c_us: q.c_us, t_us: t, chunk, throughput, delay_us: 2 * t })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn worked_example() {
        // 4 KiB buffer at 100 KiB/s: a 2 KiB chunk every 20 ms, delay bound 40 ms.
        let p = rate_match(Qos { c_us: 4000, lambda: 102_400, b: 4096 }).unwrap();
        assert_eq!(p, Plan { c_us: 4000, t_us: 20_000, chunk: 2048, throughput: 102_400, delay_us: 40_000 });
    }

    #[test]
    fn rejections() {
        assert_eq!(rate_match(Qos { c_us: 1, lambda: 0, b: 4 }), Err(QosError::Zero));
        assert_eq!(rate_match(Qos { c_us: 0, lambda: 1, b: 4 }), Err(QosError::Zero));
        assert_eq!(rate_match(Qos { c_us: 1, lambda: 1, b: 3 }), Err(QosError::BadBuffer));
        assert_eq!(rate_match(Qos { c_us: 1, lambda: 1, b: 0 }), Err(QosError::BadBuffer));
        // 2 bytes at 1 MB/s: a 1 µs period.
        assert_eq!(rate_match(Qos { c_us: 1, lambda: 1_000_000, b: 2 }), Err(QosError::PeriodTooShort));
        assert_eq!(rate_match(Qos { c_us: 1, lambda: 1, b: u32::MAX - 1 }), Err(QosError::PeriodTooLong));
        assert_eq!(rate_match(Qos { c_us: 20_001, lambda: 102_400, b: 4096 }), Err(QosError::Overload));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn plan_meets_the_request(c in 1u32..100_000, lambda in 1u32..100_000_000, half in 1u32..1_000_000) {
                let q = Qos { c_us: c, lambda, b: half * 2 };
                if let Ok(p) = rate_match(q) {
                    // Throughput at least lambda; the chunk takes at most T at lambda.
                    prop_assert!(p.throughput >= lambda);
                    prop_assert!(u64::from(p.t_us) * u64::from(lambda) <= u64::from(p.chunk) * 1_000_000);
                    // T is the largest such period (rounded down by less than one µs).
                    prop_assert!((u64::from(p.t_us) + 1) * u64::from(lambda) > u64::from(p.chunk) * 1_000_000);
                    prop_assert!(p.c_us <= p.t_us && p.t_us >= MIN_PERIOD_US);
                    prop_assert_eq!(p.delay_us, 2 * p.t_us);
                    prop_assert_eq!(u64::from(p.chunk) * 2, u64::from(q.b));
                } else {
                    let t = u64::from(half) * 1_000_000 / u64::from(lambda);
                    prop_assert!(t < u64::from(MIN_PERIOD_US) || 2 * t > i32::MAX as u64 || u64::from(c) > t);
                }
            }
        }
    }
}
