//! Each PCPU scheduler's configuration: POSIX sporadic-server rules, the quantum, the trace
//! ring, and the background (work-conserving) policy with its command-line switch.
use core::sync::atomic::Ordering;

use vcpu_sched::{BackgroundPolicy, Config, ReplenishMode, Scheduler};

use super::{QUANTUM_NS, SchedError, TRACE_EVENTS, with_cpu};

/// Whether new PCPU schedulers run depleted VCPUs in the background (kernel command line
/// `sched.background=on|off`; on by default).
static DEFAULT_BACKGROUND: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// The scheduler configuration of PCPU `cpu`.
///
/// Replenishment: always the POSIX sporadic-server rules. The crate's sliding-window mode is
/// not offered by the kernel: the admission tests are not sound for it (random admitted sets
/// leave a server short of C in some period), see docs/vcpu-sched.md.
///
/// Background (work-conserving by default): when no VCPU with budget has work, a depleted,
/// backlogged VCPU runs at background priority. Background time is charged to no budget and a
/// VCPU with budget preempts it at once (its wake or replenishment is a scheduling event), so
/// every reservation stays what admission promised; `sched.background=off` idles instead.
pub(super) fn mode_config(cpu: usize, background: bool) -> Config {
    Config {
        pcpu: cpu as u32,
        quantum: QUANTUM_NS,
        trace_capacity: TRACE_EVENTS,
        replenish: ReplenishMode::Posix,
        background: if background { BackgroundPolicy::Background } else { BackgroundPolicy::Idle },
        ..Config::default()
    }
}

/// `sched.background=` values.
pub fn parse_background(s: &str) -> Option<bool> {
    match s {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Sets the background policy for PCPUs started from now on.
pub fn set_default_background(on: bool) {
    DEFAULT_BACKGROUND.store(on, Ordering::Relaxed);
}

pub(super) fn default_background() -> bool {
    DEFAULT_BACKGROUND.load(Ordering::Relaxed)
}

/// Replaces an idle PCPU's scheduler by one with background policy `on` (only when the PCPU
/// runs nothing but its idle thread and has no VCPU besides an empty best-effort one).
pub fn set_background(cpu: usize, on: bool) -> Result<(), SchedError> {
    with_cpu(cpu, |c| {
        if c.threads.len() > 1 || c.sched.vcpus().count() > 1 {
            return Err(SchedError::Busy);
        }
        let (s, be) = Scheduler::with_best_effort(mode_config(cpu, on));
        c.sched = s;
        c.best_effort = be;
        Ok(())
    })?
}

/// Whether `cpu` runs depleted VCPUs in the background.
pub fn background(cpu: usize) -> Option<bool> {
    with_cpu(cpu, |c| c.sched.config().background == BackgroundPolicy::Background).ok()
}

