//! Linux signal semantics without hardware, for the Quest-RS kernel (`kernel/src/signal.rs`
//! does the locking, the user-memory copies and the register frames; everything here is pure
//! and host-tested).
//!
//! - [`SigSet`]: a 64-signal mask (`sigset_t` as the kernel sees it: 8 bytes).
//! - [`Action`]: `struct sigaction` as x86-64 Linux's `rt_sigaction` takes it (handler, flags,
//!   restorer, mask: 32 bytes), and [`default_action`] of every signal.
//! - [`Pending`]: a pending queue: a standard signal (1-31) is pending at most once, a
//!   real-time signal (32-64) is queued once per send with its own [`SigInfo`]; the next one
//!   taken is a synchronous fault signal first, then the lowest number (Linux's order).
//! - [`SigInfo`]: `siginfo_t` (128 bytes) for each way a signal is sent.
//! - [`layout`], [`build_frame`], [`parse_ucontext`]: x86-64's `struct rt_sigframe` — return
//!   address (`sa_restorer`), `ucontext` (`uc_stack`, `sigcontext`, `uc_sigmask`) and
//!   `siginfo` — that a handler is entered with and `rt_sigreturn` restores from, byte for byte
//!   as Linux lays it out (musl's `ucontext_t` and `REG_*` offsets read it).
//!
//! Hand-written, not a crate: the layouts are Linux's ABI (checked against `linux-raw-sys`'s
//! constants where it has them, in the tests), and no published crate models the kernel side of
//! signal delivery.
#![no_std]

extern crate alloc;

use alloc::collections::VecDeque;

/// Number of signals (1..=64).
pub const NSIG: u32 = 64;
pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGQUIT: u32 = 3;
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGABRT: u32 = 6;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGKILL: u32 = 9;
pub const SIGUSR1: u32 = 10;
pub const SIGSEGV: u32 = 11;
pub const SIGUSR2: u32 = 12;
pub const SIGPIPE: u32 = 13;
pub const SIGALRM: u32 = 14;
pub const SIGTERM: u32 = 15;
pub const SIGSTKFLT: u32 = 16;
pub const SIGCHLD: u32 = 17;
pub const SIGCONT: u32 = 18;
pub const SIGSTOP: u32 = 19;
pub const SIGTSTP: u32 = 20;
pub const SIGTTIN: u32 = 21;
pub const SIGTTOU: u32 = 22;
pub const SIGURG: u32 = 23;
pub const SIGXCPU: u32 = 24;
pub const SIGXFSZ: u32 = 25;
pub const SIGVTALRM: u32 = 26;
pub const SIGPROF: u32 = 27;
pub const SIGWINCH: u32 = 28;
pub const SIGIO: u32 = 29;
pub const SIGPWR: u32 = 30;
pub const SIGSYS: u32 = 31;
/// First real-time signal as the kernel numbers them (musl reserves 32-34 for itself:
/// `pthread_cancel` sends 33).
pub const SIGRTMIN: u32 = 32;
pub const SIGRTMAX: u32 = 64;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;
/// Smallest alternate stack `sigaltstack` accepts.
pub const MINSIGSTKSZ: u64 = 2048;

/// `si_code` values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_QUEUE: i32 = -1;
pub const SI_TIMER: i32 = -2;
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const ILL_ILLOPN: i32 = 2;
pub const FPE_INTDIV: i32 = 1;
pub const FPE_FLTINV: i32 = 7;
pub const BUS_ADRALN: i32 = 1;
pub const TRAP_BRKPT: i32 = 1;

/// Whether `sig` is a signal number (1..=64).
pub fn valid(sig: u32) -> bool {
    (1..=NSIG).contains(&sig)
}

/// A set of signals: bit `sig - 1` for signal `sig`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct SigSet(pub u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);
    /// SIGKILL and SIGSTOP, which can be neither blocked, caught nor ignored.
    pub const UNBLOCKABLE: SigSet = SigSet((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)));

    pub fn of(sig: u32) -> SigSet {
        if valid(sig) { SigSet(1 << (sig - 1)) } else { SigSet(0) }
    }
    pub fn has(self, sig: u32) -> bool {
        valid(sig) && self.0 & (1 << (sig - 1)) != 0
    }
    pub fn add(&mut self, sig: u32) {
        self.0 |= SigSet::of(sig).0;
    }
    pub fn remove(&mut self, sig: u32) {
        self.0 &= !SigSet::of(sig).0;
    }
    pub fn union(self, o: SigSet) -> SigSet {
        SigSet(self.0 | o.0)
    }
    pub fn minus(self, o: SigSet) -> SigSet {
        SigSet(self.0 & !o.0)
    }
    pub fn and(self, o: SigSet) -> SigSet {
        SigSet(self.0 & o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The set as a mask may hold it (SIGKILL and SIGSTOP removed).
    pub fn blockable(self) -> SigSet {
        self.minus(SigSet::UNBLOCKABLE)
    }
}

/// `how` of `rt_sigprocmask`.
pub const SIG_BLOCK: u32 = 0;
pub const SIG_UNBLOCK: u32 = 1;
pub const SIG_SETMASK: u32 = 2;

/// The mask after `rt_sigprocmask(how, set)`; `None` for an unknown `how` (EINVAL).
pub fn change_mask(old: SigSet, how: u32, set: SigSet) -> Option<SigSet> {
    let m = match how {
        SIG_BLOCK => old.union(set),
        SIG_UNBLOCK => old.minus(set),
        SIG_SETMASK => set,
        _ => return None,
    };
    Some(m.blockable())
}

/// What a signal does when its action is `SIG_DFL`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Default {
    Terminate,
    /// Terminate (Linux would also write a core file).
    Core,
    Ignore,
    Stop,
    Continue,
}

pub fn default_action(sig: u32) -> Default {
    match sig {
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ | SIGSYS => Default::Core,
        SIGCHLD | SIGURG | SIGWINCH => Default::Ignore,
        SIGCONT => Default::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Default::Stop,
        _ => Default::Terminate,
    }
}

/// `struct sigaction` as the kernel takes it on x86-64 (`rt_sigaction`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Action {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}

pub const ACTION_SIZE: usize = 32;

impl Action {
    pub fn to_bytes(&self) -> [u8; ACTION_SIZE] {
        let mut b = [0u8; ACTION_SIZE];
        b[0..8].copy_from_slice(&self.handler.to_le_bytes());
        b[8..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.restorer.to_le_bytes());
        b[24..32].copy_from_slice(&self.mask.0.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8; ACTION_SIZE]) -> Action {
        Action { handler: word(b, 0), flags: word(b, 8), restorer: word(b, 16), mask: SigSet(word(b, 24)).blockable() }
    }
    pub fn is_handler(&self) -> bool {
        self.handler != SIG_DFL && self.handler != SIG_IGN
    }
}

/// Whether signal `sig` with action `a` is discarded as soon as it is generated (when the
/// receiver does not block it): `SIG_IGN`, or `SIG_DFL` whose default ignores it.
pub fn ignored(sig: u32, a: &Action) -> bool {
    match a.handler {
        SIG_IGN => sig != SIGKILL && sig != SIGSTOP,
        SIG_DFL => matches!(default_action(sig), Default::Ignore | Default::Continue),
        _ => false,
    }
}

/// Whether `sig` is one of the synchronous fault signals (taken before the others).
pub fn synchronous(sig: u32) -> bool {
    matches!(sig, SIGSEGV | SIGBUS | SIGILL | SIGTRAP | SIGFPE | SIGSYS)
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn put(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn word32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// `siginfo_t`: its first three words and the union's first four 8-byte words (what every
/// kind of signal Linux sends uses), 128 bytes on the wire.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct SigInfo {
    pub signo: u32,
    pub errno: i32,
    pub code: i32,
    /// The union at offset 16, as four words.
    pub fields: [u64; 4],
}

pub const SIGINFO_SIZE: usize = 128;

impl SigInfo {
    /// Sent by `kill` (SI_USER) or `tkill`/`tgkill` (SI_TKILL) from process `pid`.
    pub fn user(signo: u32, code: i32, pid: u32, uid: u32) -> SigInfo {
        SigInfo { signo, errno: 0, code, fields: [u64::from(pid) | (u64::from(uid) << 32), 0, 0, 0] }
    }
    /// Sent by the kernel (ctrl-c, a timer without a value, a broken pipe).
    pub fn kernel(signo: u32) -> SigInfo {
        SigInfo { signo, errno: 0, code: SI_KERNEL, fields: [0; 4] }
    }
    /// A fault at `addr` (si_addr).
    pub fn fault(signo: u32, code: i32, addr: u64) -> SigInfo {
        SigInfo { signo, errno: 0, code, fields: [addr, 0, 0, 0] }
    }
    /// SIGCHLD: child `pid` ended (`code` CLD_EXITED with the exit code, or CLD_KILLED with the
    /// signal, in `status`).
    pub fn child(pid: u32, code: i32, status: i32) -> SigInfo {
        SigInfo { signo: SIGCHLD, errno: 0, code, fields: [u64::from(pid), u64::from(status as u32), 0, 0] }
    }
    /// A POSIX timer's signal (`si_timerid`, `si_overrun`, `si_value`).
    pub fn timer(signo: u32, id: u32, overrun: u32, value: u64) -> SigInfo {
        SigInfo { signo, errno: 0, code: SI_TIMER, fields: [u64::from(id) | (u64::from(overrun) << 32), value, 0, 0] }
    }
    pub fn to_bytes(&self) -> [u8; SIGINFO_SIZE] {
        let mut b = [0u8; SIGINFO_SIZE];
        put32(&mut b, 0, self.signo);
        put32(&mut b, 4, self.errno as u32);
        put32(&mut b, 8, self.code as u32);
        for (i, f) in self.fields.iter().enumerate() {
            put(&mut b, 16 + 8 * i, *f);
        }
        b
    }
    /// A `siginfo_t` a program passed (`rt_sigqueueinfo`): `signo` is the signal it is sent as.
    pub fn from_bytes(signo: u32, b: &[u8; SIGINFO_SIZE]) -> SigInfo {
        SigInfo {
            signo,
            errno: word32(b, 4) as i32,
            code: word32(b, 8) as i32,
            fields: [word(b, 16), word(b, 24), word(b, 32), word(b, 40)],
        }
    }
}

/// Most real-time signals queued on one queue (`RLIMIT_SIGPENDING` of a small system).
pub const MAX_QUEUED: usize = 1024;

/// Signals pending for a thread or a process.
#[derive(Clone, Default, Debug)]
pub struct Pending {
    set: SigSet,
    queue: VecDeque<SigInfo>,
}

/// Why a signal was not queued.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueueError {
    /// A standard signal already pending: merged into it (not an error for the sender).
    Merged,
    /// The real-time queue is full (EAGAIN).
    Full,
}

impl Pending {
    pub const fn new() -> Pending {
        Pending { set: SigSet(0), queue: VecDeque::new() }
    }
    pub fn set(&self) -> SigSet {
        self.set
    }
    /// Queues `info`.
    pub fn push(&mut self, info: SigInfo) -> Result<(), QueueError> {
        let sig = info.signo;
        if sig < SIGRTMIN && self.set.has(sig) {
            return Err(QueueError::Merged);
        }
        if self.queue.len() >= MAX_QUEUED {
            return Err(QueueError::Full);
        }
        self.set.add(sig);
        self.queue.push_back(info);
        Ok(())
    }
    /// The signal [`take`](Self::take) would return among `allowed`.
    pub fn next(&self, allowed: SigSet) -> Option<u32> {
        let s = self.set.and(allowed);
        if s.is_empty() {
            return None;
        }
        let sync = (1..SIGRTMIN).find(|&g| synchronous(g) && s.has(g));
        sync.or_else(|| Some(s.0.trailing_zeros() + 1))
    }
    /// Takes the next signal among `allowed`: a synchronous fault signal first, then the lowest
    /// number; the oldest instance of a real-time signal.
    pub fn take(&mut self, allowed: SigSet) -> Option<SigInfo> {
        let sig = self.next(allowed)?;
        self.take_sig(sig)
    }
    /// Takes the oldest instance of `sig`.
    pub fn take_sig(&mut self, sig: u32) -> Option<SigInfo> {
        let i = self.queue.iter().position(|q| q.signo == sig)?;
        let info = self.queue.remove(i)?;
        if !self.queue.iter().any(|q| q.signo == sig) {
            self.set.remove(sig);
        }
        Some(info)
    }
    /// Drops every instance of `sig` (its action became "ignore").
    pub fn discard(&mut self, sig: u32) {
        self.queue.retain(|q| q.signo != sig);
        self.set.remove(sig);
    }
    pub fn clear(&mut self) {
        self.queue.clear();
        self.set = SigSet::EMPTY;
    }
}

/// A thread's alternate signal stack (`sigaltstack`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct AltStack {
    pub sp: u64,
    pub size: u64,
    /// `SS_DISABLE` or 0 (`SS_ONSTACK` is computed, never stored).
    pub flags: u32,
}

pub const STACK_T_SIZE: usize = 24;

impl AltStack {
    pub const DISABLED: AltStack = AltStack { sp: 0, size: 0, flags: SS_DISABLE };
    pub fn enabled(&self) -> bool {
        self.flags & SS_DISABLE == 0 && self.size > 0
    }
    /// Whether stack pointer `rsp` is on this stack.
    pub fn on(&self, rsp: u64) -> bool {
        self.enabled() && rsp > self.sp && rsp - self.sp <= self.size
    }
    /// `stack_t` as `sigaltstack` reports it while the thread's stack pointer is `rsp`.
    pub fn to_bytes(&self, rsp: u64) -> [u8; STACK_T_SIZE] {
        let mut b = [0u8; STACK_T_SIZE];
        let flags = if self.on(rsp) { SS_ONSTACK } else if self.enabled() { 0 } else { SS_DISABLE };
        put(&mut b, 0, self.sp);
        put32(&mut b, 8, flags);
        put(&mut b, 16, self.size);
        b
    }
    /// A `stack_t` from user memory: its (sp, flags, size).
    pub fn parse(b: &[u8; STACK_T_SIZE]) -> (u64, u32, u64) {
        (word(b, 0), word32(b, 8), word(b, 16))
    }
}

/// The user registers a signal frame saves (`struct sigcontext`'s).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Regs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cs: u16,
    pub ss: u16,
    pub err: u64,
    pub trapno: u64,
    pub cr2: u64,
}

/// Bytes of FPU state saved below a frame (the `fxsave` format).
pub const FPSTATE_SIZE: u64 = 512;
/// `struct rt_sigframe`: return address 8, ucontext 304, siginfo 128.
pub const SIGFRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
pub const UCONTEXT_SIZE: usize = 304;
/// Where the ucontext and the siginfo are in the frame.
pub const UC_OFFSET: u64 = 8;
pub const INFO_OFFSET: u64 = 8 + UCONTEXT_SIZE as u64;
/// The System V red zone below the interrupted stack pointer, which a frame must not overwrite.
pub const REDZONE: u64 = 128;
/// The rflags bits a signal handler may change through its saved context (Linux's
/// FIX_EFLAGS: CF PF AF ZF SF TF DF OF AC RF).
pub const USER_RFLAGS: u64 = 0x0005_0dd5;

/// Where a frame goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameLayout {
    /// The frame (the handler's stack pointer: `frame + 8` is 16-byte aligned, as after a call).
    pub frame: u64,
    /// The saved FPU state (64-byte aligned, [`FPSTATE_SIZE`] bytes).
    pub fpstate: u64,
}

/// Lays a frame out below stack pointer `sp` (below the red zone unless `sp` is the top of a
/// fresh alternate stack); `None` if it would wrap below address 0.
pub fn layout(sp: u64, skip_redzone: bool) -> Option<FrameLayout> {
    let sp = if skip_redzone { sp.checked_sub(REDZONE)? } else { sp };
    let fpstate = sp.checked_sub(FPSTATE_SIZE)? & !63;
    let frame = (fpstate.checked_sub(SIGFRAME_SIZE as u64)? & !15).checked_sub(8)?;
    Some(FrameLayout { frame, fpstate })
}

/// The bytes of a `struct rt_sigframe` at `l.frame`: return address `restorer`, a ucontext
/// holding `regs`, the mask to restore `mask`, the alternate stack as it was, the FPU state
/// pointer (`fpstate`, 0 for none), and `info`.
pub fn build_frame(l: &FrameLayout, regs: &Regs, info: &SigInfo, mask: SigSet, alt: &AltStack, restorer: u64, fpstate: u64) -> [u8; SIGFRAME_SIZE] {
    let _ = l;
    let mut b = [0u8; SIGFRAME_SIZE];
    put(&mut b, 0, restorer);
    let uc = UC_OFFSET as usize;
    // uc_flags, uc_link: 0.
    b[uc + 16..uc + 40].copy_from_slice(&alt.to_bytes(regs.rsp));
    let mc = uc + 40;
    let words = [
        regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.rdi, regs.rsi, regs.rbp, regs.rbx,
        regs.rdx, regs.rax, regs.rcx, regs.rsp, regs.rip, regs.rflags,
    ];
    for (i, w) in words.iter().enumerate() {
        put(&mut b, mc + 8 * i, *w);
    }
    // cs, gs, fs, ss (16 bits each).
    b[mc + 144..mc + 146].copy_from_slice(&regs.cs.to_le_bytes());
    b[mc + 150..mc + 152].copy_from_slice(&regs.ss.to_le_bytes());
    put(&mut b, mc + 152, regs.err);
    put(&mut b, mc + 160, regs.trapno);
    put(&mut b, mc + 168, mask.0); // oldmask
    put(&mut b, mc + 176, regs.cr2);
    put(&mut b, mc + 184, fpstate);
    put(&mut b, uc + 296, mask.0); // uc_sigmask
    b[INFO_OFFSET as usize..].copy_from_slice(&info.to_bytes());
    b
}

/// What `rt_sigreturn` restores from a ucontext: the registers (rflags not yet merged: see
/// [`USER_RFLAGS`]), the mask, the FPU state pointer and the `uc_stack` (sp, flags, size).
pub struct Restored {
    pub regs: Regs,
    pub mask: SigSet,
    pub fpstate: u64,
    pub stack: (u64, u32, u64),
}

pub fn parse_ucontext(b: &[u8; UCONTEXT_SIZE]) -> Restored {
    let mc = 40;
    let w = |i: usize| word(b, mc + 8 * i);
    let regs = Regs {
        r8: w(0),
        r9: w(1),
        r10: w(2),
        r11: w(3),
        r12: w(4),
        r13: w(5),
        r14: w(6),
        r15: w(7),
        rdi: w(8),
        rsi: w(9),
        rbp: w(10),
        rbx: w(11),
        rdx: w(12),
        rax: w(13),
        rcx: w(14),
        rsp: w(15),
        rip: w(16),
        rflags: w(17),
        cs: u16::from_le_bytes([b[mc + 144], b[mc + 145]]),
        ss: u16::from_le_bytes([b[mc + 150], b[mc + 151]]),
        err: word(b, mc + 152),
        trapno: word(b, mc + 160),
        cr2: word(b, mc + 176),
    };
    let mut st = [0u8; STACK_T_SIZE];
    st.copy_from_slice(&b[16..40]);
    Restored { regs, mask: SigSet(word(b, 296)).blockable(), fpstate: word(b, mc + 184), stack: AltStack::parse(&st) }
}

/// The rflags after `rt_sigreturn`: the kernel's `current` (interrupt flag on, IOPL 0) with the
/// user-changeable bits from the saved context.
pub fn merge_rflags(current: u64, saved: u64) -> u64 {
    (current & !USER_RFLAGS) | (saved & USER_RFLAGS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_signals_merge_and_realtime_signals_queue() {
        let mut p = Pending::new();
        assert_eq!(p.push(SigInfo::kernel(SIGUSR1)), Ok(()));
        assert_eq!(p.push(SigInfo::kernel(SIGUSR1)), Err(QueueError::Merged));
        for v in 0..3 {
            let mut i = SigInfo::kernel(40);
            i.fields[1] = v;
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.set(), SigSet::of(SIGUSR1).union(SigSet::of(40)));
        assert_eq!(p.take(SigSet(!0)).unwrap().signo, SIGUSR1);
        assert_eq!(p.take(SigSet(!0)).unwrap().fields[1], 0);
        assert_eq!(p.take(SigSet(!0)).unwrap().fields[1], 1);
        assert!(p.set().has(40));
        assert_eq!(p.take(SigSet(!0)).unwrap().fields[1], 2);
        assert!(p.set().is_empty());
        assert!(p.take(SigSet(!0)).is_none());
    }

    #[test]
    fn faults_come_first_then_the_lowest_number_and_blocked_ones_wait() {
        let mut p = Pending::new();
        for s in [SIGTERM, SIGINT, SIGSEGV, 35] {
            p.push(SigInfo::kernel(s)).unwrap();
        }
        let allowed = SigSet(!0).minus(SigSet::of(SIGINT));
        assert_eq!(p.take(allowed).unwrap().signo, SIGSEGV);
        assert_eq!(p.take(allowed).unwrap().signo, SIGTERM);
        assert_eq!(p.take(allowed).unwrap().signo, 35);
        assert!(p.take(allowed).is_none());
        assert_eq!(p.take(SigSet(!0)).unwrap().signo, SIGINT);
    }

    #[test]
    fn the_realtime_queue_is_bounded() {
        let mut p = Pending::new();
        for _ in 0..MAX_QUEUED {
            p.push(SigInfo::kernel(SIGRTMIN + 1)).unwrap();
        }
        assert_eq!(p.push(SigInfo::kernel(SIGRTMIN + 1)), Err(QueueError::Full));
        p.discard(SIGRTMIN + 1);
        assert!(p.set().is_empty());
    }

    #[test]
    fn masks_never_hold_kill_or_stop() {
        let m = change_mask(SigSet::EMPTY, SIG_SETMASK, SigSet(!0)).unwrap();
        assert!(!m.has(SIGKILL) && !m.has(SIGSTOP) && m.has(SIGINT) && m.has(64));
        assert!(!change_mask(m, SIG_UNBLOCK, SigSet::of(SIGINT)).unwrap().has(SIGINT));
        assert_eq!(change_mask(m, 3, SigSet::EMPTY), None);
        assert!(!Action::from_bytes(&Action { mask: SigSet(!0), ..Action::default() }.to_bytes()).mask.has(SIGKILL));
    }

    #[test]
    fn default_actions_follow_signal_7() {
        assert_eq!(default_action(SIGCHLD), Default::Ignore);
        assert_eq!(default_action(SIGSEGV), Default::Core);
        assert_eq!(default_action(SIGTERM), Default::Terminate);
        assert_eq!(default_action(SIGRTMIN + 3), Default::Terminate);
        assert_eq!(default_action(SIGTSTP), Default::Stop);
        assert!(ignored(SIGCHLD, &Action::default()));
        assert!(!ignored(SIGKILL, &Action { handler: SIG_IGN, ..Action::default() }));
        assert!(ignored(SIGUSR1, &Action { handler: SIG_IGN, ..Action::default() }));
    }

    #[test]
    fn the_abi_sizes_and_numbers_are_linuxs() {
        // musl's ucontext_t starts with uc_flags, uc_link, a 24-byte stack_t and a 256-byte
        // mcontext (23 gregs, the fpregs pointer, 8 reserved words); the kernel's sigmask is 8.
        assert_eq!(UCONTEXT_SIZE, 8 + 8 + 24 + 256 + 8);
        assert_eq!(SIGFRAME_SIZE, 440);
        assert_eq!(STACK_T_SIZE, 24);
    }

    #[test]
    fn stack_t_reports_on_stack() {
        let a = AltStack { sp: 0x1000, size: 0x2000, flags: 0 };
        assert!(a.on(0x2000) && a.on(0x3000) && !a.on(0x1000) && !a.on(0x3001));
        assert_eq!(AltStack::parse(&a.to_bytes(0x2000)), (0x1000, SS_ONSTACK, 0x2000));
        assert_eq!(AltStack::parse(&a.to_bytes(0x9000)).1, 0);
        assert_eq!(AltStack::parse(&AltStack::DISABLED.to_bytes(0)).1, SS_DISABLE);
    }

    fn regs() -> impl Strategy<Value = Regs> {
        (proptest::array::uniform19(any::<u64>()), any::<u16>(), any::<u16>(), any::<u64>()).prop_map(|(w, cs, ss, cr2)| Regs {
            r8: w[0],
            r9: w[1],
            r10: w[2],
            r11: w[3],
            r12: w[4],
            r13: w[5],
            r14: w[6],
            r15: w[7],
            rdi: w[8],
            rsi: w[9],
            rbp: w[10],
            rbx: w[11],
            rdx: w[12],
            rax: w[13],
            rcx: w[14],
            rsp: w[15],
            rip: w[16],
            rflags: w[17],
            err: w[18],
            trapno: 14,
            cs,
            ss,
            cr2,
        })
    }

    proptest! {
        #[test]
        fn a_frame_restores_what_it_saved(r in regs(), mask in any::<u64>(), sp in 0x10000u64..0x7fff_ffff_0000, fp in any::<u64>()) {
            let l = layout(sp, true).unwrap();
            prop_assert_eq!((l.frame + 8) % 16, 0);
            prop_assert_eq!(l.fpstate % 64, 0);
            prop_assert!(l.frame + SIGFRAME_SIZE as u64 <= l.fpstate);
            prop_assert!(l.fpstate + FPSTATE_SIZE <= sp - REDZONE);
            let info = SigInfo::user(SIGUSR1, SI_USER, 7, 0);
            let b = build_frame(&l, &r, &info, SigSet(mask).blockable(), &AltStack::DISABLED, 0x401000, fp);
            prop_assert_eq!(word(&b, 0), 0x401000);
            let mut uc = [0u8; UCONTEXT_SIZE];
            uc.copy_from_slice(&b[8..8 + UCONTEXT_SIZE]);
            let back = parse_ucontext(&uc);
            prop_assert_eq!(back.regs, r);
            prop_assert_eq!(back.mask, SigSet(mask).blockable());
            prop_assert_eq!(back.fpstate, fp);
            prop_assert_eq!(&b[INFO_OFFSET as usize..], &info.to_bytes()[..]);
        }

        #[test]
        fn rflags_merge_keeps_the_kernels_bits(cur in any::<u64>(), saved in any::<u64>()) {
            let m = merge_rflags(cur, saved);
            prop_assert_eq!(m & !USER_RFLAGS, cur & !USER_RFLAGS);
            prop_assert_eq!(m & USER_RFLAGS, saved & USER_RFLAGS);
        }

        #[test]
        fn siginfo_round_trips(signo in 1u32..=64, code in any::<i32>(), f in proptest::array::uniform4(any::<u64>())) {
            let i = SigInfo { signo, errno: 0, code, fields: f };
            prop_assert_eq!(SigInfo::from_bytes(signo, &i.to_bytes()), i);
        }
    }

    #[test]
    fn layout_refuses_to_wrap() {
        assert_eq!(layout(100, true), None);
        assert_eq!(layout(600, false), None);
    }
}
