//! Quest VCPU scheduling core: sporadic-server Main VCPUs, PIBS IO VCPUs, rate-monotonic
//! queues, admission, and (feature `sim`) a discrete-event simulator; (feature `plot`) an SVG
//! Gantt renderer for schedule traces.
//!
//! Pure logic: `no_std` + `alloc`, no floating point, no `unsafe`, no hardware. The kernel
//! drives one [`Scheduler`] per physical CPU as a state machine.
//!
//! # Invariants (checked with `debug_assert!` here and by the property tests)
//!
//! 1. **Sliding window** (with [`ReplenishMode::SlidingWindow`]): for every Main VCPU, in every
//!    time window of length `T`, it executes (in the foreground) for at most `C`. With the
//!    default [`ReplenishMode::Posix`] the bound is `2C` for admitted sets, and a Main VCPU
//!    interferes with lower priorities like a periodic task `(C, T)`.
//! 2. **Deadlines**: if a set passes admission ([`admission::admit`]) and every Main VCPU is
//!    continuously backlogged, every piece of budget released at `r` is consumed by `r + T`
//!    (within one timer granularity), in both modes; with [`ReplenishMode::Posix`] releases
//!    stay exactly one period apart, so each VCPU receives at least `C` in every period.
//!    (Invariants 1 and 2 cannot both hold in full for every admitted set: see [`ss`].)
//! 3. **Budget conservation**: for every Main VCPU, the sum of its replenishment amounts plus
//!    its current usage equals `C` ([`ss`] invariant 1).
//! 4. **PIBS bound**: IO VCPU consumption never exceeds `U` over any eligibility period
//!    ([`pibs`] invariant 2).
//! 5. No VCPU ever runs in the foreground with zero budget.
//!
//! # Semantics
//!
//! * Time is an integer count of nanoseconds ([`Nanos`]). The API takes `C` and `T` in
//!   microseconds as the seed does ([`VcpuParams`]): `vcpu_test` uses `C = 20, T = 100`; the
//!   default best-effort VCPU is `C = 5000, T = 50000` ([`VcpuParams::BEST_EFFORT`]).
//! * VCPUs on a PCPU are ordered rate-monotonically (smaller `T` = higher priority; ties broken
//!   by creation order). Tasks inside a VCPU are round-robin with [`Config::quantum`].
//! * Main VCPUs are sporadic servers ([`ss`]); IO VCPUs are PIBS servers ([`pibs`]).
//! * When every VCPU with budget is idle or blocked, [`BackgroundPolicy`] decides whether the
//!   PCPU idles (default) or runs depleted VCPUs at background priority (uncharged).
//!
//! # Driving it from a kernel
//!
//! Every entry point takes the current time; each first charges the running VCPU up to it.
//! After any change (wake, block, bind, IO request, timer), call [`Scheduler::pick`]: it
//! returns what to run and the time of the next scheduling event (budget exhaustion,
//! replenishment, quantum end), for which the kernel programs a one-shot timer. There is no
//! per-tick polling.
//!
//! ```
//! use vcpu_sched::{Config, Scheduler, TaskId, VcpuParams};
//! let mut s = Scheduler::new(Config::default());
//! let v = s.create(0, VcpuParams::main(20, 100)).unwrap();
//! s.add_task(0, TaskId(1), v).unwrap();
//! s.wake(0, TaskId(1)).unwrap();
//! let d = s.pick(0);
//! assert_eq!(d.task(), Some(TaskId(1)));
//! assert_eq!(d.timer, Some(20_000)); // budget exhausted after 20 us
//! let d = s.pick(20_000);
//! assert_eq!(d.task(), None); // idle until the replenishment
//! assert_eq!(d.timer, Some(100_000));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod admission;
pub mod pibs;
pub mod placement;
pub mod sched;
pub mod sleep;
pub mod ss;
pub mod trace;

#[cfg(feature = "sim")]
pub mod check;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "plot")]
pub mod svg;

pub use admission::{AdmissionTest, Rejection, admit};
pub use sched::{BackgroundPolicy, Config, Decision, Run, Scheduler, VcpuInfo};
pub use sleep::{Sleepers, next_timer};
pub use ss::ReplenishMode;
pub use trace::{EventKind, TraceEvent};

/// Time in nanoseconds.
pub type Nanos = u64;

/// Nanoseconds per microsecond.
pub const NS_PER_US: Nanos = 1_000;

/// A VCPU handle on one [`Scheduler`]. Numbers are reused after a VCPU is destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

/// A task id chosen by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u32);

/// Main (sporadic server) or IO (PIBS) VCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VcpuKind {
    /// Sporadic server with budget `C` every period `T`.
    Main,
    /// PIBS server with utilization `U = C / T`.
    Io,
}

/// VCPU parameters as the seed's `struct sched_param`: `C` and `T` in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuParams {
    /// Main or IO.
    pub kind: VcpuKind,
    /// Budget (Main) or utilization numerator (IO), microseconds.
    pub c_us: u32,
    /// Period (Main) or utilization denominator (IO), microseconds.
    pub t_us: u32,
}

impl VcpuParams {
    /// The default best-effort VCPU of the seed: `C = 5000, T = 50000` (10%).
    pub const BEST_EFFORT: Self = Self::main(5000, 50000);

    /// A Main VCPU with budget `c_us` every `t_us` microseconds.
    pub const fn main(c_us: u32, t_us: u32) -> Self {
        Self {
            kind: VcpuKind::Main,
            c_us,
            t_us,
        }
    }

    /// An IO VCPU with utilization `c_us / t_us`.
    pub const fn io(c_us: u32, t_us: u32) -> Self {
        Self {
            kind: VcpuKind::Io,
            c_us,
            t_us,
        }
    }

    /// `C` in nanoseconds.
    pub const fn c_ns(&self) -> Nanos {
        self.c_us as Nanos * NS_PER_US
    }

    /// `T` in nanoseconds.
    pub const fn t_ns(&self) -> Nanos {
        self.t_us as Nanos * NS_PER_US
    }

    /// `0 < C <= T`.
    pub const fn is_valid(&self) -> bool {
        self.c_us > 0 && self.c_us <= self.t_us
    }
}

/// Errors from the scheduler API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `C` or `T` out of range (`0 < C <= T` is required).
    InvalidParams,
    /// No VCPU with this id.
    NoSuchVcpu,
    /// No task with this id.
    NoSuchTask,
    /// A task with this id already exists.
    TaskExists,
    /// The VCPU still has tasks bound to it.
    VcpuBusy,
    /// The operation needs the other kind of VCPU.
    WrongKind,
    /// Admission control rejected the VCPU.
    Rejected(Rejection),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::InvalidParams => f.write_str("invalid VCPU parameters (need 0 < C <= T)"),
            Error::NoSuchVcpu => f.write_str("no such VCPU"),
            Error::NoSuchTask => f.write_str("no such task"),
            Error::TaskExists => f.write_str("task already exists"),
            Error::VcpuBusy => f.write_str("VCPU still has tasks"),
            Error::WrongKind => f.write_str("wrong kind of VCPU for this operation"),
            Error::Rejected(r) => write!(f, "admission rejected: {r}"),
        }
    }
}

impl core::error::Error for Error {}
