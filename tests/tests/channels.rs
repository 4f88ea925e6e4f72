//! shmcomm channels and tuned pipes between Quest processes (user/examples: async_send,
//! async_recv, shmcomm_sync, shmcomm_errors, tpipe_test). Every time measured is the guest's.
use anyhow::{Context, Result};
use quest_tests::{Config, Quest};

fn boot() -> Result<Quest> {
    Quest::boot(&Config::from_env(false)?)
}

/// The seed's pair: the sender runs to completion, then the receiver gets the value.
#[test]
fn seed_async_pair_delivers_x_10() -> Result<()> {
    let mut q = boot()?;
    let s = q.shell("async_send")?;
    for l in ["Sender", "Sending X", "Sent X=10", "Channel successfully closed."] {
        assert!(s.contains(l), "missing {l:?}:\n{s}");
    }
    let r = q.shell("async_recv")?;
    for l in ["Receiver", "Recv Channel Key: 153", "Received X=10"] {
        assert!(r.contains(l), "missing {l:?}:\n{r}");
    }
    assert!(!r.contains("Value of res: -1"), "{r}");
    // Both sides closed: the key was freed, so the pair runs again (a second create of a
    // live key would print "Error").
    let s = q.shell("async_send")?;
    assert!(s.contains("Channel successfully closed."), "{s}");
    let r = q.shell("async_recv")?;
    assert!(r.contains("Received X=10"), "{r}");
    // ... and a receiver without a sender gets ENOENT ("Value of res: -1", "Error").
    let r = q.shell("async_recv")?;
    assert!(r.contains("Value of res: -1") && r.contains("Error"), "{r}");
    q.power_off_ok()?;
    Ok(())
}

fn number_after(out: &str, prefix: &str) -> Result<i64> {
    let l = out.lines().find(|l| l.contains(prefix)).with_context(|| format!("no {prefix:?} in:\n{out}"))?;
    let rest = &l[l.find(prefix).unwrap() + prefix.len()..];
    Ok(rest.split_whitespace().next().context("no number")?.parse()?)
}

/// A sync channel blocks the reader while empty and the writer while full; marshal and
/// unmarshal callbacks run in the library; the reader sees end-of-stream after the writer
/// closes.
#[test]
fn sync_channel_blocks_reader_and_writer() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("shmcomm_sync")?;
    // The writer sleeps 300 ms before its first write: the reader waited for it.
    let rb = number_after(&out, "sync: reader blocked ")?;
    assert!(rb >= 250, "reader did not block: {rb} ms\n{out}");
    assert!(out.contains("read 8 bytes: seq 0 value 100"), "{out}");
    // The reader sleeps 300 ms after the first packet: the third write into the 2-packet
    // buffer waited for it.
    let wb = number_after(&out, "sync: writer blocked ")?;
    assert!(wb >= 200, "writer did not block: {wb} ms\n{out}");
    for i in 1..=4 {
        assert!(out.contains(&format!("sync: read 8 bytes: seq {i} value {}", 100 + i)), "seq {i}:\n{out}");
    }
    assert!(out.contains("sync: read after the writer closed returned 0"), "{out}");
    assert!(out.contains("sync: done, child status 0"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// The user-level data path (issue 21, user/examples/shmcomm_fast.c): both sides of a sync
/// channel map the region; a writer killed (kill -9) while streaming leaves the reader every
/// packet it completed, in order and whole, then end of stream — with both sides in user
/// space and with either side on the kernel's path (the C port against the Rust crate); a
/// scribbled region gives errors, not faults or hangs, and the kernel still closes it; a
/// four-slot channel delivers whole values between processes.
#[test]
fn user_level_channel_survives_a_killed_writer_and_scribbling() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("shmcomm_fast")?;
    println!("{out}");
    for case in [
        "path",
        "kill, both in user space",
        "kill, kernel-path writer",
        "kill, kernel-path reader",
        "scribble",
        "async",
    ] {
        assert!(out.contains(&format!("fast: {case}: ok")), "{case}:\n{out}");
    }
    assert!(out.contains("(both sides mapped: yes"), "{out}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    assert!(out.contains("fast: 6 of 6 as expected"), "{out}");
    // The kernel survived: a shell command still runs.
    assert!(q.shell("hello_world")?.contains("Hello World!"), "the system still runs programs");
    q.power_off_ok()?;
    Ok(())
}

/// EEXIST, ENOENT, EINVAL (size, type, flags, lengths), EBUSY, EPIPE, EBADF; closing one side
/// leaves the other's view intact; both closed (or exited) frees the key.
#[test]
fn shmcomm_error_cases() -> Result<()> {
    let mut q = boot()?;
    let out = q.shell("shmcomm_errors")?;
    for (case, want) in [
        ("second create of 800", "EEXIST"),
        ("connect to missing 801", "ENOENT"),
        ("connect with size 8 to a 4-byte channel", "EINVAL"),
        ("connect as sync to an async channel", "EINVAL"),
        ("second sender on 800", "EBUSY"),
        ("create both async and sync", "EINVAL"),
        ("create a 64 MiB sync channel (over the 1 MiB limit)", "EINVAL"),
        ("async read before any write", "EAGAIN"),
        ("read after the sender closed", "OK"),
        ("connect to 800 after both sides closed (freed)", "ENOENT"),
        ("sync write into a full buffer whose receiver closed", "EPIPE"),
        ("create 804 after its users exited without closing", "OK"),
    ] {
        assert!(out.contains(&format!("errors: {case}: {want}\n")), "{case}: want {want}:\n{out}");
    }
    assert!(out.contains("errors: receiver reads 42 after the sender closed"), "{out}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    assert!(out.contains("errors: 22 of 22 as expected"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// A tuned pipe under `-icount shift=0` (guest time = instructions): a producer at lambda, a
/// consumer, a CPU hog on a higher-priority VCPU and one on the default VCPU. Every message arrives, in order, within
/// the delay bound the kernel reported; the QoS errors are EINVAL and EBUSY.
#[test]
fn tuned_pipe_meets_its_delay_bound_beside_a_hog() -> Result<()> {
    let mut cfg = Config::from_env(false)?;
    cfg.icount = true;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(900));
    let mut q = Quest::boot(&cfg)?;
    println!("{}", q.shell("ps -v")?);
    let out = q.shell("tpipe_test 200")?;
    println!("{out}");
    assert!(out.contains("tpipe: C > T: -1 errno EINVAL"), "{out}");
    assert!(out.contains("tpipe: 2 x 75% utilisation: -1 errno EBUSY"), "{out}");
    assert!(
        out.contains("tpipe: guarantee throughput 102400 B/s delay 40000 us") && out.contains("C=2000 T=20000, B=4096"),
        "{out}"
    );
    // The first writer and the first reader were bound to the derived VCPUs.
    assert!(out.contains("tpipe: producer runs on C=2000 T=20000"), "{out}");
    assert!(out.contains("tpipe: consumer runs on C=2000 T=20000"), "{out}");
    assert!(!out.contains("hog VCPU refused"), "the hog must run on its own higher-priority VCPU:\n{out}");
    assert!(out.contains("tpipe: 200 messages, lost 0, over the bound 0, max delay "), "{out}");
    let max = number_after(&out, "max delay ")?;
    assert!(max > 0 && max <= 40_000, "{out}");
    assert!(out.contains("tpipe: every message met the bound"), "{out}");
    assert!(out.contains("tpipe: done"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

fn free_frames(q: &mut Quest) -> Result<u64> {
    let out = q.shell("mem")?;
    let l = out.lines().find(|l| l.starts_with("frames: ")).with_context(|| format!("no frames line:\n{out}"))?;
    Ok(l["frames: ".len()..].split_whitespace().next().context("no number")?.parse()?)
}

/// Channel memory, descriptors, and the tuned pipes' VCPUs are released when the programs
/// close them or exit (shmcomm_errors has a child that exits without closing): running the
/// programs a second time leaves the kernel's free-frame count where the first run left it.
/// (The first run warms up what the kernel keeps for reuse, such as kernel-stack slots.)
#[test]
fn channels_leak_no_memory() -> Result<()> {
    let mut cfg = Config::from_env(true)?; // the test build: kernel console with `mem`
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    let mut q = Quest::boot(&cfg)?;
    let vcpus_at_boot = q.shell("ps -v")?.lines().find(|l| l.ends_with(" VCPUs")).map(String::from);
    let progs = ["shmcomm_errors", "async_send", "async_recv", "shmcomm_sync", "tpipe_test 10"];
    for p in progs {
        q.shell(p)?;
    }
    let before = free_frames(&mut q)?;
    for p in progs {
        // Only that the programs ran: this boot is not under -icount, so guest time follows
        // the (shared, loaded) host and tpipe_test's delays prove nothing here.
        let out = q.shell(p)?;
        assert!(!out.contains("UNEXPECTED") && !out.contains("Error"), "{p}:\n{out}");
    }
    let after = free_frames(&mut q)?;
    assert_eq!(before, after, "frames leaked by a second run: {before} free before, {after} after");
    // The VCPUs of boot time only: the tuned pipes' VCPUs went with their pipes (and
    // tpipe_test destroys its hog's).
    let v = q.shell("ps -v")?;
    let now = v.lines().find(|l| l.ends_with(" VCPUs")).map(String::from);
    assert!(vcpus_at_boot.is_some() && now == vcpus_at_boot, "VCPUs left behind: {vcpus_at_boot:?} at boot, now:\n{v}");
    q.power_off_ok()?;
    Ok(())
}
