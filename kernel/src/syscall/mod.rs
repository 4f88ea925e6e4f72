//! System calls: the Linux x86-64 subset (numbers and structures from `linux-raw-sys`, the one
//! ABI source) and Quest's own calls (numbers from `crates/quest-abi`).
//!
//! Each call is resolved once into a [`Cx`] (the calling thread and its process: one look-up
//! per call, not one per use) and its pointer arguments into typed user memory
//! ([`user`]: `UserPtr<T>`, `UserSlice`, `UserSliceMut`, `UserCStr`), whose reads and writes
//! fail with `EFAULT`, never a kernel fault. The handlers live by subsystem: [`files`],
//! [`memory`], [`processes`], [`accounting`], [`can`], [`time`], [`synchronisation`] and
//! [`quest`]; epoll, eventfd and timerfd are in `crate::epoll`, `crate::eventfd` and
//! `crate::timerfd`. Unimplemented calls return `ENOSYS` and are logged once each.
#![allow(non_upper_case_globals)] // linux-raw-sys's __NR_* constants used as match patterns
use alloc::collections::BTreeSet;
use alloc::sync::Arc;

use hal::sync::IrqLock;
use hal::trap::TrapFrame;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use crate::process::{self, Process};
use crate::signal;
use crate::sched::{self, Tid};

mod accounting;
mod can;
mod files;
mod memory;
mod processes;
mod quest;
mod scheduling;
mod sockets;
mod synchronisation;
mod time;
pub mod user;

pub use time::read_timespec;
pub use user::{Errno, UserCStr, UserPtr, UserSlice, UserSliceMut};

/// `AT_FDCWD` as a call argument.
const FDCWD: u64 = AT_FDCWD as u32 as u64;

/// A system call's result: the value for `rax`, or an errno.
pub type SysResult = Result<u64, Errno>;

/// The context of one system call, resolved once on entry.
pub struct Cx {
    /// The calling process.
    pub proc: Arc<Process>,
    /// The calling thread.
    pub tid: Tid,
}

impl Cx {
    /// The calling process (what most handlers need).
    pub fn p(&self) -> &Process {
        &self.proc
    }
}

/// The six argument registers of a call, in the Linux order (rdi, rsi, rdx, r10, r8, r9).
#[derive(Clone, Copy)]
pub struct Args(pub [u64; 6]);

impl Args {
    fn of(f: &TrapFrame) -> Args {
        Args([f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9])
    }
    /// Argument `i` as a number.
    pub fn n(&self, i: usize) -> u64 {
        self.0[i]
    }
    /// Argument `i` as a pointer to one `T`.
    pub fn ptr<T: hal::user::Pod>(&self, i: usize) -> UserPtr<T> {
        UserPtr::new(self.0[i])
    }
    /// Argument `i` as a string pointer.
    pub fn cstr(&self, i: usize) -> UserCStr {
        UserCStr::new(self.0[i])
    }
    /// Arguments `i` (address) and `j` (length) as bytes the kernel reads.
    pub fn slice(&self, i: usize, j: usize) -> UserSlice {
        UserSlice::new(self.0[i], self.0[j])
    }
    /// Arguments `i` (address) and `j` (length) as bytes the kernel writes.
    pub fn slice_mut(&self, i: usize, j: usize) -> UserSliceMut {
        UserSliceMut::new(self.0[i], self.0[j])
    }
}

static LOGGED: IrqLock<BTreeSet<u64>> = IrqLock::ranked(BTreeSet::new(), crate::locks::LOGGED);

fn name(nr: u64) -> &'static str {
    quest_abi::linux_syscall_name(nr).unwrap_or("?")
}

fn dispatch(cx: &Cx, f: &TrapFrame) -> SysResult {
    let a = Args::of(f);
    if f.rax >> 32 != 0 {
        return Err(ENOSYS);
    }
    let nr = f.rax as u32;
    match nr {
        // Files, the console, pipes, the file tree.
        __NR_read => files::read(cx, a.n(0), a.slice_mut(1, 2)),
        __NR_write => files::write(cx, a.n(0), a.slice(1, 2)),
        __NR_writev => files::writev(cx, a.n(0), a.ptr(1), a.n(2)),
        __NR_readv => files::readv(cx, a.n(0), a.ptr(1), a.n(2)),
        __NR_pread64 => files::pread(cx, a.n(0), a.slice_mut(1, 2), a.n(3)),
        __NR_pwrite64 => files::pwrite(cx, a.n(0), a.slice(1, 2), a.n(3)),
        __NR_sendfile => files::sendfile(cx, a.n(0), a.n(1), a.ptr(2), a.n(3)),
        __NR_open => files::openat(cx, FDCWD, a.cstr(0), a.n(1), a.n(2)),
        __NR_creat => files::openat(cx, FDCWD, a.cstr(0), u64::from(O_CREAT | O_WRONLY | O_TRUNC), a.n(1)),
        __NR_openat => files::openat(cx, a.n(0), a.cstr(1), a.n(2), a.n(3)),
        __NR_close => files::close(cx, a.n(0)),
        __NR_lseek => files::lseek(cx, a.n(0), a.n(1), a.n(2)),
        __NR_fstat => files::fstat(cx, a.n(0), a.ptr(1)),
        __NR_stat => files::stat(cx, a.cstr(0), a.ptr(1), true),
        __NR_lstat => files::stat(cx, a.cstr(0), a.ptr(1), false),
        __NR_newfstatat => files::newfstatat(cx, a.n(0), a.cstr(1), a.ptr(2), a.n(3)),
        __NR_statx => files::statx(cx, a.n(0), a.cstr(1), a.n(2), a.ptr(4)),
        __NR_dup => files::dup(cx, a.n(0)),
        __NR_dup2 => files::dup3(cx, a.n(0), a.n(1), None),
        __NR_dup3 => files::dup3(cx, a.n(0), a.n(1), Some(a.n(2))),
        __NR_fcntl => files::fcntl(cx, a.n(0), a.n(1), a.n(2)),
        __NR_getcwd => files::getcwd(cx, a.slice_mut(0, 1)),
        __NR_chdir => files::chdir(cx, a.cstr(0)),
        __NR_fchdir => files::fchdir(cx, a.n(0)),
        __NR_sync => Ok(0),
        __NR_fsync | __NR_fdatasync | __NR_syncfs => files::fsync(cx, a.n(0)),
        __NR_getdents64 => files::getdents64(cx, a.n(0), a.slice_mut(1, 2)),
        __NR_pipe => files::pipe(cx, a.ptr(0), 0),
        __NR_pipe2 => files::pipe(cx, a.ptr(0), a.n(1)),
        __NR_ioctl => files::ioctl(cx, a.n(0), a.n(1), a.n(2)),
        __NR_mkdir => files::mkdirat(cx, FDCWD, a.cstr(0), a.n(1)),
        __NR_mkdirat => files::mkdirat(cx, a.n(0), a.cstr(1), a.n(2)),
        __NR_rmdir => files::unlinkat(cx, FDCWD, a.cstr(0), u64::from(AT_REMOVEDIR)),
        __NR_unlink => files::unlinkat(cx, FDCWD, a.cstr(0), 0),
        __NR_unlinkat => files::unlinkat(cx, a.n(0), a.cstr(1), a.n(2)),
        __NR_rename => files::renameat(cx, FDCWD, a.cstr(0), FDCWD, a.cstr(1), 0),
        __NR_renameat => files::renameat(cx, a.n(0), a.cstr(1), a.n(2), a.cstr(3), 0),
        __NR_renameat2 => files::renameat(cx, a.n(0), a.cstr(1), a.n(2), a.cstr(3), a.n(4)),
        __NR_link => files::linkat(cx, FDCWD, a.cstr(0), FDCWD, a.cstr(1), 0),
        __NR_linkat => files::linkat(cx, a.n(0), a.cstr(1), a.n(2), a.cstr(3), a.n(4)),
        __NR_symlink => files::symlinkat(cx, a.cstr(0), FDCWD, a.cstr(1)),
        __NR_symlinkat => files::symlinkat(cx, a.cstr(0), a.n(1), a.cstr(2)),
        __NR_readlink => files::readlinkat(cx, FDCWD, a.cstr(0), a.slice_mut(1, 2)),
        __NR_readlinkat => files::readlinkat(cx, a.n(0), a.cstr(1), a.slice_mut(2, 3)),
        __NR_access => files::faccessat(cx, FDCWD, a.cstr(0), a.n(1), 0),
        __NR_faccessat => files::faccessat(cx, a.n(0), a.cstr(1), a.n(2), 0),
        __NR_faccessat2 => files::faccessat(cx, a.n(0), a.cstr(1), a.n(2), a.n(3)),
        __NR_truncate => files::truncate(cx, a.cstr(0), a.n(1)),
        __NR_ftruncate => files::ftruncate(cx, a.n(0), a.n(1)),
        __NR_utimensat => files::utimensat(cx, a.n(0), a.cstr(1), a.ptr(2), a.n(3)),
        __NR_chmod => files::fchmodat(cx, FDCWD, a.cstr(0), a.n(1)),
        __NR_fchmodat => files::fchmodat(cx, a.n(0), a.cstr(1), a.n(2)),
        __NR_fchmod => files::fchmod(cx, a.n(0), a.n(1)),
        __NR_chown | __NR_lchown => files::chown(a.n(1), a.n(2)),
        __NR_fchown => cx.p().files.lock().get(a.n(0)).map(|_| ()).and_then(|_| files::chown(a.n(1), a.n(2))),
        __NR_fchownat => files::chown(a.n(2), a.n(3)),
        __NR_umask => files::umask(cx, a.n(0)),
        __NR_flock => files::flock(cx, a.n(0), a.n(1)),
        __NR_statfs => files::statfs(cx, a.cstr(0), a.ptr(1)),
        __NR_fstatfs => files::fstatfs(cx, a.n(0), a.ptr(1)),
        __NR_socket => sockets::socket(cx, a.n(0), a.n(1), a.n(2)),
        __NR_socketpair => sockets::socketpair(cx, a.n(0), a.n(1), a.n(2), a.ptr(3)),
        __NR_bind => sockets::bind(cx, a.n(0), a.n(1), a.n(2)),
        __NR_listen => sockets::listen(cx, a.n(0), a.n(1)),
        __NR_connect => sockets::connect(cx, a.n(0), a.n(1), a.n(2)),
        __NR_accept => sockets::accept4(cx, a.n(0), a.n(1), a.ptr(2), 0),
        __NR_accept4 => sockets::accept4(cx, a.n(0), a.n(1), a.ptr(2), a.n(3)),
        __NR_sendto => sockets::sendto(cx, a.n(0), a.slice(1, 2), a.n(3), a.n(4), a.n(5)),
        __NR_recvfrom => sockets::recvfrom(cx, a.n(0), a.slice_mut(1, 2), a.n(3), a.n(4), a.ptr(5)),
        __NR_sendmsg => sockets::sendmsg(cx, a.n(0), a.n(1), a.n(2)),
        __NR_recvmsg => sockets::recvmsg(cx, a.n(0), a.n(1), a.n(2)),
        __NR_shutdown => sockets::shutdown(cx, a.n(0), a.n(1)),
        __NR_getsockname => sockets::getsockname(cx, a.n(0), a.n(1), a.ptr(2), false),
        __NR_getpeername => sockets::getsockname(cx, a.n(0), a.n(1), a.ptr(2), true),
        __NR_getsockopt => sockets::getsockopt(cx, a.n(0), a.n(1), a.n(2), a.n(3), a.ptr(4)),
        __NR_setsockopt => sockets::setsockopt(cx, a.n(0), a.n(1), a.n(2)),
        __NR_poll => crate::poll::poll(cx, a.ptr(0), a.n(1), a.n(2)),
        __NR_ppoll => crate::poll::ppoll(cx, a.ptr(0), a.n(1), a.ptr(2), a.ptr(3), a.n(4)),
        __NR_select => crate::poll::select(cx, a.n(0), a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4)),
        __NR_pselect6 => crate::poll::pselect6(cx, a.n(0), a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4), a.ptr(5)),
        // Event loops (issue 25): epoll, eventfd, timerfd.
        __NR_epoll_create => if a.n(0) as i32 <= 0 { Err(EINVAL) } else { crate::epoll::create(cx, 0) },
        __NR_epoll_create1 => crate::epoll::create(cx, a.n(0)),
        __NR_epoll_ctl => crate::epoll::ctl(cx, a.n(0), a.n(1), a.n(2), a.ptr(3)),
        __NR_epoll_wait => crate::epoll::wait(cx, a.n(0), a.ptr(1), a.n(2), crate::epoll::deadline_ms(a.n(3))),
        __NR_epoll_pwait | __NR_epoll_pwait2 => {
            if a.n(4) != 0 && a.n(5) != 8 {
                return Err(EINVAL);
            }
            let deadline = if nr == __NR_epoll_pwait {
                crate::epoll::deadline_ms(a.n(3))
            } else if a.n(3) == 0 {
                None
            } else {
                Some(hal::time::now_ns().saturating_add(read_timespec(cx, a.ptr(3))?))
            };
            crate::poll::with_mask(cx, a.ptr(4), || crate::epoll::wait(cx, a.n(0), a.ptr(1), a.n(2), deadline))
        }
        __NR_eventfd => crate::eventfd::create(cx, a.n(0), 0),
        __NR_eventfd2 => crate::eventfd::create(cx, a.n(0), a.n(1)),
        __NR_timerfd_create => crate::timerfd::create(cx, a.n(0), a.n(1)),
        __NR_timerfd_settime => crate::timerfd::settime(cx, a.n(0), a.n(1), a.ptr(2), a.ptr(3)),
        __NR_timerfd_gettime => crate::timerfd::gettime(cx, a.n(0), a.ptr(1)),
        // Memory.
        __NR_brk => Ok(crate::memory::brk(cx.p(), a.n(0))),
        __NR_mmap => memory::mmap(cx, a.n(0), a.n(1), a.n(2), a.n(3), a.n(4), a.n(5)),
        __NR_munmap => crate::memory::munmap(cx.p(), a.n(0), a.n(1)).map(|_| 0),
        __NR_mprotect => crate::memory::mprotect(cx.p(), a.n(0), a.n(1), a.n(2)).map(|_| 0),
        __NR_mremap => crate::memory::mremap(cx.p(), a.n(0), a.n(1), a.n(2), a.n(3)),
        __NR_mlock => memory::mlock(cx, a.n(0), a.n(1), 0),
        __NR_mlock2 => memory::mlock(cx, a.n(0), a.n(1), a.n(2)),
        __NR_munlock => memory::munlock(cx, a.n(0), a.n(1)),
        __NR_mlockall => memory::mlockall(cx, a.n(0)),
        __NR_munlockall => Ok(0),
        __NR_msync => crate::memory::msync(cx.p(), a.n(0), a.n(1), a.n(2)).map(|_| 0),
        // Processes, threads and the system.
        // Handled in `handle` (execve replaces the caller's frame; the exits never return).
        __NR_execve | __NR_exit_group | __NR_exit => Err(ENOSYS),
        __NR_fork => process::fork(&cx.proc, f, 0, false).map(u64::from),
        __NR_vfork => process::fork(&cx.proc, f, 0, true).map(u64::from),
        __NR_clone => processes::clone(cx, f, a),
        __NR_wait4 => processes::wait4(cx, a.n(0) as i32 as i64, a.ptr(1), a.n(2)), // pid_t is an int
        // Signals (crate::signal).
        __NR_kill => signal::kill(cx, a.n(0) as i32 as i64, a.n(1)),
        __NR_tkill => signal::tgkill(cx, None, a.n(0), a.n(1)),
        __NR_tgkill => signal::tgkill(cx, Some(a.n(0)), a.n(1), a.n(2)),
        __NR_rt_sigqueueinfo => signal::sigqueueinfo(cx, a.n(0), None, a.n(1), a.ptr(2)),
        __NR_rt_tgsigqueueinfo => signal::sigqueueinfo(cx, a.n(0), Some(a.n(1)), a.n(2), a.ptr(3)),
        __NR_rt_sigaction => signal::rt_sigaction(cx, a.n(0), a.ptr(1), a.ptr(2), a.n(3)),
        __NR_rt_sigprocmask => signal::rt_sigprocmask(cx, a.n(0), a.ptr(1), a.ptr(2), a.n(3)),
        __NR_rt_sigpending => signal::rt_sigpending(cx, a.ptr(0), a.n(1)),
        __NR_rt_sigsuspend => signal::rt_sigsuspend(cx, a.ptr(0), a.n(1)),
        __NR_pause => signal::sigsuspend(cx, None),
        __NR_rt_sigtimedwait => signal::rt_sigtimedwait(cx, a.ptr(0), a.ptr(1), a.ptr(2), a.n(3)),
        __NR_sigaltstack => signal::sigaltstack(cx, f, a.ptr(0), a.ptr(1)),
        __NR_alarm => signal::alarm(cx, a.n(0) as u32 as u64),
        __NR_setitimer => signal::setitimer(cx, a.n(0), a.ptr(1), a.ptr(2)),
        __NR_getitimer => signal::getitimer(cx, a.n(0), a.ptr(1)),
        __NR_timer_create => signal::timer_create(cx, a.n(0), a.ptr(1), a.ptr(2)),
        __NR_timer_settime => signal::timer_settime(cx, a.n(0), a.n(1), a.ptr(2), a.ptr(3)),
        __NR_timer_gettime => signal::timer_gettime(cx, a.n(0), a.ptr(1)),
        __NR_timer_getoverrun => signal::timer_getoverrun(cx, a.n(0)),
        __NR_timer_delete => signal::timer_delete(cx, a.n(0)),
        __NR_prlimit64 => processes::prlimit64(cx, a.n(0), a.n(1), a.ptr(2), a.ptr(3)),
        __NR_time => processes::time(cx, a.ptr(0)),
        __NR_sysinfo => processes::sysinfo(cx, a.ptr(0)),
        __NR_getrusage => accounting::getrusage(cx, a.n(0), a.ptr(1)),
        __NR_times => accounting::times(cx, a.ptr(0)),
        __NR_prctl => processes::prctl(cx, a.n(0), a.n(1)),
        __NR_reboot => processes::reboot(a.n(0), a.n(1), a.n(2)),
        __NR_arch_prctl => processes::arch_prctl(cx, a.n(0), a.n(1)),
        __NR_set_tid_address => {
            cx.p().clear_tid.lock().insert(cx.tid, a.n(0));
            Ok(u64::from(cx.tid))
        }
        __NR_gettid => Ok(u64::from(cx.tid)),
        __NR_getpid => Ok(u64::from(cx.p().pid)),
        __NR_getppid => Ok(u64::from(cx.p().parent)),
        __NR_setpgid => processes::setpgid(cx, a.n(0), a.n(1)),
        __NR_getpgid => processes::getpgid(cx, a.n(0), false),
        __NR_getpgrp => processes::getpgid(cx, 0, false),
        __NR_getsid => processes::getpgid(cx, a.n(0), true),
        __NR_setsid => processes::setsid(cx),
        __NR_getuid | __NR_geteuid | __NR_getgid | __NR_getegid => Ok(0),
        __NR_set_robust_list => {
            if a.n(1) != 24 {
                return Err(EINVAL);
            }
            cx.p().robust.lock().insert(cx.tid, a.n(0));
            Ok(0)
        }
        __NR_get_robust_list => {
            let tid = if a.n(0) == 0 { cx.tid } else { a.n(0) as u32 };
            let q = process::of_thread(tid).ok_or(ESRCH)?;
            if q.pid != cx.p().pid {
                return Err(EPERM); // another process's list: not supported yet
            }
            let head = q.robust.lock().get(&tid).copied().unwrap_or(0);
            a.ptr::<u64>(1).write(cx.p(), &head)?;
            a.ptr::<u64>(2).write(cx.p(), &24)?;
            Ok(0)
        }
        __NR_uname => processes::uname(cx, a.ptr(0)),
        __NR_getrandom => processes::getrandom(cx, a.slice_mut(0, 1)),
        // Time.
        __NR_clock_gettime => time::clock_gettime(cx, a.n(0), a.ptr(1)),
        __NR_clock_getres => time::clock_getres(cx, a.n(0), a.ptr(1)),
        __NR_gettimeofday => time::gettimeofday(cx, a.ptr(0)),
        __NR_nanosleep => time::nanosleep(cx, a.ptr(0), a.ptr(1)),
        __NR_clock_nanosleep => time::clock_nanosleep(cx, a.n(1), a.ptr(2), a.ptr(3)),
        __NR_sched_yield => {
            sched::schedule();
            Ok(0)
        }
        // Synchronisation.
        __NR_futex => synchronisation::futex(cx, a),
        // Scheduling: affinity, getcpu, policies, priorities, SCHED_DEADLINE.
        nr if scheduling::handles(nr) => scheduling::call(cx, nr, a),
        __NR_shmget => crate::ipc::shm::shmget(cx, a.n(0), a.n(1), a.n(2)),
        __NR_shmat => crate::ipc::shm::shmat(cx, a.n(0), a.n(1), a.n(2)),
        __NR_shmdt => crate::ipc::shm::shmdt(cx, a.n(0)),
        __NR_shmctl => crate::ipc::shm::shmctl(cx, a.n(0), a.n(1), a.n(2)),
        __NR_semget => crate::ipc::sem::semget(cx, a.n(0), a.n(1), a.n(2)),
        __NR_semop => crate::ipc::sem::semtimedop(cx, a.n(0), a.n(1), a.n(2), None),
        __NR_semtimedop => {
            let ts = a.ptr::<linux_raw_sys::general::timespec>(3);
            let timeout = if ts.is_null() { None } else { Some(time::read_timespec(cx, ts)?) };
            crate::ipc::sem::semtimedop(cx, a.n(0), a.n(1), a.n(2), timeout)
        }
        __NR_semctl => crate::ipc::sem::semctl(cx, a.n(0), a.n(1), a.n(2), a.n(3)),
        __NR_msgget => crate::ipc::msg::msgget(cx, a.n(0), a.n(1)),
        __NR_msgsnd => crate::ipc::msg::msgsnd(cx, a.n(0), a.n(1), a.n(2), a.n(3)),
        __NR_msgrcv => crate::ipc::msg::msgrcv(cx, a.n(0), a.n(1), a.n(2), a.n(3), a.n(4)),
        __NR_msgctl => crate::ipc::msg::msgctl(cx, a.n(0), a.n(1), a.n(2)),
        // Quest's own calls.
        nr if quest_abi::nr::is_quest_range(f.rax) => quest::call(cx, nr, a),
        nr => {
            if LOGGED.lock().insert(u64::from(nr)) {
                let pname = cx.p().name.lock().clone();
                hal::println!("syscall {nr} ({}) not implemented: ENOSYS (first asked by process {} {pname})", name(u64::from(nr)), cx.p().pid);
            }
            Err(ENOSYS)
        }
    }
}

/// hal's system-call hook.
///
/// The calls that never return to the caller (exit, exit_group, a kill noticed on entry or
/// exit) and execve (which returns to a new program) are handled here, after every value this
/// function owns is dropped: a thread's kernel stack is abandoned when it dies, so an `Arc`
/// still held on it would never be released. Before, every exit leaked the whole `Process`
/// record (about 600 bytes of heap per program run) and every execve its arguments.
pub fn handle(frame: &mut TrapFrame) {
    hal::cpu::enable_interrupts();
    let Some(proc) = process::current() else {
        frame.rax = (-(ENOSYS as i64)) as u64;
        return;
    };
    let cx = Cx { proc, tid: sched::current() };
    if cx.p().terminal.load(core::sync::atomic::Ordering::Relaxed) {
        drop(cx);
        process::exit_current(process::killed_by(9));
    }
    let nr = frame.rax;
    let result = match u32::try_from(nr) {
        Ok(__NR_exit_group) => {
            drop(cx);
            process::exit_current(process::exited(frame.rdi))
        }
        Ok(__NR_exit) => {
            cx.p().exit_code.store(process::exited(frame.rdi), core::sync::atomic::Ordering::Relaxed);
            drop(cx);
            process::exit_thread()
        }
        Ok(__NR_rt_sigreturn) => {
            // The frame becomes the interrupted context (rax included): no result to store.
            if signal::rt_sigreturn(&cx, frame).is_err() {
                let name = cx.p().name.lock().clone();
                hal::println!("task {} ({name}) killed: bad signal frame at rsp {:#x} (rt_sigreturn)", cx.p().pid, frame.rsp);
                drop(name);
                drop(cx);
                process::exit_current(process::killed_by(signals::SIGSEGV));
            }
            drop(cx);
            signal::on_syscall_return(frame);
            return;
        }
        Ok(__NR_execve) => match processes::execve(&cx, UserCStr::new(frame.rdi), UserPtr::new(frame.rsi), UserPtr::new(frame.rdx)) {
            Ok(new) => {
                *frame = new;
                Ok(0)
            }
            Err(e) => Err(e),
        },
        _ => dispatch(&cx, frame),
    };
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => (-(i64::from(e))) as u64,
    };
    // Killed (or another thread called exit_group) while in the kernel, or a signal to act
    // on, or an interrupted call to restart: before returning (crate::signal).
    drop(cx);
    signal::on_syscall_return(frame);
}
