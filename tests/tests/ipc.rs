//! Shared memory, record locks, System V IPC and priority-inheritance mutexes (issue 22):
//! the `ipctest` program's checks on Quest-RS, and the same binary on Debian's Linux in the same
//! emulated machine (the reference it must agree with).
use anyhow::Result;
use quest_tests::{Config, Quest};

fn boot() -> Result<Quest> {
    Quest::boot(&Config::from_env(false)?)
}

fn linux(args: &[&str]) -> Result<String> {
    let cfg = Config::from_env(false)?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("ipctest");
    quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, args, cfg.timeout)
}

/// Every check of every group passes on Linux: the reference the Quest runs are held to.
#[test]
fn ipctest_passes_on_linux() -> Result<()> {
    let out = linux(&[])?;
    assert!(out.contains("ipctest: on Linux as init"), "{out}");
    assert!(out.contains("ipctest: 86 checks, 0 failed"), "{out}");
    Ok(())
}

/// MAP_SHARED anonymous memory across fork, shared mappings of in-memory files (coherent with
/// read/write, msync), /dev/shm (shm_open, shm_unlink), named and process-shared semaphores
/// between processes, mremap of shared memory. Before: MAP_SHARED memory was private to each
/// process and writable shared file mappings failed with ENODEV.
#[test]
fn shared_memory_works_between_processes() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("ipctest shm")?;
    assert!(out.contains("ipctest: 20 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// fcntl record locks: POSIX locks between processes (conflicts, F_GETLK's report, splitting,
/// release on close and exit), F_SETLKW waiting and EDEADLK for a deadlock, OFD locks owned by
/// their open file. Before: every record-lock command failed with EINVAL.
#[test]
fn record_locks_work() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("ipctest locks")?;
    assert!(out.contains("ipctest: 19 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// System V shared memory, semaphores (blocking, timeouts, SEM_UNDO, IPC_RMID waking waiters
/// with EIDRM) and message queues (selection by type, E2BIG/MSG_NOERROR, blocking receive).
/// Before: every System V call was ENOSYS.
#[test]
fn system_v_ipc_works() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("ipctest sysv")?;
    assert!(out.contains("ipctest: 30 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// PTHREAD_PRIO_INHERIT mutexes (musl: FUTEX_LOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_UNLOCK_PI):
/// the owner's id in the word, EBUSY for trylock, mutual exclusion under contention, EPERM for
/// an unlock by another thread, EOWNERDEAD for a robust PI mutex whose owner died. Before:
/// the PI operations were ENOSYS.
#[test]
fn priority_inheritance_mutexes_work() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("ipctest pi")?;
    assert!(out.contains("ipctest: 6 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// futex wait queues (issue 21 item 3: slab nodes on hashed lists, no allocation per wait):
/// EAGAIN on a changed word, timeouts (and a timed-out waiter gone from the queue), WAKE's
/// count and first-come order, a broadcast to 24 waiters (more than the 4 a wake keeps in
/// place), CMP_REQUEUE moving waiters in order and its EAGAIN, REQUEUE's result, 40 words with
/// a waiter each (sharing hash buckets) each woken alone, and two Linux results: REQUEUE
/// returns woken plus moved (before: the woken count) and WAKE of 0 wakes one (before: none). The same checks pass on Linux
/// (`ipctest_passes_on_linux`).
#[test]
fn futex_queues_wake_requeue_and_time_out() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("ipctest futex")?;
    assert!(out.contains("ipctest: 11 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}
