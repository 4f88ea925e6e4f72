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
