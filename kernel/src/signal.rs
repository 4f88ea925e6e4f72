//! Signals (issue 22): actions, per-thread masks, pending sets, delivery to handlers on the
//! way back to user mode, `rt_sigreturn`, the alternate stack, faults as signals, SIGCHLD, the
//! interval timer (`alarm`, `setitimer(ITIMER_REAL)`) and POSIX timers (`timer_create` ...; one
//! kernel thread, `sigtimer`, sends the timers' signals).
//!
//! The semantics that need no hardware (sets, queues, default actions, the `rt_sigframe`
//! layout) are in `crates/signals`, host-tested; this module keeps each process's state behind
//! one lock ([`SigState`] in `Process::sig`, rank `locks::SIGNALS`) and does the copies and
//! the register frames.
//!
//! **When a signal acts.** A sender queues the signal and marks one thread that does not block
//! it (`sched::set_signal_pending`, under this lock), then wakes it (`sched::signal`): an
//! interruptible wait returns `Interrupted`, a thread running on another CPU gets an IPI. On
//! every return to user mode — after a system call ([`on_syscall_return`]) and after any
//! interrupt or exception ([`on_user_return`], hal's hook) — a marked thread takes its next
//! deliverable signal: the default action (terminate; ignore), or a handler frame on its user
//! stack. A signal whose action is to terminate the process is acted on at once when sent
//! (`process::mark_terminal`), as Linux does for fatal signals.
//!
//! **Interrupted calls.** A blocking call a signal interrupts returns [`ERESTARTSYS`]
//! (internal, never seen by user space): if a handler with `SA_RESTART` runs, or no handler
//! runs, the call is restarted (`rip` back over the 2-byte `syscall`, `rax` = the call number
//! hal kept in `error_code`); otherwise it returns `EINTR`. Calls that never restart (sleeps,
//! `sigsuspend`, `rt_sigtimedwait`) return `EINTR` directly.
//!
//! Stopping and continuing (SIGSTOP & co., SIGCONT) is `crate::stop`. Not supported yet:
//! controlling terminals and job control (the console's ctrl-c goes to the foreground process
//! only), `ITIMER_VIRTUAL`/`ITIMER_PROF`, AVX state in
//! signal frames (x87 and SSE are saved and restored), core files.
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use hal::sync::IrqLock;
use hal::trap::TrapFrame;
use linux_raw_sys::errno::*;
use signals::*;

use crate::process::{self, Pid, Process};
use crate::sched::{self, Tid};
use crate::syscall::{Errno, UserPtr, UserSlice, UserSliceMut};

/// Returned by a blocking call a signal interrupted: restarted or turned into EINTR on the
/// way out (Linux's ERESTARTSYS; never reaches user space).
pub const ERESTARTSYS: Errno = 512;

/// One thread's signal state.
#[derive(Clone, Default)]
pub struct ThreadSig {
    pub mask: SigSet,
    pending: Pending,
    alt: AltStack,
    /// The mask to restore after the handler that ends a `sigsuspend`.
    saved_mask: Option<SigSet>,
    /// Signals it waits for in `rt_sigtimedwait` (they wake it although it blocks them).
    waiting: SigSet,
}

/// A process's signal state.
pub struct SigState {
    actions: [Action; NSIG as usize],
    shared: Pending,
    threads: BTreeMap<Tid, ThreadSig>,
    /// ITIMER_REAL: the next expiry (monotonic ns) and the interval (0: one-shot).
    real: Option<(u64, u64)>,
    /// POSIX timers (timer_create) by id.
    timers: BTreeMap<u32, PosixTimer>,
    next_timer: u32,
}

/// A POSIX timer: what it sends, to whom, and when next.
#[derive(Clone, Copy)]
struct PosixTimer {
    signo: u32,
    value: u64,
    /// None: SIGEV_NONE (nothing is sent); Some(None): the process; Some(Some(tid)): a thread.
    notify: Option<Option<Tid>>,
    /// Next expiry (monotonic ns) and interval.
    next: Option<(u64, u64)>,
    overrun: u32,
}

/// Most POSIX timers per process.
const MAX_TIMERS: usize = 64;

impl SigState {
    pub fn new() -> SigState {
        SigState {
            actions: [Action::default(); NSIG as usize],
            shared: Pending::new(),
            threads: BTreeMap::new(),
            real: None,
            timers: BTreeMap::new(),
            next_timer: 0,
        }
    }

    /// The state a `fork` child starts with: the actions, and for its one thread the mask and
    /// alternate stack of the thread that forked; nothing pending, no timer.
    pub fn forked(&self, parent_tid: Tid, child_tid: Tid) -> SigState {
        let mut s = SigState::new();
        s.actions = self.actions;
        let mut t = self.threads.get(&parent_tid).cloned().unwrap_or_default();
        t.pending.clear();
        t.saved_mask = None;
        t.waiting = SigSet::EMPTY;
        s.threads.insert(child_tid, t);
        s
    }

    fn thread(&mut self, tid: Tid) -> &mut ThreadSig {
        self.threads.entry(tid).or_insert_with(|| ThreadSig { alt: AltStack::DISABLED, ..ThreadSig::default() })
    }

    /// Whether `tid` has a signal to act on: pending and not blocked, or one it waits for.
    fn deliverable(&self, tid: Tid) -> bool {
        let Some(t) = self.threads.get(&tid) else { return false };
        let pending = t.pending.set().union(self.shared.set());
        !pending.minus(t.mask).is_empty() || !pending.and(t.waiting).is_empty()
    }

    /// Sets `tid`'s scheduler mark to whether it has a signal to act on.
    /// The flags of signal `sig`'s action.
    pub fn action_flags(&self, sig: u32) -> u64 {
        self.actions.get(sig as usize - 1).map_or(0, |a| a.flags)
    }

    fn update(&self, tid: Tid) {
        sched::set_signal_pending(tid, self.deliverable(tid));
    }
}

impl core::default::Default for SigState {
    fn default() -> Self {
        SigState::new()
    }
}

/// Re-marks thread `tid` if it has a deliverable signal (after a stop, `crate::stop::park`).
pub fn refresh(p: &Process, tid: Tid) {
    p.sig.lock().update(tid);
}

/// A new thread `tid` of `p`: it inherits the mask of `from` (the creating thread), and no
/// alternate stack (Linux clears it for threads sharing the address space).
pub fn thread_added(p: &Process, tid: Tid, from: Option<Tid>) {
    let mut st = p.sig.lock();
    let mask = from.and_then(|f| st.threads.get(&f)).map(|t| t.mask).unwrap_or_default();
    st.threads.insert(tid, ThreadSig { mask, alt: AltStack::DISABLED, ..ThreadSig::default() });
}

/// Thread `tid` of `p` ended: signals sent to it alone are lost with it.
pub fn thread_removed(p: &Process, tid: Tid) {
    p.sig.lock().threads.remove(&tid);
}

/// execve: handlers go back to the default (ignored signals stay ignored), the alternate
/// stack is gone; masks and pending signals stay.
pub fn exec_reset(p: &Process, tid: Tid) {
    let mut st = p.sig.lock();
    for a in st.actions.iter_mut() {
        if a.is_handler() {
            *a = Action::default();
        }
    }
    st.thread(tid).alt = AltStack::DISABLED;
    st.timers.clear(); // POSIX timers do not survive execve (alarm does)
}


/// Sends `info` to process `p` (`tid`: to that thread only). SIGKILL and signals whose action
/// terminates the process end it at once; ignored signals are dropped unless blocked.
pub fn send(p: &Arc<Process>, tid: Option<Tid>, info: SigInfo) -> Result<(), Errno> {
    let sig = info.signo;
    if !valid(sig) {
        return Err(EINVAL);
    }
    if p.dead.load(Ordering::Acquire) || p.terminal.load(Ordering::Acquire) {
        return Ok(());
    }
    if sig == SIGKILL {
        process::mark_terminal(p, process::killed_by(sig));
        return Ok(());
    }
    if sig == SIGCONT {
        crate::stop::cont(p);
    }
    let wake = {
        let mut st = p.sig.lock();
        let act = st.actions[sig as usize - 1];
        if sig == SIGSTOP || (act.handler == SIG_DFL && default_action(sig) == Default::Stop) {
            drop(st);
            crate::stop::stop(p, sig);
            return Ok(());
        }
        if let Some(t) = tid
            && !st.threads.contains_key(&t)
        {
            return Err(ESRCH);
        }
        let blocks = |t: &ThreadSig| t.mask.has(sig) && !t.waiting.has(sig);
        // The thread that will take it: the one named, or any that does not block it.
        let target = match tid {
            Some(t) => st.threads.get(&t).filter(|x| !blocks(x)).map(|_| t),
            None => st.threads.iter().find(|(_, x)| !blocks(x)).map(|(t, _)| *t),
        };
        if target.is_some() && ignored(sig, &act) {
            return Ok(());
        }
        let fatal = act.handler == SIG_DFL && matches!(default_action(sig), Default::Terminate | Default::Core);
        if fatal && target.is_some_and(|t| !st.threads[&t].waiting.has(sig)) {
            drop(st);
            process::mark_terminal(p, process::killed_by(sig));
            return Ok(());
        }
        let queued = match tid {
            Some(t) => st.thread(t).pending.push(info),
            None => st.shared.push(info),
        };
        if queued == Err(QueueError::Full) {
            return Err(EAGAIN);
        }
        if let Some(t) = target {
            st.update(t);
        }
        target
    };
    if let Some(t) = wake {
        let _ = sched::signal(t);
    }
    Ok(())
}

/// ctrl-c and other kernel-sent signals to process `pid`.
pub fn send_kernel(pid: Pid, sig: u32) -> Result<(), Errno> {
    let p = process::get(pid).ok_or(ESRCH)?;
    send(&p, None, SigInfo::kernel(sig))
}

/// A child of `parent` ended with wait status `status`: SIGCHLD, and if the parent ignores
/// SIGCHLD (or set SA_NOCLDWAIT) the child is reaped now (its `wait` then sees no child).
pub fn child_exited(parent: &Arc<Process>, child: Pid, status: i32) {
    let act = parent.sig.lock().actions[SIGCHLD as usize - 1];
    if act.handler == SIG_IGN || act.flags & SA_NOCLDWAIT != 0 {
        parent.children.lock().retain(|c| c.pid != child);
    }
    let info = if status & 0x7f == 0 {
        SigInfo::child(child, CLD_EXITED, (status >> 8) & 0xff)
    } else {
        SigInfo::child(child, CLD_KILLED, status & 0x7f)
    };
    let _ = send(parent, None, info);
}

fn regs_of(f: &TrapFrame) -> Regs {
    Regs {
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rdi: f.rdi,
        rsi: f.rsi,
        rbp: f.rbp,
        rbx: f.rbx,
        rdx: f.rdx,
        rax: f.rax,
        rcx: f.rcx,
        rsp: f.rsp,
        rip: f.rip,
        rflags: f.rflags,
        cs: f.cs as u16,
        ss: f.ss as u16,
        err: if f.vector < 32 { f.error_code } else { 0 },
        trapno: if f.vector < 32 { f.vector } else { 0 },
        cr2: 0,
    }
}

/// Lowest address user code cannot reach (a frame or handler address at or above it would make
/// `iretq` fault in the kernel).
const USER_TOP: u64 = 0x0000_8000_0000_0000;

/// Builds the handler frame for `info` with action `act` on the user stack and points `frame`
/// at the handler. The thread's mask has already been taken into `old_mask`.
fn setup_frame(p: &Process, frame: &mut TrapFrame, info: &SigInfo, act: &Action, old_mask: SigSet, alt: AltStack, cr2: u64) -> Result<(), ()> {
    let use_alt = act.flags & SA_ONSTACK != 0 && alt.enabled() && !alt.on(frame.rsp);
    let sp = if use_alt { alt.sp.checked_add(alt.size).ok_or(())? } else { frame.rsp };
    let l = layout(sp, !use_alt).ok_or(())?;
    if sp > USER_TOP || act.handler >= USER_TOP {
        return Err(());
    }
    let fp = hal::fpu::save_sse();
    UserSliceMut::new(l.fpstate, FPSTATE_SIZE).write(p, &fp).map_err(|_| ())?;
    let mut regs = regs_of(frame);
    regs.cr2 = cr2;
    let restorer = if act.flags & SA_RESTORER != 0 { act.restorer } else { 0 };
    let bytes = build_frame(&l, &regs, info, old_mask, &alt, restorer, l.fpstate);
    UserSliceMut::new(l.frame, bytes.len() as u64).write(p, &bytes).map_err(|_| ())?;
    frame.rip = act.handler;
    frame.rsp = l.frame;
    frame.rdi = u64::from(info.signo);
    frame.rsi = l.frame + INFO_OFFSET;
    frame.rdx = l.frame + UC_OFFSET;
    frame.rax = 0;
    frame.rflags &= !(0x400 | 0x100); // DF and TF off in the handler
    Ok(())
}

/// What the next deliverable signal of the running thread is and does.
enum Next {
    None,
    Ignore,
    Terminate(u32),
    Handler(SigInfo, Action, SigSet, AltStack),
}

fn take_next(p: &Process, tid: Tid) -> Next {
    let mut st = p.sig.lock();
    let mask = st.thread(tid).mask;
    let allowed = SigSet(!0).minus(mask);
    let info = match st.thread(tid).pending.take(allowed) {
        Some(i) => Some(i),
        None => st.shared.take(allowed),
    };
    let Some(info) = info else {
        // Nothing left: a sigsuspend whose signal ran no handler gets its mask back.
        if let Some(m) = st.thread(tid).saved_mask.take() {
            st.thread(tid).mask = m;
        }
        st.update(tid);
        return Next::None;
    };
    let sig = info.signo;
    let act = st.actions[sig as usize - 1];
    let next = match act.handler {
        SIG_IGN => Next::Ignore,
        SIG_DFL => match default_action(sig) {
            Default::Terminate | Default::Core => Next::Terminate(sig),
            _ => Next::Ignore,
        },
        _ => {
            let t = st.thread(tid);
            let old = t.saved_mask.take().unwrap_or(t.mask);
            let mut m = t.mask.union(act.mask);
            if act.flags & (SA_NODEFER | SA_RESETHAND) == 0 {
                m.add(sig);
            }
            t.mask = m.blockable();
            let alt = t.alt;
            if act.flags & SA_RESETHAND != 0 {
                st.actions[sig as usize - 1] = Action::default();
            }
            Next::Handler(info, act, old, alt)
        }
    };
    st.update(tid);
    next
}

/// Rewinds a system call so it runs again when the thread returns to user mode.
fn restart_call(frame: &mut TrapFrame) {
    frame.rax = frame.error_code;
    frame.rip = frame.rip.wrapping_sub(2);
}

/// Acts on the running thread's kills and signals before it returns to user mode; `restart`:
/// the system call it returns from was interrupted (ERESTARTSYS in `rax`).
fn act(frame: &mut TrapFrame, mut restart: bool) {
    let Some(p) = process::current() else { return };
    let me = sched::current();
    loop {
        if p.terminal.load(Ordering::Acquire) {
            drop(p);
            process::exit_thread();
        }
        if crate::stop::is_stopped(&p) {
            crate::stop::park(&p, me);
            continue;
        }
        match take_next(&p, me) {
            Next::None => break,
            Next::Ignore => continue,
            Next::Terminate(sig) => {
                drop(p);
                process::exit_current(process::killed_by(sig));
            }
            Next::Handler(info, a, old, alt) => {
                if restart {
                    if a.flags & SA_RESTART != 0 {
                        restart_call(frame);
                    } else {
                        frame.rax = (-(i64::from(EINTR))) as u64;
                    }
                    restart = false;
                }
                if setup_frame(&p, frame, &info, &a, old, alt, 0).is_err() {
                    let name = p.name.lock().clone();
                    hal::println!("task {} ({name}) killed: signal {} handler frame could not be written at rsp {:#x}", p.pid, info.signo, frame.rsp);
                    drop(name);
                    drop(p);
                    process::exit_current(process::killed_by(SIGSEGV));
                }
                // One handler per return; another pending signal keeps the thread marked and is
                // taken at its next return (Linux nests the frames at once).
                break;
            }
        }
    }
    if restart {
        restart_call(frame);
    }
}

/// hal's return-to-user hook (interrupts off; after every interrupt or handled exception from
/// user mode, the timer's included): kills and signals act here, so they reach a thread that
/// spins without system calls.
pub fn on_user_return(frame: &mut TrapFrame) {
    if !sched::must_act_before_user() {
        return;
    }
    hal::cpu::enable_interrupts();
    act(frame, false);
    // Back to the trap stub with interrupts off: nothing may interrupt its swapgs and iretq.
    hal::cpu::disable_interrupts();
}

/// The end of every system call (interrupts on).
pub fn on_syscall_return(frame: &mut TrapFrame) {
    let restart = frame.rax == (-(i64::from(ERESTARTSYS))) as u64;
    if restart || sched::must_act_before_user() {
        act(frame, restart);
    }
}

/// A user-mode fault: delivered as a signal to its handler if the program has one and does not
/// block it (returns true; the thread resumes in the handler); otherwise the caller reports the
/// fault and kills the process with the signal.
pub fn deliver_fault(frame: &mut TrapFrame, info: SigInfo, cr2: u64) -> bool {
    let Some(p) = process::current() else { return false };
    let me = sched::current();
    let sig = info.signo;
    let (act, old, alt) = {
        let mut st = p.sig.lock();
        let act = st.actions[sig as usize - 1];
        let t = st.thread(me);
        if !act.is_handler() || t.mask.has(sig) {
            return false;
        }
        let old = t.saved_mask.take().unwrap_or(t.mask);
        let mut m = t.mask.union(act.mask);
        if act.flags & (SA_NODEFER | SA_RESETHAND) == 0 {
            m.add(sig);
        }
        t.mask = m.blockable();
        let alt = t.alt;
        if act.flags & SA_RESETHAND != 0 {
            st.actions[sig as usize - 1] = Action::default();
        }
        st.update(me);
        (act, old, alt)
    };
    setup_frame(&p, frame, &info, &act, old, alt, cr2).is_ok()
}

/// The signal, code and address of a user-mode exception.
pub fn fault_info(vector: u64, error_code: u64, rip: u64, cr2: u64) -> SigInfo {
    match vector {
        0 => SigInfo::fault(SIGFPE, FPE_INTDIV, rip),
        1 | 3 => SigInfo::fault(SIGTRAP, TRAP_BRKPT, rip),
        6 => SigInfo::fault(SIGILL, ILL_ILLOPN, rip),
        12 => SigInfo::fault(SIGBUS, SI_KERNEL, 0),
        14 => SigInfo::fault(SIGSEGV, if error_code & 1 != 0 { SEGV_ACCERR } else { SEGV_MAPERR }, cr2),
        16 | 19 => SigInfo::fault(SIGFPE, FPE_FLTINV, rip),
        17 => SigInfo::fault(SIGBUS, BUS_ADRALN, rip),
        _ => SigInfo::fault(SIGSEGV, SI_KERNEL, 0),
    }
}

// ---------------------------------------------------------------------------------------
// System calls
// ---------------------------------------------------------------------------------------

use crate::syscall::{Cx, SysResult};

fn sigset_size(size: u64) -> Result<(), Errno> {
    if size == 8 { Ok(()) } else { Err(EINVAL) }
}

pub fn rt_sigaction(cx: &Cx, sig: u64, new: UserPtr<[u8; ACTION_SIZE]>, old: UserPtr<[u8; ACTION_SIZE]>, size: u64) -> SysResult {
    sigset_size(size)?;
    let sig = u32::try_from(sig).map_err(|_| EINVAL)?;
    if !valid(sig) || (!new.is_null() && (sig == SIGKILL || sig == SIGSTOP)) {
        return Err(EINVAL);
    }
    let newact = if new.is_null() { None } else { Some(Action::from_bytes(&new.read(cx.p())?)) };
    let prev = {
        let mut st = cx.p().sig.lock();
        let prev = st.actions[sig as usize - 1];
        if let Some(a) = newact {
            st.actions[sig as usize - 1] = a;
            if ignored(sig, &a) {
                // POSIX: setting a pending signal to be ignored discards it.
                st.shared.discard(sig);
                for t in st.threads.values_mut() {
                    t.pending.discard(sig);
                }
            }
        }
        prev
    };
    if !old.is_null() {
        old.write(cx.p(), &prev.to_bytes())?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(cx: &Cx, how: u64, set: UserPtr<u64>, old: UserPtr<u64>, size: u64) -> SysResult {
    sigset_size(size)?;
    let new = if set.is_null() { None } else { Some(SigSet(set.read(cx.p())?)) };
    let (prev, others) = {
        let mut st = cx.p().sig.lock();
        let prev = st.thread(cx.tid).mask;
        let mut others = Vec::new();
        if let Some(s) = new {
            let m = change_mask(prev, how as u32, s).ok_or(EINVAL)?;
            st.thread(cx.tid).mask = m;
            st.update(cx.tid);
            // A process-directed signal this thread now blocks goes to another thread that
            // does not (Linux re-targets it the same way).
            if !st.shared.set().and(m).is_empty() {
                let tids: Vec<Tid> = st.threads.keys().copied().filter(|&t| t != cx.tid).collect();
                for t in tids {
                    if st.deliverable(t) {
                        st.update(t);
                        others.push(t);
                    }
                }
            }
        }
        (prev, others)
    };
    for t in others {
        let _ = sched::signal(t);
    }
    if !old.is_null() {
        old.write(cx.p(), &prev.0)?;
    }
    Ok(0)
}

pub fn rt_sigpending(cx: &Cx, set: UserPtr<u64>, size: u64) -> SysResult {
    sigset_size(size)?;
    let s = {
        let mut st = cx.p().sig.lock();
        let shared = st.shared.set();
        let t = st.thread(cx.tid);
        t.pending.set().union(shared).and(t.mask)
    };
    set.write(cx.p(), &s.0).map(|_| 0)
}

/// sigsuspend (and pause, with `mask` = None: the current mask): waits for a signal that runs
/// a handler or ends the process; always EINTR.
pub fn sigsuspend(cx: &Cx, mask: Option<SigSet>) -> SysResult {
    if let Some(m) = mask {
        let mut st = cx.p().sig.lock();
        let t = st.thread(cx.tid);
        t.saved_mask = Some(t.mask);
        t.mask = m.blockable();
        st.update(cx.tid);
    }
    while sched::block(None) != sched::Wake::Interrupted {}
    Err(EINTR)
}

/// ppoll and pselect6: the thread's mask becomes `m` for a wait; `restore_mask` undoes it
/// (unless the wait ended by a signal: then the handler's return does, as after sigsuspend).
pub fn swap_mask(cx: &Cx, m: SigSet) {
    let mut st = cx.p().sig.lock();
    let t = st.thread(cx.tid);
    t.saved_mask = Some(t.mask);
    t.mask = m.blockable();
    st.update(cx.tid);
}

pub fn restore_mask(cx: &Cx) {
    let mut st = cx.p().sig.lock();
    let t = st.thread(cx.tid);
    if let Some(m) = t.saved_mask.take() {
        t.mask = m;
    }
    st.update(cx.tid);
}

pub fn rt_sigsuspend(cx: &Cx, set: UserPtr<u64>, size: u64) -> SysResult {
    sigset_size(size)?;
    let m = SigSet(set.read(cx.p())?);
    sigsuspend(cx, Some(m))
}

pub fn rt_sigtimedwait(cx: &Cx, set: UserPtr<u64>, info: UserPtr<[u8; SIGINFO_SIZE]>, timeout: UserPtr<linux_raw_sys::general::timespec>, size: u64) -> SysResult {
    sigset_size(size)?;
    let want = SigSet(set.read(cx.p())?).blockable();
    let deadline = if timeout.is_null() {
        None
    } else {
        Some(hal::time::now_ns().saturating_add(crate::syscall::read_timespec(cx, timeout)?))
    };
    let p = cx.p();
    let got = loop {
        let taken = {
            let mut st = p.sig.lock();
            let i = st.thread(cx.tid).pending.take(want).or_else(|| st.shared.take(want));
            st.thread(cx.tid).waiting = if i.is_some() { SigSet::EMPTY } else { want };
            st.update(cx.tid);
            i
        };
        if let Some(i) = taken {
            break Ok(i);
        }
        match sched::block(deadline) {
            sched::Wake::Woken => {}
            sched::Wake::TimedOut => break Err(EAGAIN),
            sched::Wake::Interrupted => {
                let mut st = p.sig.lock();
                let i = st.thread(cx.tid).pending.take(want).or_else(|| st.shared.take(want));
                st.thread(cx.tid).waiting = SigSet::EMPTY;
                st.update(cx.tid);
                break i.ok_or(EINTR);
            }
        }
    };
    {
        let mut st = p.sig.lock();
        st.thread(cx.tid).waiting = SigSet::EMPTY;
        st.update(cx.tid);
    }
    let i = got?;
    if !info.is_null() {
        info.write(p, &i.to_bytes())?;
    }
    Ok(u64::from(i.signo))
}

pub fn sigaltstack(cx: &Cx, frame: &TrapFrame, new: UserPtr<[u8; STACK_T_SIZE]>, old: UserPtr<[u8; STACK_T_SIZE]>) -> SysResult {
    let p = cx.p();
    let cur = p.sig.lock().thread(cx.tid).alt;
    if !new.is_null() {
        let (sp, flags, size) = AltStack::parse(&new.read(p)?);
        if cur.on(frame.rsp) {
            return Err(EPERM);
        }
        let alt = match flags {
            SS_DISABLE => AltStack::DISABLED,
            0 | SS_ONSTACK => {
                if size < MINSIGSTKSZ {
                    return Err(ENOMEM);
                }
                if sp.checked_add(size).is_none_or(|e| e > USER_TOP) {
                    return Err(EINVAL);
                }
                AltStack { sp, size, flags: 0 }
            }
            _ => return Err(EINVAL), // SS_AUTODISARM: not supported yet
        };
        p.sig.lock().thread(cx.tid).alt = alt;
    }
    if !old.is_null() {
        old.write(p, &cur.to_bytes(frame.rsp))?;
    }
    Ok(0)
}

/// rt_sigreturn: restores the registers, mask, FPU state and alternate stack saved in the
/// frame the handler returns through (its ucontext is at the stack pointer). A frame that
/// cannot be read, or that would return to a kernel address, kills the process (SIGSEGV).
pub fn rt_sigreturn(cx: &Cx, frame: &mut TrapFrame) -> Result<(), ()> {
    let p = cx.p();
    let uc: [u8; UCONTEXT_SIZE] = UserPtr::new(frame.rsp).read(p).map_err(|_| ())?;
    let r = parse_ucontext(&uc);
    if r.regs.rip >= USER_TOP || r.regs.rsp >= USER_TOP {
        return Err(());
    }
    if r.fpstate != 0 {
        let mut fp = [0u8; FPSTATE_SIZE as usize];
        UserSlice::new(r.fpstate, FPSTATE_SIZE).read_into(p, &mut fp).map_err(|_| ())?;
        hal::fpu::load_sse(&fp);
    }
    let g = r.regs;
    frame.r8 = g.r8;
    frame.r9 = g.r9;
    frame.r10 = g.r10;
    frame.r11 = g.r11;
    frame.r12 = g.r12;
    frame.r13 = g.r13;
    frame.r14 = g.r14;
    frame.r15 = g.r15;
    frame.rdi = g.rdi;
    frame.rsi = g.rsi;
    frame.rbp = g.rbp;
    frame.rbx = g.rbx;
    frame.rdx = g.rdx;
    frame.rax = g.rax;
    frame.rcx = g.rcx;
    frame.rsp = g.rsp;
    frame.rip = g.rip;
    frame.rflags = merge_rflags(frame.rflags, g.rflags);
    let mut st = p.sig.lock();
    let t = st.thread(cx.tid);
    t.mask = r.mask;
    let (sp, flags, size) = r.stack;
    if !t.alt.on(g.rsp) {
        t.alt = if flags & SS_DISABLE != 0 || size < MINSIGSTKSZ { AltStack::DISABLED } else { AltStack { sp, size, flags: 0 } };
    }
    st.update(cx.tid);
    Ok(())
}

/// kill(pid, sig): `pid` > 0 one process, 0 the caller's process group, -1 every process but
/// the caller and those the kernel started, < -1 process group `-pid`.
pub fn kill(cx: &Cx, pid: i64, sig: u64) -> SysResult {
    let sig = u32::try_from(sig).map_err(|_| EINVAL)?;
    if sig != 0 && !valid(sig) {
        return Err(EINVAL);
    }
    let group = |g: u32| -> Vec<Arc<Process>> { process::all().into_iter().filter(|q| q.pgid.load(Ordering::Relaxed) == g).collect() };
    let targets: Vec<Arc<Process>> = match pid {
        0 => group(cx.p().pgid.load(Ordering::Relaxed)),
        -1 => process::all().into_iter().filter(|q| q.pid != cx.p().pid && q.parent != 0).collect(),
        i64::MIN => return Err(ESRCH),
        n if n < 0 => group(u32::try_from(n.unsigned_abs()).map_err(|_| ESRCH)?),
        n => {
            let id = u32::try_from(n).map_err(|_| ESRCH)?;
            alloc::vec![process::get(id).or_else(|| process::of_thread(id)).ok_or(ESRCH)?]
        }
    };
    if targets.is_empty() {
        return Err(ESRCH);
    }
    if sig == 0 {
        return Ok(0);
    }
    for q in &targets {
        send(q, None, SigInfo::user(sig, SI_USER, cx.p().pid, 0))?;
    }
    Ok(0)
}

/// tkill(tid, sig) and tgkill(tgid, tid, sig): to one thread.
pub fn tgkill(cx: &Cx, tgid: Option<u64>, tid: u64, sig: u64) -> SysResult {
    let sig = u32::try_from(sig).map_err(|_| EINVAL)?;
    let tid = u32::try_from(tid).map_err(|_| EINVAL)?;
    if (sig != 0 && !valid(sig)) || tid == 0 {
        return Err(EINVAL);
    }
    let q = process::of_thread(tid).ok_or(ESRCH)?;
    if tgid.is_some_and(|g| g != u64::from(q.pid)) {
        return Err(ESRCH);
    }
    if sig == 0 {
        return Ok(0);
    }
    send(&q, Some(tid), SigInfo::user(sig, SI_TKILL, cx.p().pid, 0)).map(|_| 0)
}

/// rt_sigqueueinfo / rt_tgsigqueueinfo: a signal with the caller's siginfo (its si_code must be
/// negative, as Linux requires of other senders than the kernel, unless sent to itself).
pub fn sigqueueinfo(cx: &Cx, pid: u64, tid: Option<u64>, sig: u64, uinfo: UserPtr<[u8; SIGINFO_SIZE]>) -> SysResult {
    let sig = u32::try_from(sig).map_err(|_| EINVAL)?;
    if !valid(sig) {
        return Err(EINVAL);
    }
    let info = SigInfo::from_bytes(sig, &uinfo.read(cx.p())?);
    let pid = u32::try_from(pid).map_err(|_| ESRCH)?;
    let q = process::get(pid).ok_or(ESRCH)?;
    if (info.code >= 0 || info.code == SI_TKILL) && q.pid != cx.p().pid {
        return Err(EPERM);
    }
    let tid = match tid {
        Some(t) => Some(u32::try_from(t).map_err(|_| ESRCH)?),
        None => None,
    };
    send(&q, tid, info).map(|_| 0)
}

// ---------------------------------------------------------------------------------------
// The interval timer (alarm, setitimer ITIMER_REAL)
// ---------------------------------------------------------------------------------------

/// Armed timers by (expiry, process, timer: 0 for ITIMER_REAL, id + 1 for POSIX timer `id`);
/// checked against the process's own state when they fire (re-arming or cancelling leaves
/// stale entries, which are skipped).
static TIMERS: IrqLock<BTreeMap<(u64, Pid, u32), ()>> = IrqLock::ranked(BTreeMap::new(), crate::locks::WAIT_QUEUE);
static TIMER_THREAD: spin::Once<Option<Tid>> = spin::Once::new();

/// The kernel thread that sends the timers' signals (started on first use, on CPU 0's
/// best-effort VCPU).
fn timer_thread() -> Option<Tid> {
    *TIMER_THREAD.call_once(|| sched::spawn("sigtimer", 0, None, timer_loop).ok())
}

/// The next expiry after `at` of a timer with `interval`, and the periods missed by `now`.
fn rearm(at: u64, interval: u64, now: u64) -> (u64, u32) {
    let late = now.saturating_sub(at) / interval;
    (at.saturating_add(interval.saturating_mul(late + 1)), u32::try_from(late).unwrap_or(u32::MAX))
}

fn timer_loop() {
    loop {
        let now = hal::time::now_ns();
        let due: Vec<(u64, Pid, u32)> = {
            let mut t = TIMERS.lock();
            let later = t.split_off(&(now.saturating_add(1), 0, 0));
            let due = core::mem::replace(&mut *t, later);
            due.into_keys().collect()
        };
        for (at, pid, which) in due {
            let Some(p) = process::get(pid) else { continue };
            let fire = {
                let mut st = p.sig.lock();
                if which == 0 {
                    match st.real {
                        Some((when, interval)) if when == at => {
                            st.real = if interval > 0 { Some((rearm(at, interval, now).0, interval)) } else { None };
                            Some((st.real.map(|r| r.0), None, SigInfo::kernel(SIGALRM)))
                        }
                        _ => None,
                    }
                } else {
                    match st.timers.get_mut(&(which - 1)) {
                        Some(t) if t.next.is_some_and(|(w, _)| w == at) => {
                            let interval = t.next.map_or(0, |n| n.1);
                            let (next, missed) = if interval > 0 { rearm(at, interval, now) } else { (0, 0) };
                            t.next = (interval > 0).then_some((next, interval));
                            t.overrun = missed;
                            let info = SigInfo::timer(t.signo, which - 1, missed, t.value);
                            t.notify.map(|to| (t.next.map(|n| n.0), to, info))
                        }
                        _ => None,
                    }
                }
            };
            if let Some((next, to, info)) = fire {
                if let Some(when) = next {
                    TIMERS.lock().insert((when, pid, which), ());
                }
                let _ = send(&p, to, info);
            }
        }
        let next = TIMERS.lock().keys().next().map(|k| k.0);
        let _ = sched::block(next);
    }
}

/// Puts timer `which` of `pid` on the timer thread's table for `when`.
fn arm(pid: Pid, which: u32, when: u64) {
    TIMERS.lock().insert((when, pid, which), ());
    if let Some(t) = timer_thread() {
        let _ = sched::wake(t);
    }
}

/// Arms (or with `value` 0 disarms) ITIMER_REAL; returns the previous (remaining, interval).
fn set_real(p: &Process, value: u64, interval: u64) -> (u64, u64) {
    let now = hal::time::now_ns();
    let prev = {
        let mut st = p.sig.lock();
        let prev = st.real.map_or((0, 0), |(w, i)| (w.saturating_sub(now).max(1), i));
        st.real = if value == 0 { None } else { Some((now.saturating_add(value), interval)) };
        prev
    };
    if value != 0 {
        arm(p.pid, 0, now.saturating_add(value));
    }
    prev
}

pub fn alarm(cx: &Cx, secs: u64) -> SysResult {
    let (left, _) = set_real(cx.p(), secs.min(u64::from(u32::MAX)).saturating_mul(1_000_000_000), 0);
    // Whole seconds left, rounded to nearest (at least 1 while one is pending), as Linux.
    Ok(if left == 0 { 0 } else { left.saturating_add(500_000_000) / 1_000_000_000 }.max(u64::from(left != 0)))
}

type Itimerval = [linux_raw_sys::general::timeval; 2];

fn tv_ns(t: &linux_raw_sys::general::timeval) -> Result<u64, Errno> {
    if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
        return Err(EINVAL);
    }
    Ok((t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_usec as u64 * 1000))
}

fn ns_tv(ns: u64) -> linux_raw_sys::general::timeval {
    linux_raw_sys::general::timeval { tv_sec: (ns / 1_000_000_000) as _, tv_usec: ((ns % 1_000_000_000) / 1000) as _ }
}

static ITIMER_LOGGED: IrqLock<bool> = IrqLock::ranked(false, crate::locks::LOGGED);

fn itimer_which(which: u64) -> Result<(), Errno> {
    match which as u32 {
        linux_raw_sys::general::ITIMER_REAL => Ok(()),
        linux_raw_sys::general::ITIMER_VIRTUAL | linux_raw_sys::general::ITIMER_PROF => {
            if !core::mem::replace(&mut *ITIMER_LOGGED.lock(), true) {
                hal::println!("setitimer: ITIMER_VIRTUAL and ITIMER_PROF are not supported yet: EINVAL");
            }
            Err(EINVAL)
        }
        _ => Err(EINVAL),
    }
}

pub fn setitimer(cx: &Cx, which: u64, new: UserPtr<Itimerval>, old: UserPtr<Itimerval>) -> SysResult {
    itimer_which(which)?;
    let (value, interval) = if new.is_null() {
        (0, 0)
    } else {
        let v = new.read(cx.p())?;
        (tv_ns(&v[1])?, tv_ns(&v[0])?)
    };
    let (left, int) = set_real(cx.p(), value, interval);
    if !old.is_null() {
        old.write(cx.p(), &[ns_tv(int), ns_tv(left)])?;
    }
    Ok(0)
}

pub fn getitimer(cx: &Cx, which: u64, out: UserPtr<Itimerval>) -> SysResult {
    itimer_which(which)?;
    let now = hal::time::now_ns();
    let (left, int) = cx.p().sig.lock().real.map_or((0, 0), |(w, i)| (w.saturating_sub(now).max(1), i));
    out.write(cx.p(), &[ns_tv(int), ns_tv(left)]).map(|_| 0)
}

// ---------------------------------------------------------------------------------------
// POSIX timers (timer_create, timer_settime, timer_gettime, timer_getoverrun, timer_delete)
// ---------------------------------------------------------------------------------------

/// `struct sigevent`'s first 20 bytes: value, signo, notify, thread id.
type Sigevent = [u32; 5];
type Itimerspec = [linux_raw_sys::general::timespec; 2];

fn ts_ns(t: &linux_raw_sys::general::timespec) -> Result<u64, Errno> {
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(EINVAL);
    }
    Ok((t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64))
}

fn ns_ts(ns: u64) -> linux_raw_sys::general::timespec {
    linux_raw_sys::general::timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ }
}

/// timer_create: CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME (one clock here); the CPU
/// time clocks are not supported yet (EINVAL). SIGEV_SIGNAL, SIGEV_NONE and SIGEV_THREAD_ID
/// (what libc's SIGEV_THREAD becomes).
pub fn timer_create(cx: &Cx, clock: u64, sev: UserPtr<Sigevent>, id: UserPtr<u32>) -> SysResult {
    use linux_raw_sys::general::{CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD_ID};
    if !matches!(clock as u32, CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME) {
        return Err(EINVAL);
    }
    let p = cx.p();
    let ev = if sev.is_null() { None } else { Some(sev.read(p)?) };
    let mut st = p.sig.lock();
    if st.timers.len() >= MAX_TIMERS {
        return Err(EAGAIN);
    }
    let tid = st.next_timer;
    let (signo, value, notify) = match ev {
        None => (SIGALRM, u64::from(tid), Some(None)),
        Some([lo, hi, signo, notify, thread]) => {
            let value = u64::from(lo) | (u64::from(hi) << 32);
            match notify {
                SIGEV_NONE => (signo, value, None),
                SIGEV_SIGNAL if valid(signo) => (signo, value, Some(None)),
                SIGEV_THREAD_ID if valid(signo) && st.threads.contains_key(&thread) => (signo, value, Some(Some(thread))),
                _ => return Err(EINVAL),
            }
        }
    };
    st.next_timer += 1;
    st.timers.insert(tid, PosixTimer { signo, value, notify, next: None, overrun: 0 });
    drop(st);
    if let Err(e) = id.write(p, &tid) {
        p.sig.lock().timers.remove(&tid);
        return Err(e);
    }
    Ok(0)
}

fn timer_state(t: &PosixTimer, now: u64) -> Itimerspec {
    let (left, interval) = t.next.map_or((0, 0), |(w, i)| (w.saturating_sub(now).max(1), i));
    [ns_ts(interval), ns_ts(left)]
}

pub fn timer_settime(cx: &Cx, id: u64, flags: u64, new: UserPtr<Itimerspec>, old: UserPtr<Itimerspec>) -> SysResult {
    let p = cx.p();
    let id = u32::try_from(id).map_err(|_| EINVAL)?;
    let [interval, value] = new.read(p)?;
    let (interval, value) = (ts_ns(&interval)?, ts_ns(&value)?);
    let now = hal::time::now_ns();
    let when = if value == 0 {
        None
    } else if flags as u32 & linux_raw_sys::general::TIMER_ABSTIME != 0 {
        Some(value.max(now))
    } else {
        Some(now.saturating_add(value))
    };
    let prev = {
        let mut st = p.sig.lock();
        let t = st.timers.get_mut(&id).ok_or(EINVAL)?;
        let prev = timer_state(t, now);
        t.next = when.map(|w| (w, interval));
        t.overrun = 0;
        prev
    };
    if let Some(w) = when {
        arm(p.pid, id + 1, w);
    }
    if !old.is_null() {
        old.write(p, &prev)?;
    }
    Ok(0)
}

pub fn timer_gettime(cx: &Cx, id: u64, out: UserPtr<Itimerspec>) -> SysResult {
    let now = hal::time::now_ns();
    let cur = cx.p().sig.lock().timers.get(&u32::try_from(id).map_err(|_| EINVAL)?).map(|t| timer_state(t, now)).ok_or(EINVAL)?;
    out.write(cx.p(), &cur).map(|_| 0)
}

pub fn timer_getoverrun(cx: &Cx, id: u64) -> SysResult {
    cx.p().sig.lock().timers.get(&u32::try_from(id).map_err(|_| EINVAL)?).map(|t| u64::from(t.overrun)).ok_or(EINVAL)
}

pub fn timer_delete(cx: &Cx, id: u64) -> SysResult {
    cx.p().sig.lock().timers.remove(&u32::try_from(id).map_err(|_| EINVAL)?).map(|_| 0).ok_or(EINVAL)
}
