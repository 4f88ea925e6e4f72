//! Event loops and real-time start-up calls (issue 25): epoll, eventfd, timerfd, O_NONBLOCK
//! pipes and socket pairs, clock_getres, the mlock family, getrusage, times, sysinfo and
//! prctl — the same `evtest` binary on Quest and on Debian's Linux in the same emulated
//! machine; and PR_SET_NAME shown by the shell's `ps -t`.
use anyhow::Result;
use quest_tests::{Config, Quest};

/// `evtest`'s output on Quest (typed at the shell) and on Linux (as init), run once for all the
/// tests of this file that check it (each test checks one family of calls).
fn evtest_outputs() -> &'static (String, String) {
    static OUT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let run = || -> Result<(String, String)> {
            let cfg = Config::from_env(false)?;
            let mut q = Quest::boot(&cfg)?;
            let quest = q.shell("evtest")?;
            q.power_off_ok()?;
            let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("evtest");
            let linux = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
            Ok((quest, linux))
        };
        run().unwrap_or_else(|e| (format!("evtest did not run: {e:#}"), String::new()))
    })
}

/// Every check of `evtest` whose name starts with one of `families` passes on Quest and on
/// Linux (the same binary), and there are `count` of them.
fn evtest_family(families: &[&str], count: usize) {
    let (quest, linux) = evtest_outputs();
    assert!(linux.contains("evtest: on Linux as init"), "{linux}");
    for (sys, out) in [("Quest", quest), ("Linux", linux)] {
        assert!(out.contains("evtest: 28 checks, "), "{sys}: evtest did not finish:\n{out}");
        let lines: Vec<&str> = out
            .lines()
            .filter_map(|l| l.find("evtest: ").map(|i| &l[i + 8..]))
            .filter(|l| families.iter().any(|f| l.starts_with(f)))
            .collect();
        assert_eq!(lines.len(), count, "{sys}: checks of {families:?}:\n{out}");
        for l in lines {
            assert!(l.ends_with(" ok"), "{sys}: {l}");
        }
    }
}

/// eventfd: counter and semaphore modes, EFD_NONBLOCK/EFD_CLOEXEC, the counter's top, a
/// blocking read woken by another thread's write.
#[test]
fn eventfd_as_on_linux() {
    evtest_family(&["eventfd_"], 4);
}

/// timerfd: periodic expirations counted, gettime and disarming, blocking reads (relative and
/// absolute, CLOCK_MONOTONIC and CLOCK_REALTIME), poll, the errors.
#[test]
fn timerfd_as_on_linux() {
    evtest_family(&["timerfd_"], 5);
}

/// epoll: level, edge, one-shot, hang-up and close, timeouts, the errors, pipes + eventfd +
/// timerfd + a socket pair in one set, fairness with maxevents 1, nesting and ELOOP, a thread
/// woken in epoll_wait, epoll_pwait's signal mask.
#[test]
fn epoll_as_on_linux() {
    evtest_family(&["epoll_"], 11);
}

/// O_NONBLOCK on pipes (pipe2, F_GETFL, EAGAIN when empty or full) and socket pairs (F_SETFL,
/// FIONBIO).
#[test]
fn nonblocking_pipes_and_sockets_as_on_linux() {
    evtest_family(&["nonblock_"], 2);
}

/// The real-time start-up calls: clock_getres, the mlock family, getrusage, times, sysinfo,
/// prctl(PR_SET_NAME/PR_GET_NAME).
#[test]
fn startup_calls_as_on_linux() {
    evtest_family(&["clock_getres", "mlock", "getrusage", "times", "sysinfo", "prctl_name"], 6);
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
