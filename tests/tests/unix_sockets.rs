//! AF_UNIX sockets (issue 22): stream, datagram and seqpacket sockets bound to paths and
//! abstract names, listen/accept/connect, socket pairs of every type, message boundaries,
//! sendmsg/recvmsg, poll and select — the `unixtest` program on Quest-RS and, as the reference,
//! the same binary on Debian's Linux in the same emulated machine.
use anyhow::Result;
use quest_tests::{Config, Quest};

/// Before: `socket` was ENOSYS and socketpair made only stream pairs; SCM_RIGHTS passes
/// descriptors over stream and datagram sockets.
#[test]
fn unixtest_passes_on_quest() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(false)?)?;
    let out = q.shell("unixtest")?;
    assert!(out.contains("unixtest: 32 checks, 0 failed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn unixtest_passes_on_linux() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("unixtest");
    let out = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(out.contains("unixtest: on Linux as init"), "{out}");
    assert!(out.contains("unixtest: 32 checks, 0 failed"), "{out}");
    Ok(())
}
