//! Threads on VCPUs: the glue between `vcpu_sched::Scheduler` (one per PCPU, pure policy) and
//! the machine (context switches, the LAPIC one-shot timer, IPIs).
//!
//! A thread lives on one PCPU (where its VCPU is) until it is moved ([`smp`]: placement,
//! affinity, an idle CPU pulling best-effort work). A PCPU's state — its scheduler, its
//! threads, its sleepers — is behind that PCPU's `IrqLock`; other CPUs take it to create, wake
//! or move threads there, then send a reschedule IPI.
//!
//! `schedule()` asks the scheduler what runs from now on and when the next event is, programs
//! the one-shot timer for exactly that time (or the earliest sleeper, if sooner), and switches.
//! There is no periodic tick: a PCPU with nothing due sleeps in `hlt` with its timer off.
//!
//! Invariants:
//! 1. A thread's context is only switched to on its own PCPU, by `schedule()` with interrupts
//!    off, and only while no CPU runs it (`current` is the only running thread of a PCPU).
//! 2. A dead thread's memory (stack, `Thread`) is freed only after its PCPU has switched away
//!    from it (`reap` runs on the next thread).
//! 3. Wake-ups are never lost: waking a thread that has not blocked yet leaves `wake_pending`,
//!    and its next `block_current` returns at once. A thread being moved is found in its old
//!    CPU's `moving` list or, once `WHERE` is released, on its new CPU ([`with_thread`]).
//! 4. A thread moves only while it is not running on any CPU, with `WHERE` held from before it
//!    leaves the old CPU's tables until it is in the new one's ([`smp`]).
#![allow(unsafe_code)] // `switch` (below) is the one unsafe call: the context-switch contract
                       // depends on this module's bookkeeping, which hal cannot see.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hal::context::{Context, switch};
use hal::fpu::FpuState;
use hal::mm::KernelStack;
use hal::percpu::{MAX_CPUS, cpu_index};
use hal::sync::IrqLock;
use vcpu_sched::placement::CpuMask;
use vcpu_sched::{Scheduler, Sleepers, TaskId, VcpuId, VcpuInfo, VcpuParams};

mod config;
pub mod info;
pub mod smp;
use config::{default_background, mode_config};
#[allow(unused_imports)] // `background` and `set_background`: the test build's commands
pub use config::{background, parse_background, set_background, set_default_background};
pub use info::{drain_trace, threads};

pub type Tid = u32;

/// Stack size of kernel threads, in 4 KiB pages.
const STACK_PAGES: usize = 8;
/// Round-robin quantum among the threads of one VCPU.
const QUANTUM_NS: u64 = 10_000_000;
/// Scheduling events kept per PCPU for `trace`.
const TRACE_EVENTS: usize = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Ready,
    Blocked,
    Sleeping(u64),
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Ready => "ready",
            State::Blocked => "waiting",
            State::Sleeping(_) => "sleeping",
            State::Dead => "dead",
        }
    }
}

pub struct Thread {
    pub id: Tid,
    pub name: String,
    ctx: Context,
    _stack: Option<KernelStack>,
    fpu: FpuState,
    pub state: State,
    entry: Option<Box<dyn FnOnce() + Send>>,
    /// A user thread's first entry to user mode: the frame and FS base (kept here, not in a
    /// closure: entering user mode never returns, so a boxed closure would never be freed).
    user_start: Option<(hal::trap::TrapFrame, u64)>,
    wake_pending: bool,
    /// Interrupted (its process is being killed): every interruptible block returns at once.
    interrupted: bool,
    /// A signal it does not block is pending (`signal`): interruptible blocks return at once
    /// until the signal code clears it (`set_signal_pending`).
    signal_pending: bool,
    /// Why it was last made ready (what its `block` returns).
    woke_by: Wake,
    /// Time on the CPU so far, and since when it has been running.
    pub runtime_ns: u64,
    since: u64,
    /// The idle thread is not in the VCPU scheduler.
    idle: bool,
    /// Page-table root (CR3) while it runs: the kernel's, or its process's address space.
    root: hal::mm::PageTableRoot,
    /// Runs user code: its FS base is saved and restored.
    user: bool,
    fs_base: u64,
    /// The CPUs it may run on (`sched_setaffinity`; inherited from its creator).
    pub affinity: CpuMask,
    /// Linux scheduling policy, priority and nice value as set (`syscall::scheduling`).
    pub policy: smp::Policy,
    /// Set while it is being moved off its running CPU: (target CPU, VCPU there or `None` for
    /// the best-effort VCPU). It leaves when it is switched away from.
    move_to: Option<(usize, Option<VcpuId>)>,
}

struct Cpu {
    sched: Scheduler,
    best_effort: VcpuId,
    threads: BTreeMap<Tid, Box<Thread>>,
    current: Tid,
    idle: Tid,
    sleepers: Sleepers,
    dead: Vec<Box<Thread>>,
    /// Threads switched away from on their way to another CPU (`Thread::move_to`): placed
    /// there by the next thread's `finish_switch`.
    moving: Vec<Box<Thread>>,
    switches: u64,
    timer_at: Option<u64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_CPU: IrqLock<Option<Cpu>> = IrqLock::ranked(None, crate::locks::SCHED);
static CPUS: [IrqLock<Option<Cpu>>; MAX_CPUS] = [NO_CPU; MAX_CPUS];
/// Which PCPU each live thread is on.
static WHERE: IrqLock<BTreeMap<Tid, usize>> = IrqLock::ranked(BTreeMap::new(), crate::locks::WHERE);
static NEXT_TID: AtomicU32 = AtomicU32::new(1);
static CONTEXT_SWITCHES: AtomicU64 = AtomicU64::new(0);
/// Per PCPU: the running thread's id, a copy of `Cpu::current` written by the same switch (so
/// [`current`], asked on every system call, reads one word instead of taking the CPU's lock
/// and looking the thread up). 0 before the CPU's scheduler exists.
static CURRENT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Per PCPU: whether its running thread is interrupted or has a signal pending (what
/// [`must_act_before_user`] asks on every return to user mode), kept with `CURRENT`: set at
/// the switch from the next thread's marks, and by whoever changes the marks of a thread while
/// it runs (under its CPU's lock, as the switch).
static MUST_ACT: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

#[derive(Debug)]
pub enum SchedError {
    NoSuchCpu,
    NoSuchThread,
    OutOfMemory,
    /// The PCPU has threads or VCPUs besides its idle thread and empty best-effort VCPU.
    Busy,
    Vcpu(vcpu_sched::Error),
}

impl core::fmt::Display for SchedError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SchedError::NoSuchCpu => f.write_str("no such CPU"),
            SchedError::NoSuchThread => f.write_str("no such thread"),
            SchedError::OutOfMemory => f.write_str("out of memory"),
            SchedError::Busy => f.write_str("the CPU has threads or VCPUs"),
            SchedError::Vcpu(e) => write!(f, "{e}"),
        }
    }
}

impl From<vcpu_sched::Error> for SchedError {
    fn from(e: vcpu_sched::Error) -> Self {
        SchedError::Vcpu(e)
    }
}

fn now() -> u64 {
    hal::time::now_ns()
}

fn with_cpu<R>(cpu: usize, f: impl FnOnce(&mut Cpu) -> R) -> Result<R, SchedError> {
    let mut g = CPUS.get(cpu).ok_or(SchedError::NoSuchCpu)?.lock();
    let c = g.as_mut().ok_or(SchedError::NoSuchCpu)?;
    Ok(f(c))
}

/// Makes the code running on this CPU its idle thread and creates the PCPU's scheduler with
/// the seed's best-effort VCPU. Called once per CPU, before its interrupts are enabled.
pub fn init_this_cpu() {
    let cpu = cpu_index();
    let (sched, be) = Scheduler::with_best_effort(mode_config(cpu, default_background()));
    let idle = NEXT_TID.fetch_add(1, Ordering::Relaxed);
    let mut threads = BTreeMap::new();
    threads.insert(
        idle,
        Box::new(Thread {
            id: idle,
            name: alloc::format!("idle/{cpu}"),
            ctx: Context::empty(),
            _stack: None,
            fpu: FpuState::new(),
            state: State::Running,
            entry: None,
            user_start: None,
            wake_pending: false,
            interrupted: false,
            signal_pending: false,
            woke_by: Wake::Woken,
            runtime_ns: 0,
            since: now(),
            idle: true,
            root: hal::mm::kernel_root(),
            user: false,
            fs_base: 0,
            affinity: CpuMask::only(cpu),
            policy: smp::Policy::default(),
            move_to: None,
        }),
    );
    *CPUS[cpu].lock() = Some(Cpu {
        sched,
        best_effort: be,
        threads,
        current: idle,
        idle,
        sleepers: Sleepers::new(),
        dead: Vec::new(),
        moving: Vec::new(),
        switches: 0,
        timer_at: None,
    });
    CURRENT[cpu].store(idle, Ordering::Relaxed);
    WHERE.lock().insert(idle, cpu);
    if cpu == 0 {
        hal::trap::set_handler(hal::apic::TIMER_VECTOR, |_| {
            // The one-shot timer is spent (possibly a little early, if its frequency was
            // calibrated high): `schedule` must program it again whatever it decides.
            let _ = with_cpu(cpu_index(), |c| c.timer_at = None);
            schedule()
        });
        hal::trap::set_handler(hal::apic::RESCHED_VECTOR, |_| schedule());
        hal::mm::init_tlb_shootdown();
    }
}

/// The idle loop: halts until an interrupt makes something runnable; when kicked (it just
/// became idle, or another CPU has best-effort work waiting) it tries to pull a thread.
pub fn idle() -> ! {
    hal::cpu::enable_interrupts();
    let me = cpu_index();
    loop {
        hal::cpu::wait_until(|| smp::take_kick(me));
        smp::try_pull(me);
    }
}

/// The best-effort VCPU of PCPU `cpu`.
pub fn best_effort_vcpu(cpu: usize) -> Result<VcpuId, SchedError> {
    with_cpu(cpu, |c| c.best_effort)
}

/// Creates a VCPU on `cpu` (admission control applies).
pub fn create_vcpu(cpu: usize, params: VcpuParams) -> Result<VcpuId, SchedError> {
    with_cpu(cpu, |c| c.sched.create(now(), params))?.map_err(SchedError::from)
}

/// Destroys a VCPU with no threads left.
pub fn destroy_vcpu(cpu: usize, id: VcpuId) -> Result<(), SchedError> {
    with_cpu(cpu, |c| c.sched.destroy(now(), id))?.map_err(SchedError::from)
}

/// Every VCPU of `cpu`.
pub fn vcpus(cpu: usize) -> Vec<VcpuInfo> {
    with_cpu(cpu, |c| c.sched.vcpus().collect()).unwrap_or_default()
}

extern "C" fn thread_start(_arg: usize) -> ! {
    finish_switch();
    let (entry, user_start) = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        c.threads.get_mut(&cur).map_or((None, None), |t| (t.entry.take(), t.user_start.take()))
    })
    .unwrap_or((None, None));
    hal::cpu::enable_interrupts();
    if let Some(f) = entry {
        f();
    }
    if let Some((frame, fs)) = user_start {
        hal::user::set_fs_base(fs);
        hal::user::enter(&frame)
    }
    exit()
}

/// Creates a thread on `cpu` bound to `vcpu` (the PCPU's best-effort VCPU if `None`) and makes
/// it runnable.
pub fn spawn(
    name: &str,
    cpu: usize,
    vcpu: Option<VcpuId>,
    f: impl FnOnce() + Send + 'static,
) -> Result<Tid, SchedError> {
    spawn_in(name, cpu, vcpu, None, f)
}

/// Like [`spawn`], for a thread that will run user code in the address space with page-table
/// root `root` (its closure ends by entering user mode).
pub fn spawn_in(
    name: &str,
    cpu: usize,
    vcpu: Option<VcpuId>,
    root: Option<hal::mm::PageTableRoot>,
    f: impl FnOnce() + Send + 'static,
) -> Result<Tid, SchedError> {
    spawn_with_id(reserve_tid(), name, cpu, vcpu, root, f)
}

/// A fresh thread id (processes take their main thread's id as their pid).
pub fn reserve_tid() -> Tid {
    NEXT_TID.fetch_add(1, Ordering::Relaxed)
}

/// [`spawn_in`] with an id from [`reserve_tid`].
pub fn spawn_with_id(
    id: Tid,
    name: &str,
    cpu: usize,
    vcpu: Option<VcpuId>,
    root: Option<hal::mm::PageTableRoot>,
    f: impl FnOnce() + Send + 'static,
) -> Result<Tid, SchedError> {
    // Kernel threads stay where they were put.
    spawn_thread(id, name, cpu, vcpu, root, Some(Box::new(f)), None, (CpuMask::only(cpu), smp::Policy::default()))
}

/// Creates user thread `id` in the address space with page-table root `root`: it enters user
/// mode with `frame` and FS base `fs_base`.
pub fn spawn_user(
    id: Tid,
    name: &str,
    (cpu, vcpu): (usize, Option<VcpuId>),
    root: hal::mm::PageTableRoot,
    frame: hal::trap::TrapFrame,
    fs_base: u64,
    (affinity, policy): (CpuMask, smp::Policy),
) -> Result<Tid, SchedError> {
    spawn_thread(id, name, cpu, vcpu, Some(root), None, Some((frame, fs_base)), (affinity, policy))
}

#[allow(clippy::too_many_arguments)] // a thread's whole description, from its public constructors
fn spawn_thread(
    id: Tid,
    name: &str,
    cpu: usize,
    vcpu: Option<VcpuId>,
    root: Option<hal::mm::PageTableRoot>,
    entry: Option<Box<dyn FnOnce() + Send>>,
    user_start: Option<(hal::trap::TrapFrame, u64)>,
    (affinity, policy): (CpuMask, smp::Policy),
) -> Result<Tid, SchedError> {
    let stack = hal::mm::alloc_kernel_stack(STACK_PAGES).ok_or(SchedError::OutOfMemory)?;
    let t = Box::new(Thread {
        id,
        name: String::from(name),
        ctx: Context::new(&stack, thread_start, 0),
        _stack: Some(stack),
        fpu: FpuState::new(),
        state: State::Ready,
        entry,
        user_start,
        wake_pending: false,
        interrupted: false,
        signal_pending: false,
        woke_by: Wake::Woken,
        runtime_ns: 0,
        since: 0,
        idle: false,
        user: root.is_some(),
        root: root.unwrap_or_else(hal::mm::kernel_root),
        fs_base: 0,
        affinity,
        policy,
        move_to: None,
    });
    // In WHERE before it can run (and move, or be woken by id).
    let mut w = WHERE.lock();
    let surplus = with_cpu(cpu, |c| -> Result<bool, SchedError> {
        let v = vcpu.unwrap_or(c.best_effort);
        let n = now();
        c.sched.add_task(n, TaskId(id), v)?;
        c.sched.wake(n, TaskId(id))?;
        c.threads.insert(id, t);
        Ok(smp::has_surplus(c))
    })??;
    w.insert(id, cpu);
    drop(w);
    reschedule(cpu);
    if surplus {
        smp::kick_idle(cpu);
    }
    Ok(id)
}

/// Asks `cpu` to re-decide: directly on this CPU, by IPI on another.
fn reschedule(cpu: usize) {
    if cpu == cpu_index() {
        schedule();
    } else {
        hal::apic::send_ipi(hal::percpu::apic_id_of(cpu), hal::apic::RESCHED_VECTOR);
    }
}

/// The running thread's id.
pub fn current() -> Tid {
    // Interrupts off between reading the CPU's index and its word: a thread preempted there
    // could be moved and read another CPU's running thread.
    hal::cpu::without_interrupts(|| CURRENT[cpu_index()].load(Ordering::Relaxed))
}

/// The VCPU the running thread is bound to.
pub fn current_vcpu() -> Option<VcpuId> {
    current_placement().1
}

/// The running thread's CPU and VCPU, read together (a thread can be moved between two reads).
pub fn current_placement() -> (usize, Option<VcpuId>) {
    hal::cpu::without_interrupts(|| {
        let cpu = cpu_index();
        (cpu, with_cpu(cpu, |c| c.sched.vcpu_of(TaskId(c.current))).ok().flatten())
    })
}

/// Frees threads that died on this CPU (never the running one) and sends on their way the
/// threads switched away from to move to another CPU.
fn finish_switch() {
    let (dead, moving) = with_cpu(cpu_index(), |c| (core::mem::take(&mut c.dead), !c.moving.is_empty())).unwrap_or_default();
    drop(dead);
    if moving {
        smp::send_moving();
    }
}

/// Re-decides what runs on this CPU now; switches if that changed. Callable with or without
/// interrupts enabled, but never while holding a lock another thread may need.
pub fn schedule() {
    // Interrupts stay off from the decision until the switch is done, so a timer interrupt
    // cannot re-enter the scheduler half-way; each thread restores its own state on return.
    let were_enabled = hal::cpu::interrupts_enabled();
    hal::cpu::disable_interrupts();
    schedule_irqs_off();
    if were_enabled {
        hal::cpu::enable_interrupts();
    }
}

fn schedule_irqs_off() {
    let cpu = cpu_index();
    let mut g = CPUS[cpu].lock();
    let Some(c) = g.as_mut() else { return };
    let t = now();
    // Due sleepers wake (timed out).
    for TaskId(tid) in c.sleepers.due(t) {
        if let Some(th) = c.threads.get_mut(&tid) {
            if matches!(th.state, State::Sleeping(_)) {
                th.state = State::Ready;
                th.woke_by = Wake::TimedOut;
                let _ = c.sched.wake(t, TaskId(tid));
            }
        }
    }
    let d = c.sched.pick(t);
    let next = d.task().map(|TaskId(id)| id).unwrap_or(c.idle);
    let timer = vcpu_sched::next_timer(d.timer, c.sleepers.next());
    if timer != c.timer_at || timer.is_some_and(|x| x <= t) {
        hal::apic::set_deadline(timer);
        c.timer_at = timer;
    }
    let prev = c.current;
    smp::note_idle(cpu, next == c.idle, prev != c.idle);
    if next == prev {
        return;
    }
    // Save side: the running thread, or (if it just died) its box in `dead`; a thread on its
    // way to another CPU goes to `moving` (the box, hence its context, stays put).
    let leaving = c.threads.get(&prev).is_some_and(|p| p.move_to.is_some());
    if leaving && let Some(b) = c.threads.remove(&prev) {
        c.sleepers.remove(TaskId(prev)); // it may have gone to sleep since it was marked
        c.moving.push(b);
    }
    let from: *mut Context = if let Some(p) = c.threads.get_mut(&prev).or_else(|| c.moving.iter_mut().rev().find(|m| m.id == prev)) {
        if p.state == State::Running {
            p.state = State::Ready;
        }
        p.runtime_ns += t - p.since;
        p.fpu.save();
        if p.user {
            p.fs_base = hal::user::fs_base();
        }
        &raw mut p.ctx
    } else if let Some(d) = c.dead.iter_mut().find(|d| d.id == prev) {
        &raw mut d.ctx
    } else {
        return;
    };
    let Some(n) = c.threads.get_mut(&next) else { return };
    n.state = State::Running;
    n.since = t;
    let must_act = n.interrupted || n.signal_pending;
    n.fpu.restore();
    hal::mm::activate_root(&n.root);
    if let Some(stack) = &n._stack {
        hal::gdt::set_kernel_stack(stack);
    }
    if n.user {
        hal::user::set_fs_base(n.fs_base);
    }
    let to: *const Context = &raw const n.ctx;
    c.current = next;
    CURRENT[cpu].store(next, Ordering::Relaxed);
    MUST_ACT[cpu].store(must_act, Ordering::Release);
    c.switches += 1;
    CONTEXT_SWITCHES.fetch_add(1, Ordering::Relaxed);
    drop(g); // interrupts stay off: they were off when the lock was taken
    // SAFETY (invariant 1): `to` is the context of a thread of this CPU that is not running
    // (only `current` runs, and that was `prev`); it was saved by an earlier switch or made by
    // `Context::new`, and its stack is alive (threads are freed only via `dead`, after their
    // CPU switched away — invariant 2). `from` belongs to the running thread (live, or dead and
    // kept in `dead` until the next thread's `finish_switch`); both boxes stay put while the
    // lock is released because only this CPU removes its threads. Interrupts are off.
    unsafe { switch(from, to) };
    finish_switch();
}

/// Why a blocked thread runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a wait can end for several reasons: act on the one it gives"]
pub enum Wake {
    /// [`wake`]: the condition it waits for may hold; re-check it.
    Woken,
    /// [`interrupt`] or [`signal`]: its process is being killed, or a signal it does not
    /// block is pending; give up the wait (EINTR, or a restart after the signal).
    Interrupted,
    /// Its deadline passed.
    TimedOut,
}

/// Blocks the running thread until [`wake`], [`interrupt`] or `deadline` (monotonic ns), and
/// says which. Returns at once with `Woken` if a wake is pending, with `Interrupted` while the
/// thread is interrupted (that state lasts: a killed thread never blocks again), with
/// `TimedOut` if the deadline has passed.
pub fn block(deadline: Option<u64>) -> Wake {
    block_as(deadline, true)
}

/// [`block`] without a deadline: the one way a thread waits for another.
pub fn block_current() -> Wake {
    block_as(None, true)
}

/// Blocks until [`wake`] only, even if interrupted (kernel semaphores: their waiters re-check
/// their count, and a killed task's thread must still be able to wait for its children).
pub fn block_uninterruptible() {
    let _ = block_as(None, false);
}

fn block_as(deadline: Option<u64>, interruptible: bool) -> Wake {
    let blocked = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        let Some(th) = c.threads.get_mut(&cur) else { return Some(Wake::Woken) };
        if th.idle {
            return Some(Wake::Woken);
        }
        if interruptible && (th.interrupted || th.signal_pending) {
            return Some(Wake::Interrupted);
        }
        if core::mem::take(&mut th.wake_pending) {
            return Some(Wake::Woken);
        }
        let t = now();
        match deadline {
            Some(d) if d <= t => return Some(Wake::TimedOut),
            Some(d) => {
                th.state = State::Sleeping(d);
                c.sleepers.add(d, TaskId(cur));
            }
            None => th.state = State::Blocked,
        }
        th.woke_by = Wake::Woken;
        let _ = c.sched.block(t, TaskId(cur));
        None
    });
    match blocked {
        Ok(Some(w)) => return w,
        Ok(None) => {}
        Err(_) => return Wake::Woken,
    }
    schedule();
    with_cpu(cpu_index(), |c| {
        let th = c.threads.get(&c.current)?;
        Some(if interruptible && (th.interrupted || th.signal_pending) { Wake::Interrupted } else { th.woke_by })
    })
    .ok()
    .flatten()
    .unwrap_or(Wake::Woken)
}

/// Makes `tid` runnable (or leaves a pending wake if it is still running).
pub fn wake(tid: Tid) -> Result<(), SchedError> {
    ready(tid, Why::Wake)
}

/// Interrupts `tid` (its process is being killed): its current and every later interruptible
/// block returns `Interrupted`.
pub fn interrupt(tid: Tid) -> Result<(), SchedError> {
    ready(tid, Why::Kill)
}

/// Whether the running thread has been interrupted.
pub fn interrupted() -> bool {
    with_cpu(cpu_index(), |c| c.threads.get(&c.current).is_some_and(|t| t.interrupted)).unwrap_or(false)
}

/// Wakes `tid`, which the signal code has marked (`set_signal_pending`) as having a signal to
/// act on, from an interruptible wait (which returns `Interrupted` while the mark is set). A
/// thread running on another CPU is sent a reschedule IPI, so it enters the kernel and acts on
/// the signal on its way back to user mode even if it never makes a system call.
pub fn signal(tid: Tid) -> Result<(), SchedError> {
    ready(tid, Why::Signal)
}

/// Sets or clears the running thread's (or `tid`'s) pending-signal mark without waking anything
/// (the signal code, under its own lock, after it changed what is pending or blocked).
pub fn set_signal_pending(tid: Tid, pending: bool) {
    let _ = with_thread(tid, |th, _, cpu| {
        th.signal_pending = pending;
        if th.state == State::Running {
            MUST_ACT[cpu].store(th.interrupted || pending, Ordering::Release);
        }
    });
}

/// Whether the running thread must act before it returns to user mode: it is being killed or
/// has a signal pending (asked on every return from an interrupt or system call to user mode:
/// one per-CPU word).
pub fn must_act_before_user() -> bool {
    hal::cpu::without_interrupts(|| MUST_ACT[cpu_index()].load(Ordering::Acquire))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Wake,
    Kill,
    Signal,
}

/// Runs `f` on thread `tid` (in its CPU's table or `moving` list) with its CPU's state and
/// index, following it if it moves meanwhile; `None` if it does not exist.
fn with_thread<R>(tid: Tid, mut f: impl FnMut(&mut Thread, &mut Sched, usize) -> R) -> Option<R> {
    loop {
        let cpu = *WHERE.lock().get(&tid)?;
        let r = with_cpu(cpu, |c| {
            let th = match c.threads.get_mut(&tid) {
                Some(th) => th,
                None => &mut **c.moving.iter_mut().find(|m| m.id == tid)?,
            };
            Some(f(th, &mut Sched { sched: &mut c.sched, sleepers: &mut c.sleepers, best_effort: c.best_effort }, cpu))
        })
        .ok()
        .flatten();
        if r.is_some() {
            return r;
        }
        // Not there: it moved (WHERE now says where) or it is gone.
        if WHERE.lock().get(&tid) == Some(&cpu) {
            return None;
        }
    }
}

/// The parts of a CPU's state [`with_thread`] lends beside the thread.
struct Sched<'a> {
    sched: &'a mut Scheduler,
    sleepers: &'a mut Sleepers,
    best_effort: VcpuId,
}

fn ready(tid: Tid, why: Why) -> Result<(), SchedError> {
    let (woke, running, cpu, surplus) = with_thread(tid, |th, c, cpu| {
        if why == Why::Kill {
            th.interrupted = true;
            if th.state == State::Running {
                MUST_ACT[cpu].store(true, Ordering::Release);
            }
        }
        match th.state {
            State::Blocked | State::Sleeping(_) => {
                c.sleepers.remove(TaskId(tid));
                th.state = State::Ready;
                // A signal wake is a plain wake: what the block returns is decided by the marks
                // (`interrupted`, `signal_pending`), so a wake that arrives after the signal
                // was taken is harmless (the waiter re-checks and blocks again).
                th.woke_by = if why == Why::Kill { Wake::Interrupted } else { Wake::Woken };
                let woke = c.sched.wake(now(), TaskId(tid)).is_ok();
                (woke, false, cpu, woke && smp::surplus_of(c.sched, c.best_effort))
            }
            State::Running | State::Ready => {
                th.wake_pending = true;
                (false, th.state == State::Running, cpu, false)
            }
            State::Dead => (false, false, cpu, false),
        }
    })
    .ok_or(SchedError::NoSuchThread)?;
    // Running elsewhere (a thread running here is the caller itself, which acts on its way
    // out): an IPI makes it enter the kernel now, and the way back to user mode acts on the
    // kill or signal (hal's user-return hook). Without it a thread spinning in user mode on
    // another CPU never noticed a kill.
    if running && why != Why::Wake && cpu != cpu_index() {
        hal::apic::send_ipi(hal::percpu::apic_id_of(cpu), hal::apic::RESCHED_VECTOR);
    }
    // Pick after every wake (the scheduler's contract), not only when the woken VCPU preempts:
    // a VCPU that wakes without budget needs a timer for its replenishment (or its IO
    // eligibility), and a second runnable task on the running VCPU needs a quantum timer.
    // Without this, both waited for whatever event was armed before (issue 13's two
    // reproductions: `ktest wakeglue`).
    if woke {
        reschedule(cpu);
    }
    if surplus {
        smp::kick_idle(cpu);
    }
    Ok(())
}

/// Sleeps until monotonic time `deadline` (ns): early wakes are slept through; an interrupt
/// ends the sleep (`Interrupted`), otherwise `TimedOut`.
pub fn sleep_until(deadline: u64) -> Wake {
    loop {
        match block(Some(deadline)) {
            Wake::Woken => continue,
            w => return w,
        }
    }
}

pub fn sleep_ns(ns: u64) -> Wake {
    sleep_until(now().saturating_add(ns))
}

/// Ends the running thread.
pub fn exit() -> ! {
    let _ = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        if let Some(mut th) = c.threads.remove(&cur) {
            th.state = State::Dead;
            let _ = c.sched.remove_task(now(), TaskId(cur));
            c.sleepers.remove(TaskId(cur));
            c.dead.push(th);
        }
    });
    WHERE.lock().remove(&current());
    loop {
        schedule();
    }
}

/// A task of the running thread's VCPU waits on IO VCPU `io` of `cpu` (PIBS priority
/// inheritance), or that wait ended (`done`).
pub fn io_wait(cpu: usize, io: VcpuId, requester: VcpuId, done: bool) {
    let changed = with_cpu(cpu, |c| {
        let t = now();
        if done { c.sched.io_complete(t, io, requester) } else { c.sched.io_request(t, io, requester) }
    });
    // The IO VCPU's priority (and possibly its eligibility) changed: decide again.
    if matches!(changed, Ok(Ok(()))) {
        reschedule(cpu);
    }
}

/// CPU time of thread `tid` so far (including the current run).
pub fn runtime_ns(tid: Tid) -> Option<u64> {
    with_thread(tid, |th, _, _| th.runtime_ns + if th.state == State::Running { now().saturating_sub(th.since) } else { 0 })
}

/// Context switches so far (all CPUs).
pub fn context_switches() -> u64 {
    CONTEXT_SWITCHES.load(Ordering::Relaxed)
}

/// Switches the running thread to the kernel's page tables for good (a process that is about
/// to free its address space).
pub fn leave_address_space() {
    let _ = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        if let Some(t) = c.threads.get_mut(&cur) {
            t.root = hal::mm::kernel_root();
            t.user = false;
        }
    });
    hal::mm::activate_root(&hal::mm::kernel_root());
}


/// Moves every thread of VCPU `v` on `cpu` to that PCPU's best-effort VCPU (forced destroy).
pub fn rebind_all(cpu: usize, v: VcpuId) -> Result<(), SchedError> {
    let r = with_cpu(cpu, |c| {
        let tids: Vec<Tid> = c.threads.keys().copied().filter(|&t| c.sched.vcpu_of(TaskId(t)) == Some(v)).collect();
        let be = c.best_effort;
        for t in tids {
            c.sched.bind(now(), TaskId(t), be)?;
        }
        Ok(())
    })?;
    // A moved thread may be the one running there: its time from now on is charged to the
    // best-effort VCPU only after the PCPU decides again (otherwise it ran charged to nothing).
    reschedule(cpu);
    r
}

/// Changes the running thread's page-table root (execve) and activates it.
pub fn set_current_root(root: hal::mm::PageTableRoot) {
    let _ = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        if let Some(t) = c.threads.get_mut(&cur) {
            t.root = root.clone();
            t.user = true;
        }
    });
    hal::mm::activate_root(&root);
}

/// Renames the running thread (execve).
pub fn set_current_name(name: &str) {
    let _ = with_cpu(cpu_index(), |c| {
        let cur = c.current;
        if let Some(t) = c.threads.get_mut(&cur) {
            t.name = String::from(name);
        }
    });
}
