//! Debian's `busybox-static` (fetched by `cargo xtask test` as the Linux sandbox's busybox is)
//! from the Quest shell: the applets people use first, on the in-memory file system, /proc and
//! the signals of issue 22; and system()/popen() through /bin/sh (busybox's ash).
use anyhow::Result;
use quest_tests::{Config, Quest};

fn boot() -> Result<Quest> {
    Quest::boot(&Config::from_env(false)?)
}

#[test]
fn busybox_applets_work_from_the_quest_shell() -> Result<()> {
    let mut q = boot()?;
    // glibc registers restartable sequences at start: the one call Quest does not have
    // (ENOSYS, which glibc handles), said once.
    let first = q.shell("busybox true")?;
    assert!(first.trim() == "syscall 334 (rseq) not implemented: ENOSYS (first asked by process 8 /boot/busybox)", "{first}");
    assert_eq!(q.shell("busybox sh -c 'echo a; echo b'")?.trim(), "a\nb");
    assert_eq!(q.shell("busybox mkdir /tmp/d")?.trim(), "");
    assert_eq!(q.shell("busybox cp /boot/init.conf /tmp/d/a")?.trim(), "");
    assert_eq!(q.shell("busybox mv /tmp/d/a /tmp/d/b")?.trim(), "");
    let ls = q.shell("busybox ls -l /tmp/d")?;
    let conf = q.shell("busybox cat /boot/init.conf")?;
    assert!(ls.lines().any(|l| l.starts_with("-r") && l.ends_with(" b") && l.contains(&format!(" {} ", conf.len() + 1))), "{ls}\n{conf:?}");
    assert_eq!(q.shell("busybox cat /tmp/d/b")?, conf);
    assert_eq!(q.shell("busybox grep vcpu_test /tmp/d/b")?.trim(), "vcpu_test @20/100");
    assert!(q.shell("busybox sed s/hello/HELLO/ /tmp/d/b")?.contains("HELLO_world"));
    assert_eq!(q.shell("busybox awk '$1 !~ /^#/ { print $2 }' /tmp/d/b")?.trim(), "@20/100");
    let sorted = q.shell("busybox sort -r /tmp/d/b")?;
    let mut want: Vec<&str> = conf.lines().collect();
    want.sort();
    want.reverse();
    assert_eq!(sorted.lines().collect::<Vec<_>>(), want);
    assert_eq!(q.shell("busybox rm /tmp/d/b")?.trim(), "");
    assert_eq!(q.shell("busybox rmdir /tmp/d")?.trim(), "");
    assert_eq!(q.shell("busybox ls /tmp")?.trim(), "");
    let ps = q.shell("busybox ps")?;
    assert!(ps.contains("PID") && ps.contains("busybox ps") && ps.contains("/boot/user_init"), "{ps}");
    let free = q.shell("busybox free")?;
    assert!(free.lines().any(|l| l.starts_with("Mem:") && l.split_whitespace().count() >= 4), "{free}");
    let up = q.shell("busybox uptime")?;
    assert!(up.contains(" up ") && up.contains("load average"), "{up}");
    assert_eq!(q.shell("busybox sleep 1")?.trim(), "");
    assert_eq!(q.shell("busybox sh -c 'busybox sleep 100 & busybox kill $!; wait $!; echo status $?'")?.trim(), "status 143"); // as on Linux
    let sys = q.shell("systemtest")?;
    assert!(sys.contains("systemtest: from system") && sys.contains("systemtest: system returned exit status 3"), "{sys}");
    assert!(sys.contains("systemtest: popen read 'from popen', pclose 0"), "{sys}");
    // Nothing else busybox or the shell asked for is missing.
    assert_eq!(q.output().matches("not implemented").count(), 1, "{}", q.output());
    q.power_off_ok()?;
    Ok(())
}
