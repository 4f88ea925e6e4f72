//! Threads on several CPUs: placement, moves, affinity and idle pulls.
//!
//! The rules are `vcpu_sched::placement`'s (pure, tested on the host); this module applies them
//! to the live CPUs.
//!
//! * **Placement** ([`place`]): a new best-effort thread or process goes to the allowed CPU with
//!   the fewest runnable best-effort threads (then the least reserved utilization, then the
//!   lowest index).
//! * **Moves**: a thread moves only while no CPU runs it. A thread that is not running is
//!   taken out of its CPU's tables and put into the target's with `WHERE` held throughout
//!   ([`move_thread`]); a running one (the caller itself, or a thread running on another CPU)
//!   is marked `move_to`, taken out of its scheduler, and leaves when its CPU switches away
//!   from it: the next thread's `finish_switch` puts it on the target ([`send_moving`]).
//!   Whoever looks a thread up meanwhile finds it in the old CPU's `moving` list or, once
//!   `WHERE` is released, on the new CPU (`with_thread`), so no wake is lost.
//! * **Balancing** ([`try_pull`]): a CPU that becomes idle, or is kicked because another CPU
//!   has a second runnable best-effort thread, pulls one *ready* best-effort thread whose
//!   affinity allows it from the CPU with the most (at least two). Only threads bound to the
//!   best-effort VCPU move, and they join the puller's best-effort VCPU: no reservation, which
//!   admission granted per CPU, changes.
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use hal::percpu::{MAX_CPUS, cpu_index};
use vcpu_sched::placement::{CpuLoad, CpuMask, least_loaded, pull_source};
use vcpu_sched::{Scheduler, TaskId, VcpuId, VcpuKind};

use super::{Cpu, SchedError, State, Thread, Tid, WHERE, now, reschedule, schedule, with_cpu, with_thread};

/// A thread's Linux scheduling attributes as set (see `syscall::scheduling` for the mapping
/// onto VCPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// SCHED_OTHER (0), SCHED_FIFO (1), SCHED_RR (2), SCHED_BATCH (3), SCHED_IDLE (5),
    /// SCHED_DEADLINE (6).
    pub policy: u32,
    /// sched_priority (1..=99 for FIFO/RR, else 0).
    pub priority: u32,
    /// Nice value, -20..=19.
    pub nice: i32,
    /// SCHED_RESET_ON_FORK: children start as SCHED_OTHER.
    pub reset_on_fork: bool,
    /// SCHED_DEADLINE's runtime, deadline and period as asked (ns).
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

impl Policy {
    /// What a child thread or process starts with (Linux: the creator's, unless reset on fork;
    /// a SCHED_DEADLINE reservation is never inherited).
    pub fn inherited(self) -> Policy {
        if self.reset_on_fork || self.policy == 6 {
            Policy { nice: if self.reset_on_fork { self.nice.max(0) } else { self.nice }, ..Policy::default() }
        } else {
            self
        }
    }
}

/// Every online CPU.
pub fn all_cpus() -> CpuMask {
    CpuMask::first(hal::percpu::online())
}

static IDLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static KICK: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// `schedule` on `cpu` chose the idle thread (`idle`) or not; a CPU that just became idle tries
/// a pull.
pub(super) fn note_idle(cpu: usize, idle: bool, was_busy: bool) {
    IDLE[cpu].store(idle, Ordering::SeqCst);
    if idle && was_busy {
        KICK[cpu].store(true, Ordering::SeqCst);
    }
}

/// Whether `cpu`'s idle loop was asked to try a pull (clears the request).
pub(super) fn take_kick(cpu: usize) -> bool {
    KICK[cpu].swap(false, Ordering::SeqCst)
}

/// Runnable threads on `be` (the best-effort VCPU).
fn be_runnable(s: &Scheduler, be: VcpuId) -> u32 {
    s.vcpus().find(|i| i.id == be).map_or(0, |i| i.runnable as u32)
}

/// Whether a CPU has a best-effort thread waiting beside the running one.
pub(super) fn has_surplus(c: &Cpu) -> bool {
    be_runnable(&c.sched, c.best_effort) >= 2
}

/// [`has_surplus`] from a scheduler and its best-effort VCPU.
pub(super) fn surplus_of(s: &Scheduler, be: VcpuId) -> bool {
    be_runnable(s, be) >= 2
}

/// Asks an idle CPU other than `from` to try a pull.
pub(super) fn kick_idle(from: usize) {
    for cpu in 0..hal::percpu::online() {
        if cpu != from && IDLE[cpu].load(Ordering::SeqCst) {
            KICK[cpu].store(true, Ordering::SeqCst);
            reschedule(cpu);
            return;
        }
    }
}

/// The load of every online CPU, as placement sees it.
pub fn loads() -> Vec<CpuLoad> {
    (0..hal::percpu::online())
        .filter_map(|cpu| {
            with_cpu(cpu, |c| {
                let mut reserved: u64 = 0;
                for i in c.sched.vcpus() {
                    if i.id != c.best_effort && i.params.kind == VcpuKind::Main && i.params.t_us > 0 {
                        reserved += u64::from(i.params.c_us) * 1_000_000 / u64::from(i.params.t_us);
                    }
                }
                CpuLoad { cpu, best_effort_runnable: be_runnable(&c.sched, c.best_effort), reserved_ppm: reserved.min(u64::from(u32::MAX)) as u32 }
            })
            .ok()
        })
        .collect()
}

/// The CPU a new best-effort thread allowed on `mask` goes to (the calling CPU if the mask
/// names no online CPU).
pub fn place(mask: &CpuMask) -> usize {
    least_loaded(&loads(), &mask.and(&all_cpus())).unwrap_or_else(cpu_index)
}

/// Takes thread `tid` out of `c` if no CPU runs it, it is bound to the best-effort VCPU (a
/// reservation never moves) and `ok` accepts it: its box, with its state.
fn take_out(c: &mut Cpu, tid: Tid, ok: impl Fn(&Thread) -> bool) -> Option<Box<Thread>> {
    let th = c.threads.get(&tid)?;
    if tid == c.current || th.idle || th.move_to.is_some() || !ok(th) || c.sched.vcpu_of(TaskId(tid)) != Some(c.best_effort) {
        return None;
    }
    if !matches!(th.state, State::Ready | State::Blocked | State::Sleeping(_)) {
        return None;
    }
    c.sched.remove_task(now(), TaskId(tid)).ok()?;
    c.sleepers.remove(TaskId(tid));
    c.threads.remove(&tid)
}

/// Puts a thread that no CPU runs into `to`'s tables, bound to `vcpu` (the best-effort VCPU if
/// `None` or if that VCPU is gone), runnable, blocked or sleeping as it was.
fn land(mut b: Box<Thread>, to: usize, vcpu: Option<VcpuId>) -> Result<(), Box<Thread>> {
    b.move_to = None;
    let mut slot = Some(b);
    let r = with_cpu(to, |c| {
        let Some(b) = slot.take() else { return };
        let t = now();
        let id = TaskId(b.id);
        let bound = vcpu.is_some_and(|v| c.sched.add_task(t, id, v).is_ok());
        if !bound && c.sched.add_task(t, id, c.best_effort).is_err() {
            slot = Some(b);
            return;
        }
        match b.state {
            State::Ready | State::Running => {
                let _ = c.sched.wake(t, id);
            }
            State::Sleeping(d) => c.sleepers.add(d, id),
            State::Blocked | State::Dead => {}
        }
        let mut b = b;
        if b.state == State::Running {
            b.state = State::Ready;
        }
        c.threads.insert(b.id, b);
    });
    match (r, slot) {
        (Ok(()), None) => Ok(()),
        (_, Some(b)) => Err(b),
        (Err(_), None) => Ok(()),
    }
}

/// Moves thread `tid`, which no CPU runs, from wherever it is to `to` (onto its best-effort
/// VCPU) if `ok` accepts it there. With `WHERE` held throughout (invariant 4).
fn move_thread(tid: Tid, to: usize, ok: impl Fn(&Thread) -> bool) -> bool {
    let mut w = WHERE.lock();
    let Some(&from) = w.get(&tid) else { return false };
    if from == to {
        return true;
    }
    let Ok(Some(b)) = with_cpu(from, |c| take_out(c, tid, &ok)) else { return false };
    let at = match land(b, to, None) {
        Ok(()) => to,
        Err(b) => {
            // Cannot happen for an online CPU; put it back rather than lose it.
            let _ = land(b, from, None);
            from
        }
    };
    w.insert(tid, at);
    drop(w);
    reschedule(at);
    if at != from {
        reschedule(from);
    }
    at == to
}

/// Sends the threads this CPU switched away from on their way (`Thread::move_to`).
pub(super) fn send_moving() {
    let me = cpu_index();
    let mut w = WHERE.lock();
    let moving = with_cpu(me, |c| core::mem::take(&mut c.moving)).unwrap_or_default();
    let mut targets = Vec::new();
    for mut b in moving {
        let (to, v) = b.move_to.take().unwrap_or((me, None));
        let id = b.id;
        let at = match land(b, to, v) {
            Ok(()) => to,
            Err(b) => {
                let _ = land(b, me, None);
                me
            }
        };
        w.insert(id, at);
        targets.push(at);
    }
    drop(w);
    for t in targets {
        if t != me {
            reschedule(t);
        }
    }
}

/// Moves the running thread to CPU `to`, bound to `vcpu` there (the best-effort VCPU if
/// `None`); returns once it runs there.
pub fn move_current(to: usize, vcpu: Option<VcpuId>) -> Result<(), SchedError> {
    if to >= hal::percpu::online() {
        return Err(SchedError::NoSuchCpu);
    }
    hal::cpu::without_interrupts(|| {
        let me = cpu_index();
        with_cpu(me, |c| {
            let cur = c.current;
            let t = now();
            if me == to {
                let v = vcpu.unwrap_or(c.best_effort);
                return c.sched.bind(t, TaskId(cur), v).map_err(SchedError::from);
            }
            if let Some(th) = c.threads.get_mut(&cur) {
                th.move_to = Some((to, vcpu));
                let _ = c.sched.remove_task(t, TaskId(cur));
            }
            Ok(())
        })?
    })?;
    // Switches away (the move happens in the next thread's `finish_switch`) or, on this CPU,
    // lets the new binding take effect.
    schedule();
    Ok(())
}

/// Thread `tid`'s CPU and VCPU.
pub fn placement_of(tid: Tid) -> Option<(usize, Option<VcpuId>)> {
    with_thread(tid, |th, c, cpu| (cpu, c.sched.vcpu_of(TaskId(th.id))))
}

/// Thread `tid`'s affinity.
pub fn affinity_of(tid: Tid) -> Option<CpuMask> {
    with_thread(tid, |th, _, _| th.affinity)
}

/// Thread `tid`'s policy.
pub fn policy_of(tid: Tid) -> Option<Policy> {
    with_thread(tid, |th, _, _| th.policy)
}

/// Sets thread `tid`'s policy record (the VCPU side is the caller's business).
pub fn set_policy(tid: Tid, p: Policy) -> bool {
    with_thread(tid, |th, _, _| th.policy = p).is_some()
}

/// Why an affinity change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AffinityError {
    /// No such thread.
    NoThread,
    /// The mask names no online CPU.
    Empty,
    /// The thread is bound to a Main or IO VCPU on a CPU the mask leaves out (reservations
    /// do not move).
    Reserved,
}

/// sched_setaffinity: thread `tid` may run only on `mask`; if it is elsewhere it moves to the
/// least-loaded CPU of the mask.
pub fn set_affinity(tid: Tid, mask: CpuMask) -> Result<(), AffinityError> {
    let mask = mask.and(&all_cpus());
    if mask.is_empty() {
        return Err(AffinityError::Empty);
    }
    let (cpu, reserved) = with_thread(tid, |th, c, cpu| (cpu, c.sched.vcpu_of(TaskId(th.id)) != Some(c.best_effort)))
    .ok_or(AffinityError::NoThread)?;
    if !mask.has(cpu) && reserved {
        return Err(AffinityError::Reserved);
    }
    with_thread(tid, |th, _, _| th.affinity = mask).ok_or(AffinityError::NoThread)?;
    if mask.has(cpu) {
        return Ok(());
    }
    let to = place(&mask);
    if tid == super::current() {
        return move_current(to, None).map_err(|_| AffinityError::NoThread);
    }
    // Another thread: move it if it is not running, else mark it to leave when switched away
    // from. Either can change under us (it starts or stops running): try again then.
    for _ in 0..1000 {
        if move_thread(tid, to, |_| true) {
            return Ok(());
        }
        let marked = with_thread(tid, |th, c, cpu| {
            if th.state == State::Running && th.move_to.is_none() {
                th.move_to = Some((to, None));
                let _ = c.sched.remove_task(now(), TaskId(th.id));
                Some(cpu)
            } else if th.move_to.is_some() {
                Some(usize::MAX) // already leaving (it lands, then a retry moves it if needed)
            } else {
                None
            }
        });
        match marked {
            None => return Err(AffinityError::NoThread),
            Some(Some(c)) if c != usize::MAX => {
                reschedule(c);
                return Ok(());
            }
            _ => core::hint::spin_loop(),
        }
    }
    Ok(())
}

/// An idle CPU's pull: one ready best-effort thread that may run here, from the CPU with the
/// most runnable best-effort threads (at least two).
pub fn try_pull(me: usize) {
    let loads = loads();
    if loads.iter().find(|l| l.cpu == me).is_none_or(|l| l.best_effort_runnable != 0) {
        return;
    }
    let Some(src) = pull_source(&loads, me) else { return };
    let pick = with_cpu(src, |c| {
        let be = c.best_effort;
        c.threads
            .values()
            .find(|t| t.id != c.current && !t.idle && t.state == State::Ready && t.move_to.is_none() && t.affinity.has(me) && c.sched.vcpu_of(TaskId(t.id)) == Some(be))
            .map(|t| t.id)
    });
    if let Ok(Some(tid)) = pick {
        let be_only = |t: &Thread| t.state == State::Ready && t.affinity.has(me);
        if move_thread(tid, me, be_only) {
            PULLS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Threads pulled by idle CPUs so far.
pub static PULLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
