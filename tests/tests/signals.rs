//! Kills and signals (issue 22): a kill or a signal takes effect at the next return to user
//! mode from any interrupt — a program that spins without system calls included — on whichever
//! CPU the thread runs (IPI); handlers, masks, timers and interrupted calls.
use anyhow::Result;
use quest_tests::{Config, Quest};

fn boot() -> Result<Quest> {
    Quest::boot(&Config::from_env(false)?)
}

/// A child spinning in `for (;;);` is killed with SIGKILL and reaped (before: never, the kill
/// was only noticed at system-call boundaries), and ctrl-c ends a CPU-bound foreground program
/// and gives the prompt back.
#[test]
fn kills_reach_programs_that_spin_in_user_mode() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("spin kill")?;
    assert!(out.contains("spin: child killed by signal 9 after "), "{out}");
    q.send_line("spin")?;
    q.expect("spin: spinning")?;
    q.send_raw(b"\x03")?;
    q.expect("^C")?;
    q.expect_prompt()?;
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

/// A user program spinning on CPU 1, where nothing else runs (no timer is due there), is
/// killed from CPU 0: the kill sends an IPI and the program ends on its way back to user mode.
#[test]
fn a_kill_reaches_a_program_spinning_on_another_cpu() -> Result<()> {
    let mut cfg = Config::from_env(true)?;
    cfg.smp = 2;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("ktest killcpu 1")?;
    assert!(out.contains("spinning on cpu 1 ended ") && out.contains("after the kill from cpu 0"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// Every check of `sigtest` (handlers, siginfo, masks, SA_NODEFER/SA_RESETHAND/SA_ONSTACK,
/// real-time queues, sigtimedwait, SIGCHLD, default actions, SIGPIPE, faults to handlers,
/// timers (alarm, setitimer, POSIX timers), EINTR and SA_RESTART, FPU state across asynchronous handlers, sigsuspend,
/// pthread_kill and pthread_cancel) passes; and a SIGINT handler catches ctrl-c.
#[test]
fn sigtest_passes_every_check() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("sigtest")?;
    assert!(out.contains("sigtest: 33 checks, 0 failed"), "{out}");
    q.send_line("sigtest ctrlc")?;
    q.expect("sigtest: waiting for SIGINT")?;
    q.send_raw(b"\x03")?;
    q.expect("sigtest: caught SIGINT")?;
    q.expect_prompt()?;
    q.power_off_ok()?;
    Ok(())
}

/// The same `sigtest` binary as init of Debian's kernel in the same emulated machine: Linux
/// passes every check too (the reference the Quest run is held to).
#[test]
fn sigtest_passes_on_linux_too() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("sigtest");
    let out = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(out.contains("sigtest: on Linux as init"), "{out}");
    assert!(out.contains("sigtest: 33 checks, 0 failed"), "{out}");
    Ok(())
}

/// Stopping and continuing: SIGSTOP/SIGTSTP stop a process (a spinning one too) until
/// SIGCONT, wait4 reports both (WUNTRACED, WCONTINUED), SIGCHLD carries CLD_STOPPED and
/// CLD_CONTINUED, SIGKILL ends a stopped process, a stopped sleep finishes after SIGCONT.
/// Before: stop signals were ignored (logged).
#[test]
fn stoptest_passes_on_quest() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("stoptest")?;
    assert!(out.contains("stoptest: 9 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// The same `stoptest` binary as init of Debian's kernel: the reference.
#[test]
fn stoptest_passes_on_linux_too() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("stoptest");
    let out = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(out.contains("stoptest: on Linux as init"), "{out}");
    assert!(out.contains("stoptest: 9 checks, 0 failed"), "{out}");
    Ok(())
}
