//! The reference run: a static test program as `init` of Debian's stock kernel in the same
//! emulated machine the Quest tests use (q35, TCG, the same memory), as the benchmark runs
//! qbench (xtask/src/bench.rs). The program prints its results on the console it makes
//! (`/dev/console`) and powers the machine off; the test compares them with Quest's.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Debian's kernel, from `QUEST_LINUX_VMLINUZ` (`cargo xtask test` fetches it once into
/// target/debian, as the benchmark does).
pub fn vmlinuz_from_env() -> Result<PathBuf> {
    std::env::var_os("QUEST_LINUX_VMLINUZ")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("QUEST_LINUX_VMLINUZ is not set: run the QEMU tests with `cargo xtask test`"))
}

/// Boots `vmlinuz` with an initramfs holding `program` as `/init` (arguments `args`), waits
/// for QEMU to exit (the program powers off) and returns the console output.
pub fn run_init(qemu: &Path, vmlinuz: &Path, program: &Path, args: &[&str], timeout: Duration) -> Result<String> {
    run_init_with(qemu, vmlinuz, program, &[], args, timeout)
}

/// As [`run_init`], with `files` in the initramfs's `/boot` (where Quest keeps its programs).
pub fn run_init_with(qemu: &Path, vmlinuz: &Path, program: &Path, files: &[PathBuf], args: &[&str], timeout: Duration) -> Result<String> {
    run_init_on(qemu, vmlinuz, program, files, args, &Machine::tcg(), timeout)
}

/// The emulated machine of a reference run: QEMU's arguments for it (everything but the
/// kernel, initramfs, command line, console and monitor) and words for the kernel's command line.
#[derive(Clone, Debug)]
pub struct Machine {
    pub qemu_args: Vec<String>,
    pub append: String,
}

impl Machine {
    /// The machine the functional tests compare on: q35, TCG, `-cpu max`, 1 CPU, 256 MiB.
    pub fn tcg() -> Machine {
        let a = ["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "256M", "-nic", "none", "-no-reboot"];
        Machine { qemu_args: a.iter().map(|s| s.to_string()).collect(), append: String::new() }
    }

    /// The benchmark's machine with `cpus` CPUs: `-icount shift=0,sleep=off` (guest time =
    /// instructions) and [`crate::ICOUNT_CPU`]. With more than one CPU the kernel gets
    /// `tsc=reliable`: under -icount QEMU runs the vCPUs in turn, so their TSCs, read at
    /// different points of the shared instruction clock, fail Linux's boot-time
    /// synchronisation check, and Linux would fall back to the HPET as its clock source (an
    /// MMIO read per clock_gettime), which the real machine it models would not do.
    pub fn icount(cpus: u32) -> Machine {
        let mut a: Vec<String> =
            ["-machine", "q35", "-accel", "tcg", "-cpu", crate::ICOUNT_CPU, "-m", "256M", "-nic", "none", "-no-reboot", "-icount", "shift=0,sleep=off"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        a.extend(["-smp".to_string(), cpus.to_string()]);
        Machine { qemu_args: a, append: if cpus > 1 { "tsc=reliable".into() } else { String::new() } }
    }
}

/// As [`run_init_with`], on `machine`.
pub fn run_init_on(qemu: &Path, vmlinuz: &Path, program: &Path, files: &[PathBuf], args: &[&str], machine: &Machine, timeout: Duration) -> Result<String> {
    let mut w = cpio::Writer::new();
    w.add_dir("dev", 0o755).map_err(|e| anyhow!("cpio: {e:?}"))?;
    w.add_dir("tmp", 0o1777).map_err(|e| anyhow!("cpio: {e:?}"))?;
    if !files.is_empty() {
        w.add_dir("boot", 0o755).map_err(|e| anyhow!("cpio: {e:?}"))?;
    }
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).with_context(|| format!("{}: no file name", f.display()))?;
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        w.add_file(&format!("boot/{name}"), 0o755, &bytes).map_err(|e| anyhow!("cpio: {e:?}"))?;
    }
    let bytes = std::fs::read(program).with_context(|| format!("reading {}", program.display()))?;
    w.add_file("init", 0o755, &bytes).map_err(|e| anyhow!("cpio: {e:?}"))?;
    let dir = std::env::temp_dir().join(format!("quest-linux-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::create_dir_all(&dir)?;
    let initramfs = dir.join("initramfs.cpio");
    std::fs::write(&initramfs, w.finish())?;
    let append = format!("console=ttyS0 quiet panic=-1 {} rdinit=/init -- {}", machine.append, args.join(" "));
    let mut child = Command::new(qemu)
        .args(&machine.qemu_args)
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(&initramfs)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
            let _ = std::fs::remove_dir_all(&dir);
            bail!("Linux did not power off within {timeout:?}; console:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("QEMU running Linux exited with {status}; console:\n{text}");
    }
    Ok(text)
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
