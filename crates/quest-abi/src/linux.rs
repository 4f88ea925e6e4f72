//! The Linux side of the ABI, re-exported from `linux-raw-sys` (generated from the Linux UAPI
//! headers) so the kernel has one import and nobody types a Linux number by hand.
//!
//! * The `__NR_*` constants below are the Linux x86-64 syscalls Quest-RS implements or plans
//!   to, in two groups: [`TRACED`] — every syscall the seed's example programs and `hello_rust`
//!   make (`docs/abi-syscalls.txt`, traced with strace on Linux) plus `clock_gettime`, which
//!   Linux serves from the vDSO but Quest-RS (no vDSO) receives as a real syscall — and
//!   [`PLANNED`], what the shell, `init` and common libc paths need next.
//! * [`general`], [`ioctl`], [`auxvec`] and [`errno`](mod@errno) are `linux-raw-sys`'s modules,
//!   for flags and structs (`CLONE_*`, `FUTEX_*`, `MAP_*`, `PROT_*`, `ARCH_SET_FS`, `CLOCK_*`,
//!   `struct timespec`, `struct winsize`, `TIOCGWINSZ`, `AT_PHDR`/`AT_RANDOM`/…).

pub use linux_raw_sys::{auxvec, errno, general, ioctl};

pub use linux_raw_sys::general::{
    // TRACED: made by hello_world, fork_test, thread, hello_rust (+ clock_gettime, see above).
    __NR_arch_prctl,
    __NR_brk,
    __NR_clock_gettime,
    __NR_clock_nanosleep,
    __NR_clone,
    // PLANNED: the shell, init and common libc/std paths.
    __NR_close,
    __NR_dup2,
    __NR_execve,
    __NR_exit,
    __NR_exit_group,
    __NR_fcntl,
    __NR_fork,
    __NR_futex,
    __NR_getcwd,
    __NR_getpid,
    __NR_getppid,
    __NR_getrandom,
    __NR_gettid,
    __NR_ioctl,
    __NR_kill,
    __NR_lseek,
    __NR_madvise,
    __NR_mmap,
    __NR_mprotect,
    __NR_munmap,
    __NR_nanosleep,
    __NR_open,
    __NR_openat,
    __NR_pipe,
    __NR_pipe2,
    __NR_poll,
    __NR_read,
    __NR_readv,
    __NR_rt_sigaction,
    __NR_rt_sigprocmask,
    __NR_rt_sigreturn,
    __NR_sched_getaffinity,
    __NR_sched_yield,
    __NR_set_robust_list,
    __NR_set_tid_address,
    __NR_sigaltstack,
    __NR_tgkill,
    __NR_tkill,
    __NR_uname,
    __NR_vfork,
    __NR_wait4,
    __NR_write,
    __NR_writev,
};

/// Syscalls the traced programs make (see the module documentation), `(name, number)`.
pub const TRACED: &[(&str, u32)] = &[
    ("arch_prctl", __NR_arch_prctl),
    ("brk", __NR_brk),
    ("clock_gettime", __NR_clock_gettime),
    ("clock_nanosleep", __NR_clock_nanosleep),
    ("clone", __NR_clone),
    ("execve", __NR_execve),
    ("exit", __NR_exit),
    ("exit_group", __NR_exit_group),
    ("fork", __NR_fork),
    ("futex", __NR_futex),
    ("getpid", __NR_getpid),
    ("gettid", __NR_gettid),
    ("ioctl", __NR_ioctl),
    ("mmap", __NR_mmap),
    ("mprotect", __NR_mprotect),
    ("munmap", __NR_munmap),
    ("nanosleep", __NR_nanosleep),
    ("poll", __NR_poll),
    ("rt_sigaction", __NR_rt_sigaction),
    ("rt_sigprocmask", __NR_rt_sigprocmask),
    ("set_tid_address", __NR_set_tid_address),
    ("sigaltstack", __NR_sigaltstack),
    ("wait4", __NR_wait4),
    ("write", __NR_write),
    ("writev", __NR_writev),
];

/// Syscalls planned next (see the module documentation), `(name, number)`.
pub const PLANNED: &[(&str, u32)] = &[
    ("close", __NR_close),
    ("dup2", __NR_dup2),
    ("fcntl", __NR_fcntl),
    ("getcwd", __NR_getcwd),
    ("getppid", __NR_getppid),
    ("getrandom", __NR_getrandom),
    ("kill", __NR_kill),
    ("lseek", __NR_lseek),
    ("madvise", __NR_madvise),
    ("open", __NR_open),
    ("openat", __NR_openat),
    ("pipe", __NR_pipe),
    ("pipe2", __NR_pipe2),
    ("read", __NR_read),
    ("readv", __NR_readv),
    ("rt_sigreturn", __NR_rt_sigreturn),
    ("sched_getaffinity", __NR_sched_getaffinity),
    ("sched_yield", __NR_sched_yield),
    ("set_robust_list", __NR_set_robust_list),
    ("tgkill", __NR_tgkill),
    ("tkill", __NR_tkill),
    ("uname", __NR_uname),
    ("vfork", __NR_vfork),
];

/// One more than the highest Linux x86-64 syscall number in the `linux-raw-sys` version this
/// crate is built with (`__NR_file_setattr` = 469 in Linux 6.17). Used to check that the
/// Quest range lies far above Linux's.
pub const NR_SYSCALLS_KNOWN: u32 = general::__NR_file_setattr + 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_check_numbers() {
        // Well-known x86-64 numbers: a wrong module (e.g. i386's) would fail here.
        assert_eq!(__NR_write, 1);
        assert_eq!(__NR_mmap, 9);
        assert_eq!(__NR_writev, 20);
        assert_eq!(__NR_fork, 57);
        assert_eq!(__NR_exit_group, 231);
        assert_eq!(__NR_clock_gettime, 228);
        assert_eq!(ioctl::TIOCGWINSZ, 0x5413);
        assert_eq!(general::ARCH_SET_FS, 0x1002);
    }

    #[test]
    fn tables_are_sorted_distinct_and_below_the_quest_range() {
        for t in [TRACED, PLANNED] {
            for w in t.windows(2) {
                assert!(w[0].0 < w[1].0, "{w:?} not sorted by name");
            }
        }
        for (i, a) in TRACED.iter().chain(PLANNED).enumerate() {
            assert!(a.1 < NR_SYSCALLS_KNOWN);
            assert!(a.1 < crate::nr::QUEST_BASE);
            for b in TRACED.iter().chain(PLANNED).skip(i + 1) {
                assert_ne!(a.1, b.1, "{a:?} {b:?}");
            }
        }
    }
}
