//! User memory (issue 22 item 3): anonymous memory on demand, munmap giving the range back,
//! MAP_FIXED and MAP_FIXED_NOREPLACE, mremap, mprotect, private file mappings, RLIMIT_DATA,
//! RLIMIT_NOFILE and a main stack that grows to RLIMIT_STACK — the same `memtest` binary on
//! Quest and on Debian's Linux in the same emulated machine.
use anyhow::{Context, Result};
use quest_tests::{Config, Quest};

#[test]
fn memtest_passes_every_check_on_quest_and_on_linux() -> Result<()> {
    let cfg = Config::from_env(false)?;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("memtest")?;
    assert!(out.contains("memtest: 12 checks, 0 failed"), "{out}");
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("memtest");
    let linux = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(linux.contains("memtest: on Linux as init"), "{linux}");
    assert!(linux.contains("memtest: 12 checks, 0 failed"), "{linux}");
    Ok(())
}

/// fork by copy-on-write (issue 21): parent and child each see only their own writes (their
/// stores and the kernel's copies into their memory), mprotect still rules a shared page, three
/// generations keep their own values, forking 16 MiB copies nothing while nobody writes, and a
/// fork beside a writing thread gives the child a snapshot — the same `cowtest` on Quest (two
/// CPUs, so the writing thread may run beside the forking one) and on Linux.
#[test]
fn fork_shares_memory_copy_on_write_as_on_linux() -> Result<()> {
    let mut cfg = Config::from_env(false)?;
    cfg.smp = 2;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("cowtest")?;
    assert!(out.contains("cowtest: 9 checks, 0 failed"), "{out}");
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    let prog = std::path::PathBuf::from(std::env::var("QUEST_USER_DIR")?).join("cowtest");
    let linux = quest_tests::linux::run_init(&cfg.qemu, &quest_tests::linux::vmlinuz_from_env()?, &prog, &[], cfg.timeout)?;
    assert!(linux.contains("cowtest: on Linux as init"), "{linux}");
    assert!(linux.contains("cowtest: 9 checks, 0 failed"), "{linux}");
    Ok(())
}

/// The kernel's free frames (the test build's `mem` console command).
fn free_frames(q: &mut Quest) -> Result<u64> {
    let out = q.shell("mem")?;
    let l = out.lines().find(|l| l.starts_with("frames: ")).with_context(|| format!("no frames line:\n{out}"))?;
    Ok(l["frames: ".len()..].split_whitespace().next().context("no number")?.parse()?)
}

/// fork's copy and the drop of an address space visit only the recorded parts of the tables
/// (issue 21: `AddressSpace::used` in hal/src/mm/space.rs): processes that map, unmap (leaving
/// empty tables behind), remap, grow their stack, fork with threads and exit give back every
/// frame — running cowtest and memtest a second time leaves the free-frame count where the
/// first run left it (the first warms up what the kernel keeps for reuse). The test build also
/// checks, at every fork and drop, that every mapped page and top-level entry was found.
#[test]
fn fork_and_exit_give_back_every_frame() -> Result<()> {
    let mut cfg = Config::from_env(true)?; // the test build: kernel console with `mem`
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    let mut q = Quest::boot(&cfg)?;
    let progs = ["cowtest", "memtest", "fork_test"];
    for p in progs {
        q.shell(p)?;
    }
    let before = free_frames(&mut q)?;
    for p in progs {
        let out = q.shell(p)?;
        assert!(!out.contains("FAILED") && !out.contains("panic"), "{p}:\n{out}");
    }
    let after = free_frames(&mut q)?;
    assert_eq!(before, after, "frames leaked by a second run: {before} free before, {after} after");
    q.power_off_ok()?;
    Ok(())
}
