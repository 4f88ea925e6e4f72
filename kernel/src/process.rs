//! User processes: an address space loaded from a static ELF64 program in /boot, its threads,
//! its heap (`brk`) and anonymous mappings, and how it ends (exit or a fault that kills it).
//!
//! A new process or thread goes to the least-loaded CPU its creator's affinity allows
//! (`sched::smp`), unless its creator runs on a reservation (a Main VCPU), which it then shares
//! on the same CPU; so a process's address space can be active on several CPUs at once (hal
//! shoots down other CPUs' TLB entries when it unmaps or reduces rights).
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use hal::mm::{AddressSpace, PAGE_SIZE, UserAccess, UserMemError};
use hal::println;
use hal::sync::IrqLock;

use crate::sched::{self, Tid};
use crate::sync::Semaphore;

pub type Pid = u32;

/// The wait status (as `wait4` reports it) of a process that ended with `exit(code)`.
pub fn exited(code: u64) -> i32 {
    ((code & 0xff) << 8) as i32
}

/// The wait status of a process ended by signal `sig` (no core dumps are written, so the
/// core-dump bit is never set).
pub fn killed_by(sig: u32) -> i32 {
    (sig & 0x7f) as i32
}

/// Top of the initial user stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Default RLIMIT_STACK (Linux's): the main thread's stack grows on demand up to it.
pub const DEFAULT_STACK_LIMIT: u64 = 8 << 20;
/// Largest RLIMIT_STACK (the main stack's area must stay above `memory::MMAP_TOP`).
pub const MAX_STACK_LIMIT: u64 = 1 << 30;
/// Pages of the main stack made at exec (arguments, environment, the first frames).
const STACK_EAGER_PAGES: u64 = 16;

pub use crate::memory::Mem;

pub struct Process {
    pub pid: Pid,
    pub name: IrqLock<String>,
    /// Open files (fds 0..2 are the console).
    pub files: IrqLock<crate::fs::FdTable>,
    pub parent: Pid,
    pub mem: IrqLock<Mem>,
    pub threads: IrqLock<Vec<Tid>>,
    /// Its wait status once it ends ([`exited`], [`killed_by`]).
    pub exit_code: AtomicI32,
    pub exited: Semaphore,
    /// Marked for termination (`kill`, `exit_group`): its threads die at their next kernel
    /// entry or exit.
    pub terminal: core::sync::atomic::AtomicBool,
    /// Set once the last thread is gone (`exited` has been raised).
    pub dead: core::sync::atomic::AtomicBool,
    /// Children not yet waited for, and a semaphore raised when one of them ends.
    pub children: IrqLock<Vec<Arc<Process>>>,
    pub child_exit: Semaphore,
    /// Per thread: the user address to clear and futex-wake when it ends (CLONE_CHILD_CLEARTID,
    /// set_tid_address).
    pub clear_tid: IrqLock<BTreeMap<Tid, u64>>,
    /// Signal actions, masks, pending signals, the interval timer (`crate::signal`).
    pub sig: IrqLock<crate::signal::SigState>,
    /// Working directory (absolute, normalised; `/boot` for the programs the kernel starts).
    pub cwd: IrqLock<String>,
    /// The file mode creation mask.
    pub umask: AtomicU32,
    /// Its arguments, each NUL-terminated (/proc/<pid>/cmdline).
    pub cmdline: IrqLock<String>,
    /// Raised when it calls execve or ends: a vfork parent waits for it.
    pub vfork_done: Semaphore,
    /// RLIMIT_CORE as set (no core files are written whatever it is).
    pub core_limit: core::sync::atomic::AtomicU64,
    /// Per thread: the name prctl(PR_SET_NAME) gave it (`ps -t` shows it; execve forgets).
    pub comm: IrqLock<BTreeMap<Tid, String>>,
    /// CPU time of its threads that have ended, and of its children that have been waited
    /// for (getrusage, times).
    pub ended_cpu_ns: core::sync::atomic::AtomicU64,
    pub children_cpu_ns: core::sync::atomic::AtomicU64,
    /// Process group and session (setpgid, setsid; inherited by fork).
    pub pgid: AtomicU32,
    pub sid: AtomicU32,
    /// Per thread: its robust futex list head (set_robust_list).
    pub robust: IrqLock<BTreeMap<Tid, u64>>,
    /// Per thread: the Main VCPU `boomerang_stage` created for it, destroyed when it ends.
    pub stage_vcpus: IrqLock<BTreeMap<Tid, u32>>,
    /// Stopped by SIGSTOP & co., and what wait4 has yet to report (`crate::stop`).
    pub stop: IrqLock<crate::stop::StopState>,
    /// RLIMIT_DATA (anonymous memory it may be promised) and RLIMIT_STACK (its main stack's
    /// size from its next execve).
    pub data_limit: core::sync::atomic::AtomicU64,
    pub stack_limit: core::sync::atomic::AtomicU64,
}

static PROCS: IrqLock<BTreeMap<Pid, Arc<Process>>> = IrqLock::ranked(BTreeMap::new(), crate::locks::PROCS);
static BY_THREAD: IrqLock<BTreeMap<Tid, Arc<Process>>> = IrqLock::ranked(BTreeMap::new(), crate::locks::BY_THREAD);

/// Per PCPU: the threads [`current`] was last asked about there and their processes, by
/// thread id modulo 8 (threads that take turns on a CPU — a ping-pong, a pipe's two ends —
/// keep their own slots), so a thread that makes system calls finds its process without
/// `BY_THREAD`'s lock and map search (every system call asks, some twice). Thread ids are never
/// reused and a thread's process never changes, so an entry is right for as long as its thread
/// is in `BY_THREAD`; removing a thread there ([`unregister`]) clears it from every CPU's slots
/// (no dead process kept alive).
const SLOTS: usize = 8;
type Slots = [Option<(Tid, Arc<Process>)>; SLOTS];
static CURRENT: [IrqLock<Slots>; hal::percpu::MAX_CPUS] = [const { IrqLock::new([const { None }; SLOTS]) }; hal::percpu::MAX_CPUS];

/// The process of the running thread, if it is a user thread.
pub fn current() -> Option<Arc<Process>> {
    let (cpu, me) = hal::cpu::without_interrupts(|| (hal::percpu::cpu_index(), sched::current()));
    // A move to another CPU in between only makes this a lookup in the other CPU's slots,
    // which are keyed by thread: never a wrong answer.
    let slot = me as usize % SLOTS;
    if let Some((t, p)) = &CURRENT[cpu].lock()[slot]
        && *t == me
    {
        return Some(p.clone());
    }
    let p = BY_THREAD.lock().get(&me).cloned()?;
    CURRENT[cpu].lock()[slot] = Some((me, p.clone()));
    Some(p)
}

/// Removes thread `tid` from `BY_THREAD` and from every CPU's [`current`] slot.
fn unregister(tid: Tid) {
    BY_THREAD.lock().remove(&tid);
    for cpu in &CURRENT[..hal::percpu::online().max(1)] {
        let mut slots = cpu.lock();
        let s = &mut slots[tid as usize % SLOTS];
        if s.as_ref().is_some_and(|(t, _)| *t == tid) {
            *s = None;
        }
    }
}

pub fn get(pid: Pid) -> Option<Arc<Process>> {
    PROCS.lock().get(&pid).cloned()
}

/// Every live process.
pub fn all() -> Vec<Arc<Process>> {
    PROCS.lock().values().cloned().collect()
}

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    NotFound,
    NoExec(elf::Error),
    NoMemory,
    Sched(sched::SchedError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::NotFound => f.write_str("no such program in /boot"),
            SpawnError::NoExec(e) => write!(f, "not an executable Quest can run (ENOEXEC): {e}"),
            SpawnError::NoMemory => f.write_str("out of memory (ENOMEM)"),
            SpawnError::Sched(e) => write!(f, "{e}"),
        }
    }
}

impl From<UserMemError> for SpawnError {
    fn from(_: UserMemError) -> Self {
        SpawnError::NoMemory
    }
}

fn access(flags: elf::Flags) -> UserAccess {
    UserAccess::readable(flags.writable(), flags.executable())
}

/// Loads `image` into a new address space; returns it with the entry point and initial stack
/// pointer.
fn load(image: &[u8], argv: &[&[u8]], envp: &[&[u8]], stack_limit: u64) -> Result<(Mem, u64, u64), SpawnError> {
    let opts = elf::LoadOptions { require_phdr: true, ..elf::LoadOptions::default() };
    let plan = elf::load_plan(image, &opts).map_err(SpawnError::NoExec)?;
    let mut space = AddressSpace::new()?;
    for run in plan.page_runs() {
        let mut va = run.start;
        while va < run.end {
            space.map_zeroed(va, access(run.flags))?;
            va += PAGE_SIZE;
        }
    }
    for seg in &plan.segments {
        for c in seg.copy_chunks() {
            let bytes = image.get(c.file_offset as usize..c.file_offset as usize + c.len as usize).ok_or(SpawnError::NoMemory)?;
            space.fill(c.vaddr, bytes)?;
        }
    }
    for i in 0..STACK_EAGER_PAGES {
        space.map_zeroed(STACK_TOP - (i + 1) * PAGE_SIZE, UserAccess::readable(true, false))?;
    }
    let mut random = [0u8; 16];
    let tsc = hal::cpu::rdtsc();
    random[..8].copy_from_slice(&tsc.to_le_bytes());
    random[8..].copy_from_slice(&tsc.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    let auxv = elf::standard_auxv(&plan, &elf::AuxvParams::default());
    let (bytes, rsp) = elf::build_initial_stack(STACK_TOP, argv, envp, &auxv, random, b"x86_64")
        .map_err(SpawnError::NoExec)?;
    space.copy_to_user(STACK_TOP - bytes.len() as u64, &bytes)?;
    let stack_bottom = STACK_TOP - stack_limit.clamp(STACK_EAGER_PAGES * PAGE_SIZE, MAX_STACK_LIMIT).next_multiple_of(PAGE_SIZE);
    Ok((Mem::new(space, plan.brk_start, stack_bottom, STACK_TOP), plan.entry, rsp))
}

/// The environment of the programs the kernel starts (user_init): execve passes its caller's.
const DEFAULT_ENV: [&[u8]; 3] = [b"PATH=/boot:/bin", b"TERM=vt100", b"HOME=/"];

/// argv as /proc/<pid>/cmdline shows it (each argument NUL-terminated).
fn cmdline<A: AsRef<[u8]>>(argv: &[A]) -> String {
    let mut s = String::new();
    for a in argv {
        s.push_str(&String::from_utf8_lossy(a.as_ref()));
        s.push('\0');
    }
    s
}

/// Starts `/boot/<name>` with `args` (argv[0] is the path) on the best-effort VCPU of the
/// least-loaded CPU.
pub fn spawn(fs: &crate::initrd::BootFs, name: &str, args: &[&str], parent: Pid) -> Result<Arc<Process>, SpawnError> {
    let image = fs.read(name).ok_or(SpawnError::NotFound)?;
    let path = alloc::format!("/boot/{}", name.strip_prefix("/boot/").unwrap_or(name));
    let mut argv: Vec<&[u8]> = Vec::new();
    argv.push(path.as_bytes());
    argv.extend(args.iter().map(|a| a.as_bytes()));
    let (mem, entry, rsp) = load(image, &argv, &DEFAULT_ENV, DEFAULT_STACK_LIMIT)?;
    let root = mem.space.root();
    let p = new_process(&path, parent, mem);
    *p.cmdline.lock() = cmdline(&argv);
    let pid = p.pid;
    PROCS.lock().insert(pid, p.clone());
    let cpu = sched::smp::place(&sched::smp::all_cpus());
    crate::signal::thread_added(&p, pid, None);
    // Registered before the thread exists: it may run (and even exit) at once.
    p.threads.lock().push(pid);
    BY_THREAD.lock().insert(pid, p.clone());
    let attrs = (sched::smp::all_cpus(), sched::smp::Policy::default());
    if let Err(e) = sched::spawn_user(pid, &path, (cpu, None), root, hal::user::initial_frame(entry, rsp), 0, attrs) {
        unregister(pid);
        PROCS.lock().remove(&pid);
        return Err(SpawnError::Sched(e));
    }
    Ok(p)
}

/// Ends the running thread's whole process with `code` (exit_group, a fatal fault, kill):
/// the other threads are woken so they die at once.
pub fn exit_current(code: i32) -> ! {
    if let Some(p) = current() {
        if !p.terminal.swap(true, Ordering::AcqRel) {
            p.exit_code.store(code, Ordering::Relaxed);
        }
        let me = sched::current();
        let others: Vec<Tid> = p.threads.lock().iter().copied().filter(|&t| t != me).collect();
        for t in others {
            let _ = sched::interrupt(t);
        }
    }
    exit_thread()
}

/// Ends the running thread (exit); the process ends with its last thread.
pub fn exit_thread() -> ! {
    if let Some(p) = current() {
        let me = sched::current();
        // Robust futexes the thread still holds: marked FUTEX_OWNER_DIED, a waiter woken.
        if let Some(head) = p.robust.lock().remove(&me) {
            crate::futex::release_robust(&p, me, head);
        }
        // CLONE_CHILD_CLEARTID: clear the word and wake a joiner.
        if let Some(addr) = p.clear_tid.lock().remove(&me) {
            let ok = crate::syscall::UserPtr::<u32>::new(addr).write(&p, &0).is_ok();
            if ok {
                crate::futex::wake(&p, addr, 1, false);
            }
        }
        unregister(me);
        crate::signal::thread_removed(&p, me);
        // A Boomerang stage's reservation ends with its thread.
        let stage = p.stage_vcpus.lock().remove(&me);
        if let Some(v) = stage {
            let _ = crate::vcpu::destroy(v, true);
        }
        p.ended_cpu_ns.fetch_add(sched::runtime_ns(me).unwrap_or(0), Ordering::Relaxed);
        p.comm.lock().remove(&me);
        let last = {
            let mut t = p.threads.lock();
            t.retain(|&x| x != me);
            t.is_empty()
        };
        sched::leave_address_space();
        if last {
            PROCS.lock().remove(&p.pid);
            // Free the memory and close the files now (pipe readers see end of file); the
            // Process record stays until its parent waits.
            let _ = core::mem::replace(&mut p.mem.lock().space, AddressSpace::new_empty());
            let files = core::mem::replace(&mut *p.files.lock(), crate::fs::FdTable::empty());
            drop(files);
            p.mem.lock().objects.clear();
            crate::ipc::process_exit(&p);
            p.dead.store(true, Ordering::Release);
            p.exited.up();
            p.vfork_done.up();
            if let Some(parent) = get(p.parent) {
                crate::signal::child_exited(&parent, p.pid, p.exit_code.load(Ordering::Relaxed));
                parent.child_exit.up();
            }
        }
    }
    sched::exit()
}

fn new_process(name: &str, parent: Pid, mem: Mem) -> Arc<Process> {
    // A process's id is its main thread's id (like Linux's thread-group id).
    let pid = sched::reserve_tid();
    Arc::new(Process {
        pid,
        name: IrqLock::new(String::from(name)),
        files: IrqLock::new(crate::fs::FdTable::new()),
        parent,
        mem: IrqLock::new(mem),
        threads: IrqLock::new(Vec::new()),
        exit_code: AtomicI32::new(0),
        exited: Semaphore::new(0),
        terminal: core::sync::atomic::AtomicBool::new(false),
        dead: core::sync::atomic::AtomicBool::new(false),
        children: IrqLock::new(Vec::new()),
        child_exit: Semaphore::new(0),
        clear_tid: IrqLock::new(BTreeMap::new()),
        sig: IrqLock::ranked(crate::signal::SigState::new(), crate::locks::SIGNALS),
        cwd: IrqLock::new(String::from("/boot")),
        umask: AtomicU32::new(0o022),
        cmdline: IrqLock::new(String::new()),
        vfork_done: Semaphore::new(0),
        core_limit: core::sync::atomic::AtomicU64::new(0),
        comm: IrqLock::new(BTreeMap::new()),
        ended_cpu_ns: core::sync::atomic::AtomicU64::new(0),
        children_cpu_ns: core::sync::atomic::AtomicU64::new(0),
        robust: IrqLock::new(BTreeMap::new()),
        stage_vcpus: IrqLock::new(BTreeMap::new()),
        stop: IrqLock::new(Default::default()),
        pgid: AtomicU32::new(pid),
        sid: AtomicU32::new(pid),
        data_limit: core::sync::atomic::AtomicU64::new(u64::MAX),
        stack_limit: core::sync::atomic::AtomicU64::new(DEFAULT_STACK_LIMIT),
    })
}

/// fork: a copy of the calling process whose thread returns 0 from the same system call (on
/// user stack `stack` if not 0). `vfork`: the caller then waits until the child calls execve or
/// ends (vfork and clone(CLONE_VM | CLONE_VFORK), what posix_spawn uses, are done as a fork:
/// the child gets a copy of the address space, not the parent's — a program may not rely on
/// the difference, as POSIX leaves writes by a vfork child undefined).
pub fn fork(p: &Arc<Process>, frame: &hal::trap::TrapFrame, stack: u64, vfork: bool) -> Result<Pid, u32> {
    use linux_raw_sys::errno::{EAGAIN, ENOMEM};
    // fork copies no pages (copy-on-write), so a fork bomb reaches the kernel heap's end before
    // the frames': refuse while little of the heap is left, as Linux refuses over its limits.
    if at_thread_limit() {
        return Err(EAGAIN);
    }
    let mem = {
        let mut m = p.mem.lock();
        let space = m.space.duplicate();
        // The parent's writable pages turned copy-on-write: its threads on other CPUs stop
        // writing through old entries before the child exists (waited for without the lock).
        let t = m.space.take_flush();
        let mem = space.map(|s| m.fork(s));
        drop(m);
        t.wait();
        mem.map_err(|_| ENOMEM)?
    };
    let root = mem.space.root();
    let pname = p.name.lock().clone();
    let child = new_process(&pname, p.pid, mem);
    *child.files.lock() = p.files.lock().clone();
    let sig = p.sig.lock().forked(sched::current(), child.pid);
    *child.sig.lock() = sig;
    *child.cwd.lock() = p.cwd.lock().clone();
    child.umask.store(p.umask.load(Ordering::Relaxed), Ordering::Relaxed);
    child.pgid.store(p.pgid.load(Ordering::Relaxed), Ordering::Relaxed);
    child.sid.store(p.sid.load(Ordering::Relaxed), Ordering::Relaxed);
    child.data_limit.store(p.data_limit.load(Ordering::Relaxed), Ordering::Relaxed);
    child.stack_limit.store(p.stack_limit.load(Ordering::Relaxed), Ordering::Relaxed);
    child.core_limit.store(p.core_limit.load(Ordering::Relaxed), Ordering::Relaxed);
    *child.cmdline.lock() = p.cmdline.lock().clone();
    let mut f = *frame;
    f.rax = 0;
    if stack != 0 {
        f.rsp = stack;
    }
    let fs = hal::user::fs_base();
    let (at, attrs) = child_placement();
    PROCS.lock().insert(child.pid, child.clone());
    child.threads.lock().push(child.pid);
    BY_THREAD.lock().insert(child.pid, child.clone());
    p.children.lock().push(child.clone());
    if sched::spawn_user(child.pid, &pname, at, root, f, fs, attrs).is_err()
    {
        unregister(child.pid);
        PROCS.lock().remove(&child.pid);
        p.children.lock().retain(|c| c.pid != child.pid);
        return Err(EAGAIN);
    }
    if vfork {
        let _ = child.vfork_done.down_interruptible();
    }
    Ok(child.pid)
}

/// Where the calling thread's new thread or child process goes: beside it on its VCPU if that
/// is a reservation (a Main VCPU, which a SCHED_DEADLINE thread never passes on: then the
/// least-loaded CPU too), else the best-effort VCPU of the least-loaded CPU of its affinity;
/// with its affinity and (inherited) policy.
fn child_placement() -> ((usize, Option<vcpu_sched::VcpuId>), (vcpu_sched::placement::CpuMask, sched::smp::Policy)) {
    let me = sched::current();
    let mask = sched::smp::affinity_of(me).unwrap_or_else(sched::smp::all_cpus);
    let policy = sched::smp::policy_of(me).unwrap_or_default();
    let (cpu, vcpu) = sched::current_placement();
    let be = sched::best_effort_vcpu(cpu).ok();
    let at = if vcpu.is_some() && vcpu != be && policy.policy != 6 { (cpu, vcpu) } else { (sched::smp::place(&mask), None) };
    (at, (mask, policy.inherited()))
}

/// Whether a new thread or process must be refused (EAGAIN): the machine's thread limit is
/// reached — Linux's default, one thread per 8 kernel stacks' worth (8 x 16 KiB) of RAM, at
/// least 20 — or less than 1/32 of the kernel heap (at least 256 KiB) is left. Since fork
/// copies no pages, a fork bomb would otherwise reach the kernel heap's end before the
/// frames'.
fn at_thread_limit() -> bool {
    let (_, total) = hal::mm::frame_counts();
    let max_threads = (total / 32).max(20);
    if BY_THREAD.lock().len() >= max_threads {
        return true;
    }
    let (used, free) = hal::mm::heap_usage();
    free < ((used + free) / 32).max(256 * 1024)
}

/// clone with CLONE_VM|CLONE_THREAD: a new thread of `p` on the user stack `stack`.
pub fn clone_thread(p: &Arc<Process>, frame: &hal::trap::TrapFrame, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> Result<Tid, u32> {
    use linux_raw_sys::general::{CLONE_CHILD_CLEARTID, CLONE_PARENT_SETTID, CLONE_SETTLS};
    if at_thread_limit() {
        return Err(linux_raw_sys::errno::EAGAIN);
    }
    let mut f = *frame;
    f.rax = 0;
    if stack != 0 {
        f.rsp = stack;
    }
    let fs = if flags & u64::from(CLONE_SETTLS) != 0 { tls } else { hal::user::fs_base() };
    let root = p.mem.lock().space.root();
    let (at, attrs) = child_placement();
    // Registered before it exists: it may run (and even exit) at once.
    let tid = sched::reserve_tid();
    crate::signal::thread_added(p, tid, Some(sched::current()));
    p.threads.lock().push(tid);
    BY_THREAD.lock().insert(tid, p.clone());
    if flags & u64::from(CLONE_CHILD_CLEARTID) != 0 {
        p.clear_tid.lock().insert(tid, ctid);
    }
    if flags & u64::from(CLONE_PARENT_SETTID) != 0 {
        let _ = crate::syscall::UserPtr::<u32>::new(ptid).write(p, &tid);
    }
    let pname = p.name.lock().clone();
    if sched::spawn_user(tid, &pname, at, root, f, fs, attrs).is_err()
    {
        p.threads.lock().retain(|&t| t != tid);
        crate::signal::thread_removed(p, tid);
        unregister(tid);
        p.clear_tid.lock().remove(&tid);
        return Err(linux_raw_sys::errno::EAGAIN);
    }
    Ok(tid)
}

/// wait4: waits for child `pid` (or any child, pid = -1) to end; returns (pid, exit code).
pub fn wait_child(p: &Arc<Process>, pid: i64, nohang: bool, untraced: bool, continued: bool) -> Result<Option<(Pid, i32)>, u32> {
    let mut interrupted = false;
    loop {
        {
            let mut ch = p.children.lock();
            if ch.is_empty() || (pid > 0 && !ch.iter().any(|c| i64::from(c.pid) == pid)) {
                return Err(linux_raw_sys::errno::ECHILD);
            }
            if let Some(i) = ch.iter().position(|c| (pid <= 0 || i64::from(c.pid) == pid) && c.dead.load(Ordering::Acquire)) {
                let c = ch.remove(i);
                let cpu = c.ended_cpu_ns.load(Ordering::Relaxed) + c.children_cpu_ns.load(Ordering::Relaxed);
                p.children_cpu_ns.fetch_add(cpu, Ordering::Relaxed);
                return Ok(Some((c.pid, c.exit_code.load(Ordering::Relaxed))));
            }
            if untraced || continued {
                for c in ch.iter().filter(|c| pid <= 0 || i64::from(c.pid) == pid) {
                    if let Some(st) = crate::stop::take_report(c, untraced, continued) {
                        return Ok(Some((c.pid, st)));
                    }
                }
            }
        }
        if interrupted {
            // A signal (often the SIGCHLD of the child that just ended) interrupted the wait:
            // the child found above is returned first, as Linux does; otherwise EINTR/restart.
            return Err(crate::signal::ERESTARTSYS);
        }
        if nohang {
            return Ok(None);
        }
        if pid > 0 {
            FOREGROUND.store(pid as u32, Ordering::Relaxed);
        }
        let r = p.child_exit.down_interruptible();
        if pid > 0 {
            let _ = FOREGROUND.compare_exchange(pid as u32, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        interrupted = r.is_err();
    }
}

/// The exception hook: a fault in user mode kills the task with a report; faults in the
/// kernel are left to hal's fault report.
pub fn on_exception(frame: &mut hal::trap::TrapFrame) -> bool {
    if !frame.from_user() {
        return false;
    }
    let (name, _) = hal::trap::EXCEPTION_NAMES.get(frame.vector as usize).copied().unwrap_or(("Unknown", "?"));
    let cr2 = if frame.vector == hal::trap::VECTOR_PAGE_FAULT { x86_64_cr2() } else { 0 };
    let addr = if frame.vector == hal::trap::VECTOR_PAGE_FAULT { cr2 } else { frame.rip };
    if frame.vector == hal::trap::VECTOR_PAGE_FAULT
        && let Some(p) = current()
    {
        match crate::memory::fault_in(&p, cr2, frame.error_code) {
            crate::memory::Fault::Mapped => return true,
            crate::memory::Fault::NotOurs => {}
            crate::memory::Fault::NoMemory => {
                let name = p.name.lock().clone();
                println!("task {} ({name}) killed: out of memory at {cr2:#x} rip {:#x}", p.pid, frame.rip);
                drop(name);
                drop(p);
                hal::cpu::enable_interrupts();
                exit_current(killed_by(9));
            }
        }
    }
    let info = crate::signal::fault_info(frame.vector, frame.error_code, frame.rip, cr2);
    // A handler for the signal (SIGSEGV, SIGFPE, ...) that is not blocked runs instead.
    if crate::signal::deliver_fault(frame, info, cr2) {
        return true;
    }
    {
        // In a block: what is still owned when the thread dies is never freed.
        let (pid, pname) = current().map(|p| (p.pid, p.name.lock().clone())).unwrap_or((0, String::from("?")));
        let bottom = current().map_or(STACK_TOP, |p| p.mem.lock().stack_bottom);
        report_fault(frame, name, addr, pid, &pname, bottom);
    }
    hal::cpu::enable_interrupts();
    exit_current(killed_by(info.signo))
}

fn report_fault(frame: &hal::trap::TrapFrame, name: &str, addr: u64, pid: Pid, pname: &str, stack_bottom: u64) {
    let what = if frame.vector == hal::trap::VECTOR_PAGE_FAULT && is_stack_overflow(addr, frame.rsp, stack_bottom) {
        "stack overflow: "
    } else {
        ""
    };
    println!(
        "task {pid} ({pname}) killed: {what}{} at {addr:#x} rip {:#x} rsp {:#x}",
        name.to_lowercase(),
        frame.rip,
        frame.rsp
    );
}

/// How far below the main thread's stack a fault still counts as running off its end (nothing
/// else is ever mapped there: mmap regions start far below).
const STACK_GUARD_BYTES: u64 = 64 << 20;

/// Whether a page fault at `addr` with the stack pointer at `rsp` is a stack overflow: a fault
/// in the unmapped zone below the main thread's stack, or (any thread's stack, e.g. a pthread
/// stack with its guard page) one just below or in the frame being built at `rsp` — a push or
/// call writes at `rsp - 8`, a large frame is written above the lowered `rsp`.
fn is_stack_overflow(addr: u64, rsp: u64, bottom: u64) -> bool {
    let below_main = addr < bottom && addr >= bottom - STACK_GUARD_BYTES;
    let at_rsp = addr >= rsp.wrapping_sub(PAGE_SIZE) && addr < rsp.saturating_add(PAGE_SIZE) && rsp.wrapping_sub(PAGE_SIZE) < rsp;
    below_main || at_rsp
}

fn x86_64_cr2() -> u64 {
    hal::cpu::cr2()
}

/// execve: replaces the calling process's program. On success returns the new program's
/// initial user frame, which the caller returns to (the thread continues in the new program);
/// on failure the errno, and the old program goes on.
pub fn exec(p: &Arc<Process>, image: &[u8], path: &str, argv: &[alloc::vec::Vec<u8>], envp: &[alloc::vec::Vec<u8>]) -> Result<hal::trap::TrapFrame, u32> {
    use linux_raw_sys::errno::{ENOEXEC, ENOMEM};
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let env: Vec<&[u8]> = envp.iter().map(|a| a.as_slice()).collect();
    let (mem, entry, rsp) = match load(image, &args, &env, p.stack_limit.load(Ordering::Relaxed)) {
        Ok(x) => x,
        Err(SpawnError::NoExec(_)) => return Err(ENOEXEC),
        Err(_) => return Err(ENOMEM),
    };
    let root = mem.space.root();
    sched::set_current_root(root);
    let old = core::mem::replace(&mut *p.mem.lock(), mem);
    drop(old); // the old address space is no longer active on this CPU
    *p.name.lock() = String::from(path);
    p.comm.lock().clear();
    *p.cmdline.lock() = cmdline(argv);
    p.files.lock().exec();
    p.vfork_done.up();
    sched::set_current_name(&p.name.lock());
    crate::signal::exec_reset(p, sched::current());
    hal::user::set_fs_base(0);
    Ok(hal::user::initial_frame(entry, rsp))
}

/// kill: terminates process `pid` (SIGKILL, SIGTERM and SIGINT all end it: default actions).
pub fn kill(pid: Pid, code: i32) -> Result<(), u32> {
    let p = get(pid).ok_or(linux_raw_sys::errno::ESRCH)?;
    mark_terminal(&p, code);
    Ok(())
}

/// Marks a process for termination and wakes its threads so they die now (a running one dies
/// at its next kernel entry).
pub fn mark_terminal(p: &Process, code: i32) {
    if !p.terminal.swap(true, Ordering::AcqRel) {
        p.exit_code.store(code, Ordering::Relaxed);
    }
    let ts: Vec<Tid> = p.threads.lock().clone();
    for t in ts {
        let _ = sched::interrupt(t);
    }
}

/// The process a thread belongs to.
pub fn of_thread(tid: Tid) -> Option<Arc<Process>> {
    BY_THREAD.lock().get(&tid).cloned()
}

/// The process the console's ctrl-c ends: the one a parent is waiting for in the foreground.
pub static FOREGROUND: AtomicU32 = AtomicU32::new(0);
