//! Linux's scheduling calls on Quest's VCPUs: affinity, getcpu, policies, priorities, nice and
//! SCHED_DEADLINE.
//!
//! The mapping (docs/vcpu-sched.md, "Linux's scheduling API"):
//!
//! * **SCHED_OTHER, SCHED_BATCH, SCHED_IDLE** (priority 0): the best-effort VCPU of the
//!   thread's CPU, round-robin with the other threads there. The nice value (`nice`,
//!   `setpriority`) is kept and reported but does not weight the share: Quest's best-effort
//!   VCPU has no weights.
//! * **SCHED_FIFO, SCHED_RR** (priority 1..=99, as `sched_get_priority_min/max` say): accepted,
//!   kept and reported, and the thread stays on its best-effort VCPU. Quest has no unbounded
//!   fixed-priority class above reservations (a spinning FIFO thread would starve every Main
//!   VCPU, which admission promised their budgets); a thread that needs a guarantee asks for
//!   SCHED_DEADLINE.
//! * **SCHED_DEADLINE** (`sched_setattr`, the calling thread): a Main VCPU with
//!   `C = ceil(runtime / 1 us)` and `T = floor(deadline / 1 us)` — deadline equal to period is
//!   the request itself; a deadline shorter than the period is served by the stronger guarantee
//!   of C in every deadline-long window — created through admission control on the CPUs of the
//!   thread's affinity, worst fit, and the thread moves onto it. EBUSY when no CPU admits it
//!   (as Linux's own admission test answers). The VCPU ends with the thread or when it sets
//!   another policy. A thread bound to a Main VCPU by `vcpu_bind_task` reports SCHED_DEADLINE
//!   with runtime C and deadline = period = T.
//! * **Affinity**: honoured. A best-effort thread moves at once to the least-loaded allowed CPU
//!   if it is outside the new mask, and idle CPUs pull only threads their CPU is allowed for. A
//!   thread on a reservation cannot be sent off its reservation's CPU (EBUSY, as Linux answers
//!   for a SCHED_DEADLINE thread).
//!
//! `pid` 0 is the calling thread; other ids name a thread of any process (Linux's per-thread
//! semantics). SCHED_DEADLINE for another thread is not supported yet (EINVAL).
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use vcpu_sched::placement::CpuMask;
use vcpu_sched::{VcpuKind, VcpuParams};

use super::{Args, Cx, SysResult, UserPtr};
use crate::sched::{self, Tid};
use crate::sched::smp::{self as smp, Policy};

/// Bytes of a CPU mask as Linux's calls see it (whole longs covering every CPU Quest supports).
const MASK_BYTES: usize = hal::percpu::MAX_CPUS.div_ceil(64) * 8;
/// `struct sched_attr`'s first version, which Quest reads and writes (48 bytes), and the
/// largest known (with the utilization clamps, 56).
const ATTR_VER0: usize = 48;
const ATTR_VER1: usize = 56;
/// Linux's smallest SCHED_DEADLINE runtime (ns).
const DL_MIN_RUNTIME: u64 = 1024;

/// Whether this module handles call `nr`.
pub fn handles(nr: u32) -> bool {
    matches!(
        nr,
        __NR_sched_setaffinity
            | __NR_sched_getaffinity
            | __NR_getcpu
            | __NR_sched_setscheduler
            | __NR_sched_getscheduler
            | __NR_sched_setparam
            | __NR_sched_getparam
            | __NR_sched_get_priority_min
            | __NR_sched_get_priority_max
            | __NR_sched_rr_get_interval
            | __NR_sched_setattr
            | __NR_sched_getattr
            | __NR_setpriority
            | __NR_getpriority
    )
}

pub fn call(cx: &Cx, nr: u32, a: Args) -> SysResult {
    match nr {
        __NR_sched_setaffinity => setaffinity(cx, a.n(0), a.n(1), a.n(2)),
        __NR_sched_getaffinity => getaffinity(cx, a.n(0), a.n(1), a.n(2)),
        __NR_getcpu => getcpu(cx, a.ptr(0), a.ptr(1)),
        __NR_sched_setscheduler => setscheduler(cx, a.n(0), Some(a.n(1)), a.ptr(2)),
        __NR_sched_setparam => setscheduler(cx, a.n(0), None, a.ptr(1)),
        __NR_sched_getscheduler => target(cx, a.n(0)).map(|t| u64::from(effective(t).policy)),
        __NR_sched_getparam => {
            let t = target(cx, a.n(0))?;
            a.ptr::<i32>(1).write(cx.p(), &(effective(t).priority as i32)).map(|_| 0)
        }
        __NR_sched_get_priority_max => priority_range(a.n(0)).map(|r| r.1),
        __NR_sched_get_priority_min => priority_range(a.n(0)).map(|r| r.0),
        __NR_sched_rr_get_interval => {
            target(cx, a.n(0))?;
            // The round-robin quantum among a VCPU's threads.
            a.ptr::<[i64; 2]>(1).write(cx.p(), &[0, 10_000_000]).map(|_| 0)
        }
        __NR_sched_setattr => setattr(cx, a.n(0), a.n(1), a.n(2)),
        __NR_sched_getattr => getattr(cx, a.n(0), a.n(1), a.n(2), a.n(3)),
        __NR_setpriority => setpriority(cx, a.n(0), a.n(1), a.n(2) as i32),
        __NR_getpriority => getpriority(cx, a.n(0), a.n(1)),
        _ => Err(ENOSYS),
    }
}

/// The thread `pid` names (0: the caller); ESRCH unless it is a user thread.
fn target(cx: &Cx, pid: u64) -> Result<Tid, u32> {
    let pid = pid as i32;
    if pid < 0 {
        return Err(EINVAL);
    }
    if pid == 0 {
        return Ok(cx.tid);
    }
    let t = pid as Tid;
    crate::process::of_thread(t).map(|_| t).ok_or(ESRCH)
}

/// A thread's policy as programs see it: what it set, or SCHED_DEADLINE with its Main VCPU's
/// C and T when it is bound to one.
fn effective(t: Tid) -> Policy {
    let p = smp::policy_of(t).unwrap_or_default();
    match reservation(t) {
        Some((c, tt)) if p.policy != SCHED_DEADLINE => Policy { policy: SCHED_DEADLINE, priority: 0, runtime: c, deadline: tt, period: tt, ..p },
        _ => p,
    }
}

/// (C, T) in ns of the Main VCPU (other than a best-effort one) thread `t` is bound to.
fn reservation(t: Tid) -> Option<(u64, u64)> {
    let (cpu, v) = sched::smp::placement_of(t)?;
    let v = v?;
    if sched::best_effort_vcpu(cpu).ok() == Some(v) {
        return None;
    }
    let i = sched::vcpus(cpu).into_iter().find(|i| i.id == v)?;
    (i.params.kind == VcpuKind::Main).then(|| (u64::from(i.params.c_us) * 1000, u64::from(i.params.t_us) * 1000))
}

fn priority_range(policy: u64) -> Result<(u64, u64), u32> {
    match policy as u32 {
        SCHED_FIFO | SCHED_RR => Ok((1, 99)),
        SCHED_NORMAL | SCHED_BATCH | SCHED_IDLE | SCHED_DEADLINE => Ok((0, 0)),
        _ => Err(EINVAL),
    }
}

fn setaffinity(cx: &Cx, pid: u64, len: u64, ptr: u64) -> SysResult {
    let t = target(cx, pid)?;
    let n = (len as usize).min(MASK_BYTES.max(32));
    let mut bytes = alloc::vec![0u8; n];
    super::UserSlice::new(ptr, n as u64).read_into(cx.p(), &mut bytes)?;
    match smp::set_affinity(t, CpuMask::from_bytes(&bytes)) {
        Ok(()) => Ok(0),
        Err(smp::AffinityError::Empty) => Err(EINVAL),
        Err(smp::AffinityError::NoThread) => Err(ESRCH),
        Err(smp::AffinityError::Reserved) => Err(EBUSY),
    }
}

fn getaffinity(cx: &Cx, pid: u64, len: u64, ptr: u64) -> SysResult {
    let t = target(cx, pid)?;
    // Linux: the buffer must hold every possible CPU and be a whole number of longs.
    if (len as usize) < MASK_BYTES || !len.is_multiple_of(8) {
        return Err(EINVAL);
    }
    let m = smp::affinity_of(t).ok_or(ESRCH)?;
    super::UserSliceMut::new(ptr, MASK_BYTES as u64).write(cx.p(), &m.to_bytes(MASK_BYTES))?;
    Ok(MASK_BYTES as u64)
}

fn getcpu(cx: &Cx, cpu: UserPtr<u32>, node: UserPtr<u32>) -> SysResult {
    let c = sched::current_placement().0 as u32;
    if !cpu.is_null() {
        cpu.write(cx.p(), &c)?;
    }
    if !node.is_null() {
        node.write(cx.p(), &0)?;
    }
    Ok(0)
}

/// sched_setscheduler (`policy` given) and sched_setparam (`None`: keep the policy).
fn setscheduler(cx: &Cx, pid: u64, policy: Option<u64>, param: UserPtr<i32>) -> SysResult {
    let t = target(cx, pid)?;
    if param.is_null() {
        return Err(EINVAL);
    }
    let prio = param.read(cx.p())?;
    let old = smp::policy_of(t).ok_or(ESRCH)?;
    let (pol, reset) = match policy {
        Some(p) => {
            let p = p as u32;
            (p & !SCHED_RESET_ON_FORK, p & SCHED_RESET_ON_FORK != 0)
        }
        None => (old.policy, old.reset_on_fork),
    };
    if pol == SCHED_DEADLINE {
        return Err(EINVAL); // only through sched_setattr, which carries the parameters
    }
    let (lo, hi) = priority_range(u64::from(pol))?;
    if prio < lo as i32 || prio > hi as i32 {
        return Err(EINVAL);
    }
    leave_deadline(cx, t)?;
    smp::set_policy(t, Policy { policy: pol, priority: prio as u32, nice: old.nice, reset_on_fork: reset, ..Policy::default() });
    Ok(0)
}

/// A thread leaving SCHED_DEADLINE goes back to its CPU's best-effort VCPU and its Main VCPU
/// is destroyed.
fn leave_deadline(cx: &Cx, t: Tid) -> Result<(), u32> {
    let old = smp::policy_of(t).ok_or(ESRCH)?;
    if old.policy != SCHED_DEADLINE {
        return Ok(());
    }
    if t != cx.tid {
        return Err(EINVAL); // not supported yet for another thread
    }
    let cpu = sched::current_placement().0;
    sched::smp::move_current(cpu, None).map_err(|_| EINVAL)?;
    if let Some(v) = cx.p().stage_vcpus.lock().remove(&t) {
        let _ = crate::vcpu::destroy(v, true);
    }
    Ok(())
}

/// `struct sched_attr` (the first 48 bytes): size, policy, flags, nice, priority, runtime,
/// deadline, period.
#[derive(Clone, Copy, Debug, Default)]
struct Attr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

impl Attr {
    fn from_words(w: &[u64; 6]) -> Attr {
        Attr {
            size: w[0] as u32,
            policy: (w[0] >> 32) as u32,
            flags: w[1],
            nice: w[2] as u32 as i32,
            priority: (w[2] >> 32) as u32,
            runtime: w[3],
            deadline: w[4],
            period: w[5],
        }
    }
    fn words(&self) -> [u64; 7] {
        [
            u64::from(self.size) | (u64::from(self.policy) << 32),
            self.flags,
            u64::from(self.nice as u32) | (u64::from(self.priority) << 32),
            self.runtime,
            self.deadline,
            self.period,
            0,
        ]
    }
}

fn setattr(cx: &Cx, pid: u64, ptr: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(EINVAL);
    }
    let t = target(cx, pid)?;
    let size = UserPtr::<u32>::new(ptr).read(cx.p())? as usize;
    let size = if size == 0 { ATTR_VER0 } else { size };
    if !(ATTR_VER0..=4096).contains(&size) {
        let _ = UserPtr::<u32>::new(ptr).write(cx.p(), &(ATTR_VER1 as u32));
        return Err(E2BIG);
    }
    if size > ATTR_VER0 {
        // Fields past the first version must be zero (the utilization clamps are not supported).
        let mut rest = alloc::vec![0u8; size - ATTR_VER0];
        super::UserSlice::new(ptr + ATTR_VER0 as u64, rest.len() as u64).read_into(cx.p(), &mut rest)?;
        if rest.iter().any(|&b| b != 0) {
            let _ = UserPtr::<u32>::new(ptr).write(cx.p(), &(ATTR_VER0 as u32));
            return Err(E2BIG);
        }
    }
    let a = Attr::from_words(&UserPtr::<[u64; 6]>::new(ptr).read(cx.p())?);
    if a.flags & !u64::from(SCHED_FLAG_RESET_ON_FORK) != 0 {
        return Err(EINVAL); // reclaim, overrun signals, keep-*, clamps: not supported yet
    }
    let reset = a.flags & u64::from(SCHED_FLAG_RESET_ON_FORK) != 0;
    let old = smp::policy_of(t).ok_or(ESRCH)?;
    match a.policy {
        SCHED_DEADLINE => {
            if t != cx.tid {
                return Err(EINVAL); // not supported yet for another thread
            }
            set_deadline(cx, &a, reset, old)
        }
        p => {
            let (lo, hi) = priority_range(u64::from(p))?;
            if a.priority < lo as u32 || a.priority > hi as u32 || !(-20..=19).contains(&a.nice) {
                return Err(EINVAL);
            }
            leave_deadline(cx, t)?;
            smp::set_policy(t, Policy { policy: p, priority: a.priority, nice: a.nice, reset_on_fork: reset, ..Policy::default() });
            Ok(0)
        }
    }
}

/// The Main VCPU for SCHED_DEADLINE (see the module doc): admission on the thread's allowed
/// CPUs, worst fit; EBUSY when none admits it. An existing reservation is replaced only once
/// the new one is admitted (beside it: the check is conservative).
fn set_deadline(cx: &Cx, a: &Attr, reset: bool, old: Policy) -> SysResult {
    let period = if a.period == 0 { a.deadline } else { a.period };
    if a.runtime < DL_MIN_RUNTIME || a.runtime > a.deadline || a.deadline > period || period >> 63 != 0 {
        return Err(EINVAL);
    }
    let c_us = a.runtime.div_ceil(1000);
    let t_us = a.deadline / 1000;
    if t_us == 0 || c_us > t_us || t_us > u64::from(u32::MAX) {
        return Err(EINVAL);
    }
    let me = cx.tid;
    let mask = smp::affinity_of(me).ok_or(ESRCH)?;
    let (id, cpu, v) = crate::vcpu::create_on(&mask, VcpuParams::main(c_us as u32, t_us as u32))?;
    let previous = cx.p().stage_vcpus.lock().insert(me, id);
    if sched::smp::move_current(cpu, Some(v)).is_err() || sched::current_placement() != (cpu, Some(v)) {
        // Not on it (cannot happen for a VCPU just made on an allowed CPU): undo.
        let _ = crate::vcpu::destroy(id, true);
        match previous {
            Some(p) => cx.p().stage_vcpus.lock().insert(me, p),
            None => cx.p().stage_vcpus.lock().remove(&me),
        };
        return Err(EBUSY);
    }
    if let Some(p) = previous {
        let _ = crate::vcpu::destroy(p, true);
    }
    smp::set_policy(
        me,
        Policy { policy: SCHED_DEADLINE, priority: 0, nice: old.nice, reset_on_fork: reset, runtime: a.runtime, deadline: a.deadline, period },
    );
    Ok(0)
}

fn getattr(cx: &Cx, pid: u64, ptr: u64, size: u64, flags: u64) -> SysResult {
    if flags != 0 || (size as usize) < ATTR_VER0 || size > 4096 {
        return Err(EINVAL);
    }
    let t = target(cx, pid)?;
    let p = effective(t);
    let n = (size as usize).min(ATTR_VER1);
    let a = Attr {
        size: n as u32,
        policy: p.policy,
        flags: if p.reset_on_fork { u64::from(SCHED_FLAG_RESET_ON_FORK) } else { 0 },
        nice: p.nice,
        priority: p.priority,
        runtime: p.runtime,
        deadline: p.deadline,
        period: p.period,
    };
    let words = a.words();
    let bytes: alloc::vec::Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(n).collect();
    super::UserSliceMut::new(ptr, n as u64).write(cx.p(), &bytes)?;
    Ok(0)
}

/// setpriority(PRIO_PROCESS, who, nice): the thread's nice value, clamped to -20..=19 as
/// Linux does. Process groups and users are not supported yet (EINVAL).
fn setpriority(cx: &Cx, which: u64, who: u64, nice: i32) -> SysResult {
    if which as u32 != PRIO_PROCESS {
        return Err(EINVAL);
    }
    let t = target(cx, who)?;
    let old = smp::policy_of(t).ok_or(ESRCH)?;
    smp::set_policy(t, Policy { nice: nice.clamp(-20, 19), ..old });
    Ok(0)
}

/// getpriority: `20 - nice` (the raw call's 1..=40; libc turns it back into the nice value).
fn getpriority(cx: &Cx, which: u64, who: u64) -> SysResult {
    if which as u32 != PRIO_PROCESS {
        return Err(EINVAL);
    }
    let t = target(cx, who)?;
    let p = smp::policy_of(t).ok_or(ESRCH)?;
    Ok((20 - p.nice) as u64)
}
