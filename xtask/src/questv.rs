//! Quest-V images: the monitor, the partition plan compiled from a TOML configuration, and the
//! sandbox kernel, on one GRUB ISO.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::image::{self, KERNEL_TARGET, PROFILE};
use crate::{cargo, root};

/// A built Quest-V image and what QEMU needs to run it.
pub struct QuestV {
    pub iso: PathBuf,
    pub cpus: u32,
    pub mem_mib: u32,
    /// Serial ports to give QEMU (COM1..COMn): every sandbox console and the monitor's.
    pub serials: usize,
    /// (COM number, what is on it), for the user.
    pub consoles: Vec<(u8, String)>,
}

/// Reads, validates and lays out a partition configuration; every error is reported.
pub fn load_config(path: &Path) -> Result<(partition::Config, partition::Machine, partition::Plan)> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let fail = |errs: Vec<partition::Error>| -> anyhow::Error {
        let list: Vec<String> = errs.iter().map(|e| format!("  - {e}")).collect();
        anyhow::anyhow!("{}: invalid partition configuration ({} error(s)):\n{}", path.display(), errs.len(), list.join("\n"))
    };
    let config = partition::from_toml_str(&text).map_err(fail)?;
    let machine = config
        .machine
        .with_context(|| format!("{}: a [machine] section (cpus, memory) is needed to size the QEMU machine", path.display()))?;
    let plan = config.plan(&machine, &[]).map_err(fail)?;
    Ok((config, machine, plan))
}

/// Builds the monitor and an ISO that boots it with the configuration at `config` (sandbox
/// kernels: the normal build, or the test build when `ktest`).
pub fn build(config: &Path, ktest: bool, files: &[PathBuf]) -> Result<QuestV> {
    let (_cfg, machine, mut plan) = load_config(config)?;
    let linux = linux_images(config, &mut plan)?;
    let blob = plan.try_encode().map_err(|e| anyhow::anyhow!("{}: cannot encode the plan: {e}", config.display()))?;
    let kernel = image::build(ktest, files)?;

    let st = cargo()
        .args(["build", "-p", "monitor", "--bin", "quest-v", "--target", KERNEL_TARGET, "--profile", PROFILE])
        .status()
        .context("running cargo build for the monitor")?;
    if !st.success() {
        bail!("monitor build failed");
    }
    let monitor = root().join("target").join(KERNEL_TARGET).join(PROFILE).join("quest-v");
    let monitor_bytes = fs::read(&monitor)?;

    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
    let out = root().join("target/quest/questv").join(stem).join(if ktest { "ktest" } else { "normal" });
    let iso_root = image::private_dir(&out, "iso")?;
    fs::create_dir_all(iso_root.join("boot/grub"))?;
    let kernel_bytes = fs::read(&kernel.elf)?;
    fs::copy(&monitor, iso_root.join("boot/quest-v.elf"))?;
    fs::write(iso_root.join("boot/kernel.sym"), image::symbol_map(&monitor_bytes)?)?;
    fs::write(iso_root.join("boot/partition.blob"), &blob)?;
    fs::write(iso_root.join("boot/quest.elf"), load_only_elf(&kernel_bytes)?)?;
    fs::write(iso_root.join("boot/quest.sym"), image::symbol_map(&kernel_bytes)?)?;
    fs::write(iso_root.join("boot/initrd.cpio"), image::initrd(files)?)?;
    let mut grub = String::from(GRUB_CFG_HEAD);
    for (module, path) in &linux {
        fs::copy(path, iso_root.join("boot").join(module)).with_context(|| format!("copying {}", path.display()))?;
        grub.push_str(&format!("    module2 /boot/{module} {module}\n"));
    }
    grub.push_str(GRUB_CFG_TAIL);
    fs::write(iso_root.join("boot/grub/grub.cfg"), grub)?;
    let iso = out.join("quest-v.iso");
    let r = image::mkrescue(&iso_root, &iso);
    let _ = fs::remove_dir_all(&iso_root);
    r?;

    let mut consoles: Vec<(u8, String)> = plan
        .sandboxes
        .iter()
        .filter_map(|s| match s.console {
            partition::Console::Com(n) => Some((n, format!("sandbox {} ({}, {})", s.name, s.id, s.image.kind_name()))),
            partition::Console::None => None,
        })
        .collect();
    if let Some(n) = (1..=4u8).find(|n| !consoles.iter().any(|c| c.0 == *n)) {
        consoles.push((n, "the monitor".into()));
    }
    consoles.sort();
    let serials = consoles.iter().map(|c| c.0 as usize).max().unwrap_or(1);
    Ok(QuestV { iso, cpus: machine.cpus, mem_mib: (machine.memory_bytes >> 20) as u32, serials, consoles })
}

const GRUB_CFG_HEAD: &str = "\
set timeout=0
set default=0
set gfxpayload=text
menuentry \"Quest-V\" {
    multiboot2 /boot/quest-v.elf
    module2 /boot/kernel.sym kernel.sym
    module2 /boot/partition.blob partition
    module2 /boot/quest.elf quest
    module2 /boot/initrd.cpio initrd
    module2 /boot/quest.sym quest.sym
";
const GRUB_CFG_TAIL: &str = "    boot\n}\n";

/// `kernel = "debian"` in a Linux sandbox's image: Debian's stock kernel.
pub const DEBIAN_KERNEL: &str = "debian";
/// `initrd = "busybox"`: the initramfs xtask builds from Debian's busybox-static.
pub const BUSYBOX_INITRD: &str = "busybox";
/// `initrd = "busybox-can"`: the same plus what a Linux sandbox needs to drive a CAN controller
/// it owns (see [`busybox_initramfs`]).
pub const BUSYBOX_CAN_INITRD: &str = "busybox-can";

/// The kernel modules of `busybox-can` (with their dependencies, from the kernel's own package):
/// the kvaser_pci driver (its sja1000 core and can-dev) and raw CAN sockets (can-raw, can).
const CAN_MODULES: &[&str] = &["can-raw", "kvaser_pci"];
/// The programs of `busybox-can` (from [`crate::debian::CAN_PACKAGES`]): (in the package, in the
/// initramfs). iproute2's `ip` takes busybox's place in /sbin (`busybox --install` leaves a file
/// that is there alone; busybox's `ip` knows no `type can`). Debian's busybox shell prefers its
/// own applets to PATH, so it is run as `/sbin/ip`.
const CAN_PROGRAMS: &[(&str, &str)] = &[("usr/bin/cansend", "usr/bin/cansend"), ("usr/bin/candump", "usr/bin/candump"), ("bin/ip", "sbin/ip")];

/// Resolves each Linux sandbox's kernel and initramfs (Debian's kernel and the busybox
/// initramfs by name, anything else a path relative to the configuration file), checks that
/// they boot in the sandbox's RAM as the monitor will lay them out, and renames them in `plan`
/// to the boot modules they become. Returns (module name, file) for the ISO.
fn linux_images(config: &Path, plan: &mut partition::Plan) -> Result<Vec<(String, PathBuf)>> {
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let channels: Vec<Vec<(u64, u64)>> = plan.sandboxes.iter().map(|s| plan.channels_of(s.id).map(|(c, g)| (g, c.phys.len())).collect()).collect();
    for sb in &mut plan.sandboxes {
        let ram: Vec<(u64, u64)> = sb.guest_ram().map(|g| (g.guest, g.len)).collect();
        let com = match sb.console {
            partition::Console::Com(n) => Some(n),
            partition::Console::None => None,
        };
        // A sandbox with PCI functions also gets a PCI root bridge (its size depends on them, and
        // they are known only at boot: the largest a configuration can ask for is planned here).
        let pci = (!sb.pci.is_empty()).then(|| monitor_core::linux::PciRoot { intx: sb.pci.iter().map(|a| (a.dev, 4, 15)).collect(), mem: vec![(0, 1 << 32); 6 * sb.pci.len()] });
        let linux_pci = pci.is_some();
        let platform = monitor_core::linux::Platform { apic_ids: vec![0; sb.cpus.len()], uart: sb.console.ports().map(|p| p.first), pci };
        let (name, id) = (sb.name.clone(), sb.id);
        let partition::Image::Linux { kernel, initrd, cmdline } = &mut sb.image else { continue };
        let what = |w: &str| format!("{}: sandbox '{name}': {w}", config.display());
        let kernel_path = if kernel == DEBIAN_KERNEL { crate::debian::kernel()?.vmlinuz } else { dir.join(&*kernel) };
        let initrd_path = match initrd.as_deref() {
            None => None,
            Some(BUSYBOX_INITRD) => Some(busybox_initramfs(false)?),
            Some(BUSYBOX_CAN_INITRD) => Some(busybox_initramfs(true)?),
            Some(p) => Some(dir.join(p)),
        };
        let image = fs::read(&kernel_path).with_context(|| what(&format!("reading its kernel {}", kernel_path.display())))?;
        let rd_len = match &initrd_path {
            Some(p) => fs::metadata(p).with_context(|| what(&format!("reading its initramfs {}", p.display())))?.len(),
            None => 0,
        };
        // The plan the monitor makes at boot (with the longest TSC figure it can add).
        let cl = monitor_core::linux::cmdline(u32::MAX, com, linux_pci, cmdline);
        monitor_core::linux::plan(&image, rd_len, &cl, &ram, &channels[id as usize], &platform)
            .map_err(|e| anyhow::anyhow!("{}", what(&format!("Linux kernel {}: {e}", kernel_path.display()))))?;
        let kmod = format!("linux{id}.kernel");
        out.push((kmod.clone(), kernel_path));
        *kernel = kmod;
        if let Some(p) = initrd_path {
            let imod = format!("linux{id}.initrd");
            out.push((imod.clone(), p));
            *initrd = Some(imod);
        }
    }
    Ok(out)
}

/// The Linux sandbox's /init: mounts the kernel's file systems, installs busybox's applets,
/// says it is up and gives a root shell on the console (the sandbox's own UART), again when it
/// exits. It stays PID 1 so that busybox's `reboot`, `poweroff` and `halt`, which signal init
/// (TERM, USR2, USR1), end the kernel: reboot and power off (the monitor reports either and
/// stops the sandbox). `halt` powers off too: a halted kernel would hold its core with
/// interrupts off, no exit and no report.
const LINUX_INIT: &str = "#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
hostname linux
# queshe: /dev/qSB<n>, the console of each Quest sandbox this one has queshe channels to.
qshd > /tmp/qshd.log 2>&1 &
echo \"Quest-V Linux sandbox: Linux $(uname -r) up, root shell on $(cat /proc/consoles | cut -d' ' -f1)\"
trap 'exec reboot -f' TERM
trap 'exec poweroff -f' USR1 USR2
while :; do
  setsid cttyhack /bin/sh -l &
  sh=$!
  while kill -0 $sh 2>/dev/null; do wait $sh; done
done
";

/// A root shell's prompt in the Linux sandbox.
const LINUX_PROFILE: &str = "export PS1='linux:\\w# '\n";

/// The busybox initramfs (target/quest/linux/busybox.cpio): Debian's busybox-static as
/// /bin/busybox, /init, /etc/profile and /dev/console, and the project's Linux-side programs
/// in /bin (`cc::LINUX_PROGRAMS`: the seed's shmcomm programs built for Linux).
///
/// With `can` (target/quest/linux/busybox-can.cpio), also: the CAN modules of the very kernel
/// package the sandbox boots ([`CAN_MODULES`] and their dependencies, read from each module's
/// `depends=`) in /lib/modules with their load order in /lib/modules/can.order (`insmod` each
/// in turn: busybox's modprobe would need a modules.dep), Debian's can-utils `cansend` and
/// `candump` and iproute2's `ip` in /usr/bin, and the shared libraries they need (their
/// DT_NEEDED, resolved in Debian's library packages) with the dynamic loader in
/// /lib/x86_64-linux-gnu and /lib64.
pub fn busybox_initramfs(can: bool) -> Result<PathBuf> {
    let busybox = fs::read(crate::debian::busybox()?)?;
    let mut w = cpio::Writer::new();
    let e = |e: cpio::WriteError| anyhow::anyhow!("{e}");
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        w.add_dir(d, 0o755).map_err(e)?;
    }
    w.add_char_device("dev/console", 0o600, 5, 1).map_err(e)?;
    w.add_file("bin/busybox", 0o755, &busybox).map_err(e)?;
    w.add_symlink("bin/sh", "busybox").map_err(e)?;
    w.add_file("init", 0o755, LINUX_INIT.as_bytes()).map_err(e)?;
    w.add_file("etc/profile", 0o644, LINUX_PROFILE.as_bytes()).map_err(e)?;
    for (name, path) in crate::cc::linux_programs(&root().join("target/quest/linux/bin"))? {
        let bin = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        w.add_file(&format!("bin/{name}"), 0o755, &bin).map_err(e)?;
    }
    if can {
        add_can(&mut w)?;
    }
    let out = root().join(if can { "target/quest/linux/busybox-can.cpio" } else { "target/quest/linux/busybox.cpio" });
    fs::create_dir_all(out.parent().unwrap())?;
    fs::write(&out, w.finish())?;
    Ok(out)
}

/// The CAN part of the `busybox-can` initramfs (see [`busybox_initramfs`]).
fn add_can(w: &mut cpio::Writer) -> Result<()> {
    let e = |e: cpio::WriteError| anyhow::anyhow!("{e}");
    let kernel = crate::debian::kernel()?;
    for d in ["lib", "lib/modules", "lib/x86_64-linux-gnu", "lib64", "usr", "usr/bin", "sbin"] {
        w.add_dir(d, 0o755).map_err(e)?;
    }
    let modules = crate::debian::modules_with_dependencies(&kernel.release, CAN_MODULES)?;
    let mut order = String::new();
    for (name, path) in &modules {
        w.add_file(&format!("lib/modules/{name}.ko"), 0o644, &fs::read(path)?).map_err(e)?;
        order.push_str(name);
        order.push('\n');
    }
    w.add_file("lib/modules/can.order", 0o644, order.as_bytes()).map_err(e)?;
    let roots: Vec<PathBuf> = crate::debian::CAN_PACKAGES.iter().map(|p| crate::debian::package(p, "the Linux sandbox's CAN tools")).collect::<Result<_>>()?;
    let mut bins = Vec::new();
    for (prog, to) in CAN_PROGRAMS {
        let p = roots.iter().map(|r| r.join(prog)).find(|p| p.is_file()).with_context(|| format!("no package of {:?} has {prog}", crate::debian::CAN_PACKAGES))?;
        w.add_file(to, 0o755, &fs::read(&p)?).map_err(e)?;
        bins.push(p);
    }
    for (soname, path) in crate::debian::linked_libraries(&bins, &roots)? {
        w.add_file(&format!("lib/x86_64-linux-gnu/{soname}"), 0o755, &fs::read(&path)?).map_err(e)?;
    }
    w.add_symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").map_err(e)?;
    Ok(())
}

/// A copy of an ELF64 executable with only what a loader needs: the ELF header, the program
/// headers and the PT_LOAD segments' file bytes (no sections, no debug information), so the
/// boot module the monitor copies into each sandbox is small.
pub fn load_only_elf(elf: &[u8]) -> Result<Vec<u8>> {
    let u16_at = |o: usize| -> Result<u16> { Ok(u16::from_le_bytes(elf.get(o..o + 2).context("truncated ELF")?.try_into()?)) };
    let u32_at = |o: usize| -> Result<u32> { Ok(u32::from_le_bytes(elf.get(o..o + 4).context("truncated ELF")?.try_into()?)) };
    let u64_at = |o: usize| -> Result<u64> { Ok(u64::from_le_bytes(elf.get(o..o + 8).context("truncated ELF")?.try_into()?)) };
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        bail!("not an ELF64 file");
    }
    let phoff = u64_at(32)? as usize;
    let phnum = u16_at(56)? as usize;
    if u16_at(54)? != 56 {
        bail!("unexpected program header size");
    }
    let ph_len = phnum * 56;
    let mut out = vec![0u8; 64 + ph_len];
    out[..64].copy_from_slice(&elf[..64]);
    out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[40..48].copy_from_slice(&0u64.to_le_bytes()); // e_shoff
    out[58..60].copy_from_slice(&0u16.to_le_bytes()); // e_shentsize
    out[60..62].copy_from_slice(&0u16.to_le_bytes()); // e_shnum
    out[62..64].copy_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    for i in 0..phnum {
        let src = phoff + i * 56;
        let mut ph = elf.get(src..src + 56).context("program header beyond the file")?.to_vec();
        let dst = 64 + i * 56;
        if u32_at(src)? == 1 {
            let (off, vaddr, filesz) = (u64_at(src + 8)? as usize, u64_at(src + 16)?, u64_at(src + 32)? as usize);
            let data = elf.get(off..off + filesz).context("segment beyond the file")?;
            // Keep file offset and address congruent modulo the page size.
            let mut at = out.len().next_multiple_of(4096) + (vaddr % 4096) as usize;
            if at < out.len() {
                at += 4096;
            }
            out.resize(at, 0);
            out.extend_from_slice(data);
            ph[8..16].copy_from_slice(&(at as u64).to_le_bytes());
        } else {
            // Other headers keep their type but point at nothing.
            ph[8..16].copy_from_slice(&0u64.to_le_bytes());
            ph[32..40].copy_from_slice(&0u64.to_le_bytes());
        }
        out[dst..dst + 56].copy_from_slice(&ph);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_are_valid() {
        for f in ["configs/two-quest.toml", "configs/quest-linux.toml", "configs/quest-v-example.toml", "tests/fixtures/questv-smp.toml", "tests/fixtures/questv-linux-1cpu.toml", "tests/fixtures/questv-can.toml", "tests/fixtures/questv-linux-can.toml"] {
            let p = root().join(f);
            if let Err(e) = load_config(&p) {
                panic!("{f}: {e:#}");
            }
        }
    }

    /// Writes `toml` to a temporary file and returns load_config's error text.
    fn rejection(name: &str, toml: &str) -> String {
        let p = std::env::temp_dir().join(format!("xtask-questv-{}-{name}.toml", std::process::id()));
        fs::write(&p, toml).unwrap();
        let r = load_config(&p);
        let _ = fs::remove_file(&p);
        match r {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    const MACHINE: &str = "[machine]\ncpus = 2\nmemory = \"512 MiB\"\n";

    fn sb(name: &str, cpus: &str, extra: &str) -> String {
        format!("[[sandbox]]\nname = \"{name}\"\ncpus = {cpus}\nmemory = \"64 MiB\"\nimage = \"quest\"\n{extra}\n")
    }

    #[test]
    fn invalid_configs_are_rejected_naming_the_problem() {
        let cases: Vec<(&str, String, &[&str])> = vec![
            (
                "overlap",
                format!(
                    "{MACHINE}{}{}",
                    sb("a", "[0]", "").replace("\"64 MiB\"", "{ start = \"0x400_0000\", end = \"0x800_0000\" }"),
                    sb("b", "[1]", "").replace("\"64 MiB\"", "{ start = \"0x600_0000\", end = \"0xa00_0000\" }")
                ),
                &["overlap"],
            ),
            ("cpu twice", format!("{MACHINE}{}{}", sb("a", "[0]", ""), sb("b", "[0]", "")), &["cpu 0", "a", "b"]),
            (
                "unknown sandbox",
                format!("{MACHINE}{}{}[[channel]]\nkey = 1\nsize = \"4 KiB\"\nsandboxes = [\"a\", \"nosuch\"]\n", sb("a", "[0]", ""), sb("b", "[1]", "")),
                &["nosuch"],
            ),
            ("beyond memory", format!("[machine]\ncpus = 2\nmemory = \"96 MiB\"\n{}{}", sb("a", "[0]", ""), sb("b", "[1]", "")), &["machine has"]),
            ("console twice", format!("{MACHINE}{}{}", sb("a", "[0]", "console = \"COM1\""), sb("b", "[1]", "console = \"COM1\"")), &["COM1"]),
            ("cpu beyond", format!("{MACHINE}{}", sb("a", "[5]", "")), &["cpu 5", "beyond"]),
            ("no machine", sb("a", "[0]", ""), &["[machine]"]),
            ("bad toml", format!("{MACHINE}[[sandbox]\n"), &["line"]),
        ];
        for (name, toml, words) in cases {
            let msg = rejection(name, &toml);
            for w in words {
                assert!(msg.contains(w), "{name}: message does not mention {w:?}:\n{msg}\n--- config ---\n{toml}");
            }
        }
    }

    #[test]
    fn load_only_keeps_segments() {
        // This test binary is an ELF64 executable: its loadable bytes survive.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let small = load_only_elf(&me).unwrap();
        assert!(small.len() < me.len());
        let a = object::File::parse(&*me).unwrap();
        let b = object::File::parse(&*small).unwrap();
        use object::{Object, ObjectSegment};
        let sa: Vec<_> = a.segments().map(|s| (s.address(), s.data().unwrap().to_vec())).collect();
        let sb: Vec<_> = b.segments().map(|s| (s.address(), s.data().unwrap().to_vec())).collect();
        assert_eq!(sa, sb);
    }
}
