//! Event loops and real-time start-up calls (issue 25): epoll, eventfd, timerfd, O_NONBLOCK
//! pipes and socket pairs, clock_getres, the mlock family, getrusage, times, sysinfo and
//! prctl — the same `evtest` binary on Quest and on Debian's Linux in the same emulated
//! machine; and PR_SET_NAME shown by the shell's `ps -t`.
use anyhow::Result;
use quest_tests::{Config, Quest};

#[test]
fn evtest_passes_every_check_on_quest_and_on_linux() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("evtest")?;
    assert!(out.contains("evtest: 28 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("evtest");
    let linux = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(linux.contains("evtest: on Linux as init"), "{linux}");
    assert!(linux.contains("evtest: 28 checks, 0 failed"), "{linux}");
    Ok(())
}

/// prctl(PR_SET_NAME) names a thread in `ps -t` (before: the program's path on every row).
#[test]
fn thread_names_from_prctl_show_in_ps() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(false)?)?;
    q.shell("nowait evtest named")?;
    q.expect("evtest: named")?;
    let ps = q.shell("ps -t")?;
    assert!(ps.lines().any(|l| l.contains("evloop-main")), "{ps}");
    assert!(ps.lines().any(|l| l.contains("evloop-worker")), "{ps}");
    q.power_off_ok()?;
    Ok(())
}

/// The lines of `out` that start with `prefix` (a program's own output, without the shell's
/// echo, the prompt or Linux's boot messages).
fn lines_with(out: &str, prefix: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.find(prefix).map(|i| l[i..].trim_end().to_string())).collect()
}

/// Runs `prog` at Quest's shell and as init of Debian's Linux in the same emulated machine;
/// the lines starting with `prefix` must be the same and end with `last`.
fn same_on_quest_and_linux(prog: &str, prefix: &str, last: &str) -> Result<()> {
    let cfg = Config::from_env(false)?;
    let mut q = Quest::boot(&cfg)?;
    let quest = lines_with(&q.shell(prog)?, prefix);
    q.power_off_ok()?;
    let path = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join(prog);
    let linux_out = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &path, &[], cfg.timeout)?;
    let linux = lines_with(&linux_out, prefix);
    assert_eq!(linux.last().map(String::as_str), Some(last), "Linux:\n{linux_out}");
    assert_eq!(quest, linux, "Quest's output differs from Linux's");
    Ok(())
}

/// An epoll event loop in C (timerfd, eventfd, an edge-triggered non-blocking pipe, a worker
/// thread): the same output on Quest as on Linux.
#[test]
fn c_event_loop_runs_as_on_linux() -> Result<()> {
    same_on_quest_and_linux("evloop", "evloop: ", "evloop: done")
}

/// A Rust program on tokio's multi-threaded runtime (timers, an mpsc channel, 32 tasks,
/// spawn_blocking, a socket pair and a pipe read asynchronously): the same output on Quest as
/// on Linux.
#[test]
fn tokio_program_runs_as_on_linux() -> Result<()> {
    same_on_quest_and_linux("tokio_evloop", "tokio: ", "tokio: done")
}
