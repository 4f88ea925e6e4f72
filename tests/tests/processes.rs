//! Processes and threads (issue 22 item 4): robust futexes (the kernel's robust list ABI and
//! get_robust_list), posix_spawn (clone(CLONE_VM | CLONE_VFORK)), flock, vfork, poll, select and ppoll that wait, socketpair(AF_UNIX, SOCK_STREAM) and process groups — the same
//! `proctest` binary on Quest and on Debian's Linux in the same emulated machine.
use anyhow::Result;
use quest_tests::{Config, Quest};

#[test]
fn proctest_passes_every_check_on_quest_and_on_linux() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("proctest")?;
    assert!(out.contains("proctest: 10 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("proctest");
    let linux = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(linux.contains("proctest: on Linux as init"), "{linux}");
    assert!(linux.contains("proctest: 10 checks, 0 failed"), "{linux}");
    Ok(())
}
