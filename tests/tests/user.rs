//! User space: the seed's programs and hostile ones, run from /boot at the console. `cargo
//! xtask test` builds user/examples into the test images' /boot.
use anyhow::Result;
use quest_tests::{Config, Quest};

fn boot() -> Result<Quest> {
    Quest::boot(&Config::from_env(false)?)
}

#[test]
fn hello_world_prints_and_the_prompt_returns() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("hello_world")?;
    assert_eq!(out.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn fork_test_shows_parent_and_child() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("fork_test")?;
    let child = out.lines().find(|l| l.starts_with("child: my id is ")).ok_or_else(|| anyhow::anyhow!("{out}"))?;
    let parent = out.lines().find(|l| l.starts_with("parent: my id is ")).ok_or_else(|| anyhow::anyhow!("{out}"))?;
    let cid: u32 = child.rsplit(' ').next().unwrap().parse()?;
    let pid: u32 = parent.rsplit(' ').next().unwrap().parse()?;
    assert_ne!(cid, pid, "{out}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn thread_example_runs_its_pthreads() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("thread")?;
    for l in [
        "In main: creating thread 1",
        "In main: creating thread 2",
        "Hello World! It's me, thread #1!",
        "Hello World! It's me, thread #2!",
        "Child thread 1!",
        "Child thread 2!",
        "Main thread!",
    ] {
        assert!(out.contains(l), "missing {l:?}:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn faulting_programs_are_killed_and_the_system_goes_on() -> Result<()> {
    let mut q = boot()?;
    for (prog, what) in [
        ("fault_null", "killed: page fault at 0x0 rip 0x"),
        ("fault_kernel", "killed: page fault at 0xffffffff80100000 rip 0x"),
        ("priv_hlt", "killed: general protection fault"),
        ("priv_cli", "killed: general protection fault"),
    ] {
        let out = q.shell(prog)?;
        assert!(out.contains(&format!("(/boot/{prog}) {what}")), "{prog}:\n{out}");
        assert_eq!(q.shell("echo alive")?.trim(), "alive");
    }
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn bad_elf_files_are_rejected_with_enoexec() -> Result<()> {
    let mut q = boot()?;
    for bad in ["bad_elf_text", "bad_elf_truncated"] {
        let out = q.shell(bad)?;
        assert!(out.contains("ENOEXEC"), "{bad}:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

/// A Rust std program built for x86_64-unknown-linux-musl: threads, channels, Vec, println,
/// Instant, std::env::args.
#[test]
fn rust_std_program_runs() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("hello_rust one two")?;
    for l in [
        "Hello from Rust on Quest!",
        r#"args: ["/boot/hello_rust", "one", "two"]"#,
        "vec: len 100, sum 4950",
        "sum from 4 threads: 500500",
        "elapsed ok",
        "bye",
    ] {
        assert!(out.contains(l), "missing {l:?}:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn vcpu_test_prints_seed_output() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("vcpu_test")?;
    assert!(out.contains("Before vcpu bind task: C = 5000, T = 50000"), "{out}");
    assert!(out.contains("After vcpu bind task: C = 20, T = 100"), "{out}");
    let v = q.shell("ps -v")?;
    assert!(
        v.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().get(1..5) == Some(&["0", "main", "20", "100"][..])),
        "{v}"
    );
    q.power_off_ok()?;
    Ok(())
}
