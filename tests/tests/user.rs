//! User space: the seed's programs and hostile ones, run from /boot at the console. `cargo
//! xtask test` builds user/examples into the test images' /boot.
use anyhow::Result;
use quest_tests::{Config, Quest};

/// Boots the normal image (user_init and the shell) and waits until the programs the test
/// image's init.conf starts have finished, so their output does not mix with a test's.
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
        ("priv_wrmsr", "killed: general protection fault"),
        ("priv_out", "killed: general protection fault"),
        ("stack_overflow", "killed: stack overflow: page fault at 0x"),
        ("recursion", "killed: stack overflow: page fault at 0x"),
    ] {
        let out = q.shell(prog)?;
        assert!(out.contains(&format!("(/boot/{prog}) {what}")), "{prog}:\n{out}");
        assert!(!out.contains("survived"), "{prog}:\n{out}");
        assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
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
        // The shell reports execve's ENOEXEC with its strerror text.
        assert!(out.contains(&format!("shell: {bad}: Exec format error")), "{bad}:\n{out}");
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
        r#"args: ["hello_rust", "one", "two"]"#,
        "vec: len 100, sum 4950",
        "sum from 4 threads: 500500",
        "elapsed ok",
        // libquest's shmcomm API: a sync channel between two threads, 1 + ... + 10.
        "shmcomm: rust sync channel sum 55",
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

/// user_init starts the programs of /boot/init.conf (the test image's starts hello_world and
/// vcpu_test on a (20, 100) VCPU), then the shell.
#[test]
fn user_init_starts_init_conf_programs_and_the_shell() -> Result<()> {
    let mut q = boot()?;
    let t = q.shell("ps -t")?;
    assert!(t.contains("/boot/user_init") && t.contains("/boot/shell"), "{t}");
    assert!(!t.contains("vcpu_test"), "init.conf programs have ended: {t}");
    let all = q.output();
    assert!(all.contains("Hello World!"), "{all}");
    assert!(all.contains("After vcpu bind task: C = 20, T = 100"), "{all}");
    q.power_off_ok()?;
    Ok(())
}

/// The tutorial's sequence: nowait thread, ps -t shows the process and its two threads with
/// the seed's columns, kill -c marks it for termination, it exits and the shell says so.
#[test]
fn shell_nowait_ps_and_kill_c_follow_the_tutorial() -> Result<()> {
    let mut q = boot()?;
    q.shell("nowait thread")?;
    q.expect("Child thread 2!")?;
    let t = q.shell("ps -t")?;
    assert!(t.contains("  ID          Name Parent VCPU PCPU      Status Thread"), "{t}");
    let rows: Vec<&str> = t.lines().filter(|l| l.contains("/boot/thread")).collect();
    assert_eq!(rows.len(), 3, "{t}");
    let pid = rows[0].split_whitespace().next().unwrap().to_string();
    let v = q.shell("ps -v")?;
    assert!(v.contains("VCPU PCPU Type      C      T  num_tasks"), "{v}");
    assert!(v.contains("main      5000   50000"), "{v}");
    let k = q.shell("kill -c")?;
    assert!(k.contains(&format!("kill: task {pid} marked for termination")), "{k}");
    // The shell reports ended background tasks before its next prompt.
    let mut seen = false;
    for _ in 0..20 {
        q.shell("hello_world")?;
        if q.output().contains(&format!("shell: task {pid} has exited")) {
            seen = true;
            break;
        }
    }
    assert!(seen, "{}", q.output());
    let t = q.shell("ps -t")?;
    assert!(!t.contains("/boot/thread"), "{t}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn shell_wait_waits_for_the_background_task() -> Result<()> {
    let mut q = boot()?;
    q.shell("nowait hello_world")?;
    let w = q.shell("wait")?;
    let all = q.output();
    assert!(all.contains("Hello World!"), "{w}\n{all}");
    assert!(all.contains("has exited"), "{all}");
    q.power_off_ok()?;
    Ok(())
}

/// ctrl-c ends the foreground task; the shell prompts again.
#[test]
fn ctrl_c_kills_the_foreground_task() -> Result<()> {
    let mut q = boot()?;
    q.send_line("thread")?;
    q.expect("Child thread 2!")?;
    q.send_raw(b"\x03")?;
    q.expect("^C")?;
    q.expect_prompt()?;
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

/// PROT_NONE pages are mapped but inaccessible: the kernel will not copy from one (EFAULT), and
/// a user read faults and kills only that program.
#[test]
fn prot_none_pages_are_not_accessible() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("prot_none")?;
    assert!(out.contains("prot_none: write from a PROT_NONE page: EFAULT"), "{out}");
    assert!(out.contains("prot_none: after PROT_READ it reads 0"), "{out}");
    assert!(out.contains("killed: page fault at") && !out.contains("NOT protected"), "{out}");
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

/// A task blocked reading the console ends on ctrl-c too (it used to sleep on), and a line
/// typed to it arrives.
#[test]
fn ctrl_c_ends_a_task_waiting_for_input() -> Result<()> {
    let mut q = boot()?;
    q.send_line("read_stdin")?;
    q.expect("read_stdin: waiting for a line")?;
    q.send_raw(b"\x03")?;
    q.expect("^C")?;
    q.expect_prompt()?;
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.send_line("read_stdin")?;
    q.expect("read_stdin: waiting for a line")?;
    q.send_line("abc")?;
    q.expect("read_stdin: got abc")?;
    q.expect_prompt()?;
    q.power_off_ok()?;
    Ok(())
}

/// pipe2 between a parent and its child (end of file when the writer closes), and /boot
/// listed with opendir/readdir/stat (getdents64, stat).
#[test]
fn pipes_and_directory_listing() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("pipe_test")?;
    assert!(out.contains("child: read 16000 bytes, then end of file"), "{out}");
    assert!(out.contains("parent: wrote 16000 bytes, child exited with 0"), "{out}");
    let ls = q.shell("lsboot")?;
    assert!(ls.lines().any(|l| l.trim_end().ends_with(" hello_world")), "{ls}");
    assert!(!ls.contains("ENOSYS"), "{ls}");
    q.power_off_ok()?;
    Ok(())
}

/// What the programs of /boot call that the kernel does not implement is logged once per
/// call ("syscall N (name) not implemented: ENOSYS"); the seed's programs and the Rust std
/// program need none of it.
#[test]
fn example_programs_hit_no_unimplemented_syscalls() -> Result<()> {
    let mut q = boot()?;
    for prog in ["hello_world", "fork_test", "vcpu_test", "hello_rust a", "pipe_test", "lsboot"] {
        q.shell(prog)?;
    }
    let all = q.output();
    assert!(!all.contains("not implemented: ENOSYS"), "{all}");
    q.power_off_ok()?;
    Ok(())
}

/// Kernel and unmapped pointers given to system calls are EFAULT.
#[test]
fn bad_pointers_are_efault() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("efault_test")?;
    assert_eq!(out.matches(": EFAULT").count(), 11, "{out}");
    assert!(!out.contains("WRONG"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// Regression (found by the fuzzer): the largest sleep and futex timeouts overflowed the
/// kernel's wake-up time computation (a kernel panic).
#[test]
fn huge_timeouts_do_not_overflow() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("huge_sleep")?;
    assert!(out.contains("nanosleep: child was still sleeping and was killed"), "{out}");
    assert!(out.contains("futex wait: child was still sleeping and was killed"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// The in-guest system-call fuzzer: random Linux and Quest calls with adversarial arguments.
/// The kernel must not panic or hang, and the shell must answer afterwards. CI runs 20,000
/// calls (seed 3 found the timeout overflow); `cargo xtask test --long` runs 1,000,000.
#[test]
fn syscall_fuzzer_leaves_the_system_running() -> Result<()> {
    let calls: u64 = std::env::var("QUEST_FUZZ_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let mut cfg = Config::from_env(false)?;
    cfg.smp = 2;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(calls / 100 + 120));
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell(&format!("syscall_fuzz 3 {calls}"))?;
    assert!(out.contains(&format!("syscall_fuzz: done: seed 3, {calls} calls")), "{out}");
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    Ok(())
}

/// Programs that exhaust memory under the shell: mmap and brk end with ENOMEM, a thread storm
/// ends when clone is refused (EAGAIN) and every thread is joined; the shell answers after each.
#[test]
fn exhausting_programs_end_with_an_errno_and_the_shell_answers() -> Result<()> {
    let mut cfg = Config::from_env(false)?;
    cfg.mem_mib = 128;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    let mut q = Quest::boot(&cfg)?;
    for (prog, expect) in [
        ("mmap_exhaust", "then mmap failed with ENOMEM"),
        ("brk_exhaust", "then brk refused: ENOMEM"),
        ("thread_storm", "then pthread_create failed with EAGAIN"),
    ] {
        let out = q.shell(prog)?;
        assert!(out.contains(expect), "{prog}:\n{out}");
        assert!(!out.contains("killed"), "{prog}:\n{out}");
        assert_eq!(q.shell("hello_world")?.trim(), "Hello World!", "after {prog}");
    }
    q.power_off_ok()?;
    Ok(())
}
