//! `cargo xtask`: the Quest-RS build driver.
//!
//! Every command first makes sure the machine has what it needs (`setup.rs`), so the README's
//! two commands (`cargo xtask run`, `cargo xtask test`) work on a fresh Debian machine.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

mod bench;
mod bench_profile;
mod bench_rt;
mod cc;
mod debian;
mod fuzz;
mod image;
mod libc_test;
mod plot;
mod questv;
mod rt_tests;
mod setup;
mod soundness;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run     build, make the ISO and boot Quest-RS in QEMU with the console on this terminal
            --uefi          boot with UEFI firmware (OVMF) instead of legacy BIOS
            --smp N         number of CPUs (default 1)
            --mem MIB       memory in MiB (default 256)
            --gdb           start halted with QEMU's GDB stub on tcp::1234
            --add FILE      place FILE in /boot (repeatable)
            --batch \"C; C\"  type each command at the prompt, print the console, power off;
                            exit 0 on a clean power-off, non-zero on panic or timeout
            --timeout S     with --batch: the time limit of each command (default 120 s);
                            a command over it gets a ctrl-c and the batch goes on
            --ktest         boot the test build of the kernel (deliberate-fault commands)
            --icount        deterministic guest time (-icount shift=0)
            --sandboxes F   boot the Quest-V monitor with the partition configuration F
                            (TOML, e.g. configs/two-quest.toml); COM1 here, other COM
                            ports on pseudo-terminals
  test    everything CI runs: host unit and property tests, then the QEMU integration tests
            --host          host tests only      --qemu   QEMU tests only
            --long          the slow exhaustive runs too (1,000,000 fuzzed syscalls, more
                            property-test cases, 60 s of libFuzzer per host fuzz target)
  fuzz    libFuzzer runs of the host fuzz targets (fuzz/): [--time S | --runs N] [TARGET...]
  gdb     boot QEMU halted with its GDB stub and attach GDB with the kernel's symbols
  plot    schedule trace to an SVG Gantt chart:
            (--example NAME | --trace FILE | --list) [-o OUT.svg] [--start-ms N] [--end-ms N]
  bench   Quest-RS beside Linux in the same emulated machine (-icount): writes
          target/bench/results.{md,json,svg}; see docs/benchmarks.md
            --quick         fewer iterations (under 10 minutes on 2 cores)
            --runs N        boots of each system (default 3; --quick: 1)
            --quest-only    skip Linux (no kernel download)
            --debug-kernel  measure the `kernel` profile (debug assertions on) instead
                            of `kernel-release`
            --profile NAME  where Quest-RS's kernel instructions go in benchmark NAME
                            (QEMU block log; writes target/bench/profile/NAME.md);
                            with --after A,B: NAME after benchmarks A and B ran;
                            --full: full iteration counts
  libc-test  musl's libc-test (functional + regression), static, on Quest-RS and on Linux in
          the same emulated machine: --src DIR (a libc-test checkout) [--limit S per test]
          [--quest-only | --linux-only]; writes target/libc-test/results.md (docs/conformance.md)
  build   build the kernel and the ISO images only (target/quest/); --test-images: with the
          test fixtures, as `test --qemu` uses them
            --sandboxes F [--add FILE]...   the Quest-V images for partition
                            configuration F instead
  rt-tests  build rt-tests' cyclictest, unmodified, as a static musl program (target/rt-tests/
          cyclictest) from Debian's source package, or QUEST_RT_TESTS_SRC=DIR (a source tree)
  cc      build a C program for Quest with musl-gcc: cc -o OUT FILE.c...
  soundness [DIR]  the house-rule check test runs first: hal's public safe API takes no raw
                   address, no `unsafe` outside hal (xtask/src/soundness.rs)
  setup   install what is missing (apt packages, rustup targets) and report the tools";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = real_main(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(args: &[String]) -> Result<()> {
    let Some(cmd) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "run" => run(&RunOpts::parse(rest)?),
        "test" => test(rest),
        "gdb" => gdb(&RunOpts::parse(rest)?),
        "plot" => plot::run(rest),
        "bench" => bench::run(rest),
        "libc-test" => libc_test::run(rest),
        "cc" => cc::run(rest),
        "rt-tests" => rt_tests::run(rest),
        "fuzz" => fuzz::run(rest),
        "soundness" => soundness::run(&rest.first().map(PathBuf::from).unwrap_or_else(root)),
        "build" => {
            let tools = tools(true)?;
            let _ = tools;
            match args.get(1).map(String::as_str) {
                Some("--sandboxes") => {
                    let f = args.get(2).context("--sandboxes needs a configuration file")?;
                    let o = RunOpts::parse(&args[3..])?;
                    for ktest in [false, true] {
                        let qv = questv::build(Path::new(f), ktest, &boot_files(&o.add)?)?;
                        println!("xtask: {}", qv.iso.display());
                    }
                }
                Some("--test-images") | None => {
                    // `--test-images`: the images `test --qemu` uses (test init.conf and
                    // fixtures), so one QEMU test can be run by hand: QUEST_QEMU=qemu-system-x86_64
                    // QUEST_ISO=target/quest/normal/quest.iso cargo test -p quest-tests --test user NAME
                    let (iso, ktest, release) = if rest.iter().any(|a| a == "--test-images") {
                        let mut f = test_fixtures(true)?;
                        f.extend(cyclictest_fixture().map(|(c, _)| c));
                        build_all(&f)?
                    } else {
                        build_all(&[])?
                    };
                    println!("xtask: images {}, {} and {} (release)", iso.display(), ktest.display(), release.display());
                }
                Some(other) => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
            Ok(())
        }
        "setup" => {
            let t = tools(true)?;
            println!(
                "setup: ok: qemu {}.{}.{} at {}, grub-mkrescue at {}, OVMF {}",
                t.qemu_version.0,
                t.qemu_version.1,
                t.qemu_version.2,
                t.qemu.display(),
                t.grub_mkrescue.display(),
                t.ovmf_code.as_ref().map(|p| p.display().to_string()).unwrap_or("none".into())
            );
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

/// Root of the workspace.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tools(need_uefi: bool) -> Result<setup::Tools> {
    setup::ensure(&setup::SetupOptions { need_uefi, need_musl: true, quiet: true })
}

#[derive(Debug, Default)]
struct RunOpts {
    uefi: bool,
    smp: u32,
    mem: u32,
    gdb: bool,
    add: Vec<PathBuf>,
    batch: Option<String>,
    /// `--timeout`: seconds per batch command.
    timeout: Option<u64>,
    ktest: bool,
    icount: bool,
    sandboxes: Option<PathBuf>,
}

impl RunOpts {
    fn parse(args: &[String]) -> Result<RunOpts> {
        let mut o = RunOpts { smp: 1, mem: 256, ..Default::default() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--uefi" => o.uefi = true,
                "--smp" => o.smp = val("--smp")?.parse().context("--smp: not a number")?,
                "--mem" => o.mem = val("--mem")?.parse().context("--mem: not a number (MiB)")?,
                "--gdb" => o.gdb = true,
                "--add" => o.add.push(PathBuf::from(val("--add")?)),
                "--batch" => o.batch = Some(val("--batch")?),
                "--timeout" => {
                    let t: u64 = val("--timeout")?.parse().context("--timeout: not a number of seconds")?;
                    if t == 0 {
                        bail!("--timeout must be at least 1 (second)");
                    }
                    o.timeout = Some(t);
                }
                "--ktest" => o.ktest = true,
                "--icount" => o.icount = true,
                "--sandboxes" => o.sandboxes = Some(PathBuf::from(val("--sandboxes")?)),
                other => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
        }
        if !(1..=255).contains(&o.smp) {
            bail!("--smp must be between 1 and 255");
        }
        if o.mem < 32 {
            bail!("--mem must be at least 32 (MiB)");
        }
        for f in &o.add {
            if !f.is_file() {
                bail!("--add {}: no such file", f.display());
            }
        }
        Ok(o)
    }
}

/// Builds the kernel (normal and test build, both with debug assertions; and the optimised
/// build `run` boots) and their ISOs, with the user programs and `add` in /boot; returns
/// (normal ISO, ktest ISO, release ISO).
fn build_all(add: &[PathBuf]) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let files = boot_files(add)?;
    let normal = image::build(false, &files)?;
    let ktest = image::build(true, &files)?;
    let release = image::build_for_run(false, &files)?;
    Ok((normal.iso, ktest.iso, release.iso))
}

/// What goes into /boot: the programs of user/examples, two malformed executables (for the
/// ENOEXEC tests and for users to see the error), then the user's `--add` files.
fn boot_files(add: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let dir = root().join("target/quest/user");
    let mut files = cc::build_examples(&dir)?;
    // System programs: user_init (started first; it starts the shell) and its configuration.
    for prog in ["shell", "user_init"] {
        let out = dir.join(prog);
        cc::cc(&out, &[root().join(format!("user/sysprogs/{prog}.c"))])?;
        files.push(out);
    }
    // The benchmark program (`cargo xtask bench`; the QEMU tests run it once as a smoke test).
    let qbench = dir.join("qbench");
    cc::cc(&qbench, &[root().join("bench/qbench.c")])?;
    files.push(qbench);
    files.push(root().join("user/sysprogs/init.conf"));
    let text = dir.join("bad_elf_text");
    std::fs::write(&text, "this is a text file, not an ELF executable\n")?;
    let hello = std::fs::read(dir.join("hello_world"))?;
    let truncated = dir.join("bad_elf_truncated");
    std::fs::write(&truncated, &hello[..hello.len().min(200)])?;
    files.push(text);
    files.push(truncated);
    let (files, replaced) = merge_boot_files(files, add)?;
    for name in replaced {
        eprintln!("xtask: --add {name} replaces the built-in /boot/{name}");
    }
    Ok(files)
}

/// /boot's files: the built-ins, then the user's `--add` files. A user's file whose name equals
/// a built-in's replaces it (the user's file wins; the replaced names are returned so the caller
/// can say so); two `--add` files with one name are refused, naming it.
fn merge_boot_files(builtin: Vec<PathBuf>, add: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut added: Vec<String> = Vec::new();
    for a in add {
        let n = name(a);
        if added.contains(&n) {
            bail!("--add: two files named '{n}' (/boot holds one file per name)");
        }
        added.push(n);
    }
    let mut replaced = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for b in builtin {
        let n = name(&b);
        if added.contains(&n) {
            replaced.push(n);
        } else {
            files.push(b);
        }
    }
    files.extend(add.iter().cloned());
    Ok((files, replaced))
}

/// rt-tests' cyclictest for tests/tests/cyclictest.rs (`rt_tests.rs`) and the Linux init
/// that runs it (user/tools/initrun.c): (cyclictest, initrun), or `None` with the reason
/// printed when rt-tests' source cannot be had.
fn cyclictest_fixture() -> Option<(PathBuf, PathBuf)> {
    let built = rt_tests::cyclictest().and_then(|c| {
        let initrun = root().join("target/quest/user/initrun");
        cc::cc(&initrun, &[root().join("user/tools/initrun.c")])?;
        Ok((c.bin, initrun))
    });
    match built {
        Ok(v) => Some(v),
        Err(e) => {
            println!("xtask: SKIPPING tests/tests/cyclictest.rs (cyclictest not built): {e:#}");
            None
        }
    }
}

/// The files the test images add to /boot: tests/fixtures' and, with `busybox`, Debian's
/// busybox-static (fetched once into target/debian, as for the Linux sandbox) for
/// tests/tests/busybox.rs.
fn test_fixtures(busybox: bool) -> Result<Vec<PathBuf>> {
    let mut v = vec![root().join("tests/fixtures/hello.txt"), root().join("tests/fixtures/init.conf"), root().join("tests/fixtures/can.log")];
    if busybox {
        v.push(debian::busybox()?);
    }
    Ok(v)
}

fn harness_config(t: &setup::Tools, o: &RunOpts, iso: PathBuf) -> Result<quest_tests::Config> {
    let firmware = if o.uefi {
        quest_tests::Firmware::Uefi(t.ovmf_code.clone().context("no OVMF firmware found for --uefi")?)
    } else {
        quest_tests::Firmware::Bios
    };
    Ok(quest_tests::Config {
        qemu: t.qemu.clone(),
        iso,
        firmware,
        smp: o.smp,
        mem_mib: o.mem,
        cpu: "max".into(),
        icount: o.icount,
        echo: true,
        extra_args: vec![],
        timeout: Duration::from_secs(120),
        settle: None,
    })
}

fn run(o: &RunOpts) -> Result<()> {
    if let Some(config) = &o.sandboxes {
        return run_questv(o, config);
    }
    let t = tools(o.uefi)?;
    let img = image::build_for_run(o.ktest, &boot_files(&o.add)?)?;
    let cfg = harness_config(&t, o, img.iso.clone())?;
    if let Some(batch) = &o.batch {
        return run_batch(&cfg, batch, o.timeout.map(Duration::from_secs));
    }
    let mut args = cfg.qemu_args();
    args.extend(["-display", "none", "-serial", "mon:stdio"].map(String::from));
    if o.gdb {
        args.extend(["-s", "-S"].map(String::from));
        eprintln!("xtask: QEMU halted; GDB stub on tcp::1234 (symbols: {})", img.elf.display());
    }
    eprintln!("xtask: booting {} (Ctrl-A X quits QEMU)", img.iso.display());
    let st = Command::new(&t.qemu).args(&args).status().context("starting QEMU")?;
    exit_status(st.code())
}

/// `run --sandboxes FILE`: the Quest-V monitor with that partition. COM1 is this terminal;
/// the other serial ports are pseudo-terminals (QEMU prints their paths; attach with
/// `screen /dev/pts/N` or `picocom`).
fn run_questv(o: &RunOpts, config: &Path) -> Result<()> {
    if o.batch.is_some() || o.gdb {
        bail!("--batch and --gdb are not supported with --sandboxes yet");
    }
    let t = tools(o.uefi)?;
    let qv = questv::build(config, o.ktest, &boot_files(&o.add)?)?;
    let smp = if o.smp > 1 { o.smp } else { qv.cpus };
    if smp < qv.cpus {
        bail!("--smp {smp}: the partition needs {} CPUs", qv.cpus);
    }
    let run = RunOpts { smp, mem: qv.mem_mib.max(o.mem), ..Default::default() };
    let mut cfg = harness_config(&t, &run, qv.iso.clone())?;
    cfg.icount = o.icount;
    let mut args = cfg.qemu_args();
    args.extend(["-display", "none", "-serial", "mon:stdio"].map(String::from));
    for _ in 1..qv.serials {
        args.extend(["-serial", "pty"].map(String::from));
    }
    for (n, who) in &qv.consoles {
        eprintln!("xtask: COM{n}: {who}{}", if *n == 1 { " (this terminal)" } else { " (a pty: see QEMU's message below)" });
    }
    eprintln!("xtask: booting Quest-V {} with {smp} CPUs, {} MiB (Ctrl-A X quits QEMU)", qv.iso.display(), run.mem);
    let st = Command::new(&t.qemu).args(&args).status().context("starting QEMU")?;
    exit_status(st.code())
}

fn exit_status(code: Option<i32>) -> Result<()> {
    match code {
        Some(quest_tests::EXIT_SUCCESS) | Some(0) => Ok(()),
        Some(quest_tests::EXIT_FAILURE) => bail!("the kernel panicked or faulted (QEMU exit {})", quest_tests::EXIT_FAILURE),
        Some(c) => bail!("QEMU exited with status {c}"),
        None => bail!("QEMU was killed by a signal"),
    }
}

/// `--batch "CMD; CMD"`: types each command once the previous one has finished (the prompt is
/// back), then powers off. With `limit`, a command still running after it gets a ctrl-c (which
/// ends the foreground program) and the batch goes on with the next command.
fn run_batch(cfg: &quest_tests::Config, batch: &str, limit: Option<Duration>) -> Result<()> {
    let mut cfg = cfg.clone();
    if let Some(l) = limit {
        cfg.timeout = l;
    }
    let mut q = quest_tests::Quest::boot(&cfg)?;
    for cmd in batch_commands(batch) {
        if let Err(e) = q.shell(cmd) {
            if limit.is_none() || !e.to_string().contains("timed out") {
                return Err(e);
            }
            eprintln!("\nxtask: '{cmd}' still ran after {} s: ctrl-c", cfg.timeout.as_secs());
            q.send_raw(b"\x03")?;
            q.expect_prompt()?;
        }
    }
    q.send_line("poweroff")?;
    let code = q.wait_exit()?;
    println!();
    exit_status(Some(code))
}

/// The commands of a `--batch` argument.
fn batch_commands(batch: &str) -> impl Iterator<Item = &str> {
    batch.split(';').map(str::trim).filter(|c| !c.is_empty())
}

fn gdb(o: &RunOpts) -> Result<()> {
    let t = tools(o.uefi)?;
    let img = image::build(o.ktest, &boot_files(&o.add)?)?;
    let cfg = harness_config(&t, o, img.iso.clone())?;
    let mut args = cfg.qemu_args();
    args.extend(["-display", "none", "-serial", "file:target/quest/gdb-console.log", "-s", "-S"].map(String::from));
    let mut qemu = Command::new(&t.qemu).args(&args).current_dir(root()).spawn().context("starting QEMU")?;
    eprintln!("xtask: QEMU halted with its GDB stub on :1234; console in target/quest/gdb-console.log");
    let st = Command::new("gdb")
        .arg(&img.elf)
        .args(["-ex", "target remote :1234", "-ex", "hbreak quest::kernel_main"])
        .status();
    let _ = qemu.kill();
    let _ = qemu.wait();
    match st {
        Ok(_) => Ok(()),
        Err(e) => bail!("could not start gdb ({e}); install it with apt-get install gdb"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_file_replaces_the_built_in_of_the_same_name() {
        let builtin = vec![PathBuf::from("/b/hello_world"), PathBuf::from("/b/init.conf"), PathBuf::from("/b/shell")];
        let add = [PathBuf::from("/mine/hello_world"), PathBuf::from("/mine/notes.txt")];
        let (files, replaced) = merge_boot_files(builtin, &add).unwrap();
        assert_eq!(files, [PathBuf::from("/b/init.conf"), "/b/shell".into(), "/mine/hello_world".into(), "/mine/notes.txt".into()]);
        assert_eq!(replaced, ["hello_world"]);
        // The archive then holds the user's file under that name, once.
        let dir = std::env::temp_dir().join(format!("xtask-add-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (b, m) = (dir.join("b"), dir.join("m"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(b.join("hello_world"), b"built-in").unwrap();
        std::fs::write(m.join("hello_world"), b"mine").unwrap();
        let (files, _) = merge_boot_files(vec![b.join("hello_world")], &[m.join("hello_world")]).unwrap();
        let bytes = image::initrd(&files).unwrap();
        let a = cpio::Archive::new(&bytes);
        assert_eq!(a.find("hello_world").unwrap().data, b"mine");
        assert_eq!(a.entries().filter(|e| e.as_ref().is_ok_and(|e| e.name == "hello_world")).count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batch_options() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = RunOpts::parse(&a("--batch x --timeout 7")).unwrap();
        assert_eq!((o.batch.as_deref(), o.timeout), (Some("x"), Some(7)));
        assert!(RunOpts::parse(&a("--timeout 0")).is_err());
        assert!(RunOpts::parse(&a("--timeout x")).is_err());
        assert_eq!(batch_commands(" a ;; b c ; ").collect::<Vec<_>>(), ["a", "b c"]);
    }

    #[test]
    fn two_added_files_with_one_name_are_refused() {
        let e = merge_boot_files(vec![], &[PathBuf::from("/a/x.txt"), PathBuf::from("/b/x.txt")]).unwrap_err();
        assert!(e.to_string().contains("two files named 'x.txt'"), "{e}");
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Host crates whose unit, property and doc tests run on the host.
const HOST_CRATES: &[&str] = &[
    "kmem", "cpio", "ksym", "vcpu-sched", "channels", "partition", "elf", "bootinfo", "fuzz-targets", "quest-abi", "signals", "vmmap", "ipc", "monitor-core",
    "pci", "can", "evcore", "usb", "fat", "libquest", "xtask",
];

fn test(args: &[String]) -> Result<()> {
    let host_only = args.iter().any(|a| a == "--host");
    let qemu_only = args.iter().any(|a| a == "--qemu");
    let long = args.iter().any(|a| a == "--long");
    if let Some(a) = args.iter().find(|a| !["--host", "--qemu", "--long"].contains(&a.as_str())) {
        bail!("unknown option '{a}'\n\n{USAGE}");
    }
    // Set up exactly what `run` sets up (apt packages, the rustup targets the no_std builds
    // need) before anything is built, so `test` works as the very first command.
    let t = tools(true)?;
    if !qemu_only {
        println!("xtask: soundness check (hal API, unsafe outside hal)");
        soundness::run(&root())?;
        println!("xtask: host tests");
        let mut c = cargo();
        c.arg("test").arg("--release");
        if long {
            c.env("PROPTEST_CASES", "20000");
        }
        for k in HOST_CRATES {
            c.args(["-p", k]);
        }
        let st = c.status()?;
        if !st.success() {
            bail!("host tests failed");
        }
        println!("xtask: loom model checking of the channels (all interleavings, small configurations)");
        let st = cargo()
            .args(["test", "--release", "-p", "channels", "--test", "loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root().join("target/loom"))
            .status()?;
        if !st.success() {
            bail!("loom tests of the channels failed");
        }
        println!("xtask: host tests of the Linux-side shmcomm library (user/linux/shmcomm)");
        let st = cargo()
            .args(["test", "--release", "--manifest-path"])
            .arg(root().join("user/linux/shmcomm/Cargo.toml"))
            .arg("--target-dir")
            .arg(root().join("target/linux-user"))
            .status()?;
        if !st.success() {
            bail!("host tests of user/linux/shmcomm failed");
        }
        println!("xtask: the shell and user_init on the host (user/sysprogs/host-test.sh)");
        let st = Command::new("sh").arg(root().join("user/sysprogs/host-test.sh")).status()?;
        if !st.success() {
            bail!("user/sysprogs/host-test.sh failed");
        }
        // The harness's own unit tests (its integration tests need QEMU: below).
        let st = cargo().args(["test", "--release", "-p", "quest-tests", "--lib"]).status()?;
        if !st.success() {
            bail!("harness unit tests failed");
        }
        println!("xtask: no_std crates build for the kernel target");
        let st = cargo()
            .args(["build", "--target", "x86_64-unknown-none", "-p", "kmem", "-p", "cpio", "-p", "ksym", "-p", "vcpu-sched", "-p", "channels", "-p", "partition", "-p", "elf", "-p", "bootinfo", "-p", "quest-abi", "-p", "signals", "-p", "vmmap", "-p", "ipc", "-p", "monitor-core", "-p", "pci", "-p", "can", "-p", "evcore", "-p", "usb", "-p", "fat"])
            .status()?;
        if !st.success() {
            bail!("a no_std crate does not build for x86_64-unknown-none");
        }
    }
    if !host_only {
        println!("xtask: building images for the QEMU tests");
        // The Quest-V images without Debian's busybox (their sandboxes' memory is small), first:
        // they rebuild the kernel images in target/quest/{normal,ktest}, which the test images
        // (with busybox) then replace.
        let files = boot_files(&test_fixtures(false)?)?;
        let two = root().join("configs/two-quest.toml");
        let qv = questv::build(&two, false, &files)?;
        let qv_ktest = questv::build(&two, true, &files)?;
        let qv_smp = questv::build(&root().join("tests/fixtures/questv-smp.toml"), true, &files)?;
        let qv_can = questv::build(&root().join("tests/fixtures/questv-can.toml"), true, &files)?;
        let qv_linux = if long {
            let one_cpu = root().join("tests/fixtures/questv-linux-1cpu.toml");
            let can = root().join("tests/fixtures/questv-linux-can.toml");
            Some((questv::build(&root().join("configs/quest-linux.toml"), false, &files)?, questv::build(&one_cpu, true, &files)?, questv::build(&can, true, &files)?))
        } else {
            None
        };
        // The release image is what `cargo xtask run` boots, for the tests that judge it.
        let cyclictest = cyclictest_fixture();
        let mut fixtures = test_fixtures(true)?;
        fixtures.extend(cyclictest.as_ref().map(|(c, _)| c.clone()));
        let (iso, ktest_iso, release_iso) = build_all(&fixtures)?;
        println!("xtask: QEMU integration tests");
        let mut c = cargo();
        c.args(["test", "-p", "quest-tests", "--test", "*", "--", "--test-threads", "2"])
            .env("QUEST_QEMU", &t.qemu)
            .env("QUEST_ISO", &iso)
            .env("QUEST_KTEST_ISO", &ktest_iso)
            .env("QUEST_RELEASE_ISO", &release_iso)
            // The reference runs on Linux (tests/src/linux.rs): Debian's kernel (fetched once
            // into target/debian, as the benchmark does) and the test programs it boots as init.
            .env("QUEST_LINUX_VMLINUZ", debian::kernel()?.vmlinuz)
            .env("QUEST_USER_DIR", root().join("target/quest/user"))
            .env("QUEST_QUESTV_ISO", &qv.iso)
            .env("QUEST_QUESTV_KTEST_ISO", &qv_ktest.iso)
            .env("QUEST_QUESTV_SMP_ISO", &qv_smp.iso)
            .env("QUEST_QUESTV_CAN_ISO", &qv_can.iso);
        match &cyclictest {
            Some((bin, initrun)) => {
                c.env("QUEST_CYCLICTEST", bin).env("QUEST_INITRUN", initrun);
            }
            // Said above (SKIPPING ...): rt-tests' source could not be had.
            None => {
                c.args(["--skip", "cyclictest"]);
            }
        }
        if long {
            // The Linux sandbox tests (tests/tests/questv_linux.rs, #[ignore] in the normal
            // run): they fetch whatever Debian's linux-image-amd64 is today (a 70 MB download).
            // The `-icount` one needs a one-core Linux (xAPIC only under -icount).
            let (qv_linux, qv_linux_ktest, qv_linux_can) = qv_linux.as_ref().context("built above")?;
            c.env("QUEST_QUESTV_LINUX_ISO", &qv_linux.iso)
                .env("QUEST_QUESTV_LINUX_1CPU_KTEST_ISO", &qv_linux_ktest.iso)
                .env("QUEST_QUESTV_LINUX_CAN_ISO", &qv_linux_can.iso)
                .env("QUEST_LINUX_RELEASE", debian::kernel()?.release)
                .arg("--include-ignored");
        }
        if long {
            // The slow exhaustive runs: a million fuzzed system calls, more property cases.
            c.env("QUEST_FUZZ_CALLS", "1000000");
            c.env("QUEST_LONG", "1");
        }
        if let Some(f) = &t.ovmf_code {
            c.env("QUEST_OVMF", f);
        }
        let st = c.status()?;
        if !st.success() {
            bail!("QEMU integration tests failed");
        }
    }
    if long && !qemu_only {
        // Bounded libFuzzer runs of every host fuzz target (the normal run replays their
        // corpora through the same functions: crates/fuzz-targets/tests/corpus.rs).
        let results = fuzz::run_targets(&fuzz::TARGETS.iter().map(|s| s.to_string()).collect::<Vec<_>>(), fuzz::Bound::Seconds(60))?;
        fuzz::print_summary(&results);
    }
    println!("xtask: all tests passed");
    Ok(())
}
