//! USB mass storage on xHCI: FAT images made on the host with Debian's mtools (`mformat`,
//! `mmd`, `mcopy`; xtask's set-up installs them), attached as QEMU `usb-storage` sticks. The
//! stick's volume is mounted read-only at /usb; `fsum` reads its files byte for byte (size and
//! FNV-1a hash compared with the host's), a program stored on it runs from the shell, writes
//! are refused. Malformed volumes (no FAT, a volume larger than the device, a broken cluster
//! chain) are refused or give EIO, and the system goes on.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use quest_tests::{Config, Quest};

fn boot_with(args: &[String]) -> Result<Quest> {
    let mut cfg = Config::from_env(false)?;
    cfg.extra_args.extend(args.iter().cloned());
    Quest::boot(&cfg)
}

fn tmpdir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("quest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("{cmd} (Debian's mtools; `cargo xtask setup` installs it)"))?;
    if !out.status.success() {
        bail!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A `mb` MiB FAT image (FAT32 if `fat32`) with `files` (image path, host file) copied in.
fn image(path: &Path, mb: u64, fat32: bool, dirs: &[&str], files: &[(&str, &Path)]) -> Result<()> {
    let f = std::fs::File::create(path)?;
    f.set_len(mb << 20)?;
    drop(f);
    let p = path.to_str().unwrap();
    let tracks = mb.to_string();
    let mut a = vec!["-i", p, "-t", &tracks, "-h", "64", "-s", "32", "-v", "QUESTSTICK"];
    if fat32 {
        a.push("-F");
    }
    a.push("::");
    run("mformat", &a)?;
    for d in dirs {
        run("mmd", &["-i", p, &format!("::/{d}")])?;
    }
    for (to, from) in files {
        run("mcopy", &["-i", p, from.to_str().unwrap(), &format!("::/{to}")])?;
    }
    Ok(())
}

fn fnv(b: &[u8]) -> String {
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3));
    format!("{} {h:016x}", b.len())
}

fn stick(n: usize, port: usize, img: &Path) -> [String; 4] {
    stick_on("xhci", n, port, img)
}

fn stick_on(bus: &str, n: usize, port: usize, img: &Path) -> [String; 4] {
    [
        "-drive".into(),
        format!("if=none,id=stick{n},format=raw,file={}", img.display()),
        "-device".into(),
        format!("usb-storage,bus={bus}.0,port={port},drive=stick{n}"),
    ]
}

fn hello_world() -> Result<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/quest/user/hello_world");
    if !p.exists() {
        bail!("{} is missing: run `cargo xtask build` first", p.display());
    }
    Ok(p)
}

#[test]
fn a_fat_stick_is_mounted_at_usb_and_read_byte_exact() -> Result<()> {
    let dir = tmpdir("usbstick")?;
    // 300 KiB of a pattern: several READ(10)s of 64 KiB, many clusters.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data)?;
    let text = b"hello from a USB stick\n".to_vec();
    std::fs::write(dir.join("note.txt"), &text)?;
    let hello = hello_world()?;
    let img = dir.join("stick.img");
    image(
        &img,
        40,
        true,
        &["sub"],
        &[("sub/data.bin", &dir.join("data.bin")), ("A long file name.txt", &dir.join("note.txt")), ("hello", &hello)],
    )?;
    let mut a = vec!["-device".to_string(), "qemu-xhci,id=xhci".to_string()];
    a.extend(stick(0, 1, &img));
    let mut q = boot_with(&a)?;
    let boot = q.output();
    assert!(boot.contains("usb: /usb: Fat32 volume \"QUESTSTICK\", ") && boot.contains(" (read-only)"), "{boot}");

    let out = q.shell("fsum /usb /usb/sub")?;
    assert!(out.contains("dir sub") && out.contains("23 A long file name.txt") && out.contains(&format!("{} hello", std::fs::metadata(&hello)?.len())), "{out}");
    assert!(out.contains("300000 data.bin"), "{out}");
    let out = q.shell("fsum /usb/sub/data.bin /usb/SUB/DATA.BIN")?;
    assert!(out.contains(&format!("{} /usb/sub/data.bin", fnv(&data))), "{out}");
    assert!(out.contains(&format!("{} /usb/SUB/DATA.BIN", fnv(&data))), "FAT names are case-insensitive: {out}");
    let out = q.shell("fsum /usb/hello")?;
    assert!(out.contains(&format!("{} /usb/hello", fnv(&std::fs::read(&hello)?))), "{out}");
    // A program stored on the stick runs from the shell.
    assert_eq!(q.shell("/usb/hello")?.trim(), "Hello World!");
    // Read-only: writing is refused, the stick is listed in /proc/mounts and by lsusb -v.
    let out = q.shell("hello_world > /usb/new.txt")?;
    assert!(out.contains("shell: /usb/new.txt: Read-only file system"), "{out}");
    let out = q.shell("fsum /usb/nothing")?;
    assert!(out.contains("fsum: /usb/nothing: No such file or directory"), "{out}");
    let out = q.shell("lsusb -v")?;
    assert!(out.contains("\tMass storage: QEMU QEMU HARDDISK, 81920 blocks of 512 bytes"), "{out}");
    q.power_off_ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn malformed_sticks_are_refused_or_give_eio() -> Result<()> {
    let dir = tmpdir("usbbad")?;
    let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    std::fs::write(dir.join("data.bin"), &data)?;
    // 1: no file system at all.
    let zero = dir.join("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20])?;
    // 2: a 4 MiB volume on a 2 MiB device (its boot sector lies about its size).
    let short = dir.join("short.img");
    image(&short, 4, false, &[], &[])?;
    std::fs::File::options().write(true).open(&short)?.set_len(2 << 20)?;
    // 3: a FAT12 volume whose file's cluster chain was wiped (it runs into free clusters).
    let wiped = dir.join("wiped.img");
    image(&wiped, 4, false, &[], &[("data.bin", &dir.join("data.bin"))])?;
    let mut b = std::fs::read(&wiped)?;
    let reserved = u16::from_le_bytes([b[14], b[15]]) as usize;
    let fat_len = u16::from_le_bytes([b[22], b[23]]) as usize;
    for f in 0..2 {
        let at = (reserved + f * fat_len) * 512;
        b[at + 3..at + 512].fill(0); // clusters 2.. free (entries 0 and 1 kept)
    }
    std::fs::write(&wiped, &b)?;
    let mut a = vec!["-device".to_string(), "qemu-xhci,id=xhci".to_string()];
    a.extend(stick(0, 1, &zero));
    a.extend(stick(1, 2, &short));
    a.extend(stick(2, 3, &wiped));
    let mut q = boot_with(&a)?;
    let boot = q.output();
    assert!(boot.contains("usb: stick 0 on bus 1: not mounted: malformed FAT volume: no FAT boot sector and no partition table in block 0"), "{boot}");
    assert!(boot.contains("usb: stick 1 on bus 1: not mounted: malformed FAT volume: the volume is larger than the device"), "{boot}");
    assert!(boot.contains("usb: /usb: Fat12 volume \"QUESTSTICK\""), "{boot}");
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains("fsum: /usb/data.bin: I/O error"), "{out}");
    assert!(q.output().contains("usb: /usb/data.bin: malformed FAT volume: a cluster chain runs into a free cluster"), "{}", q.output());
    // The system goes on.
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The same stick on an EHCI controller (QEMU's `usb-ehci`): enumerated by the EHCI driver
/// through the shared description code, read through the shared mass-storage protocol over
/// EHCI bulk transfers, mounted at /usb. A high-speed keyboard there is listed; its interrupt
/// endpoint is not served on EHCI yet and the log says so.
#[test]
fn a_stick_on_ehci_is_enumerated_and_mounted() -> Result<()> {
    let dir = tmpdir("usbehci")?;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data)?;
    let hello = hello_world()?;
    let img = dir.join("stick.img");
    image(&img, 16, false, &[], &[("data.bin", &dir.join("data.bin")), ("hello", &hello)])?;
    let mut a = vec!["-device".to_string(), "usb-ehci,id=ehci".to_string()];
    a.extend(stick_on("ehci", 0, 1, &img));
    a.extend(["-device".to_string(), "usb-kbd,bus=ehci.0,port=3,usb_version=2".to_string()]);
    let mut q = boot_with(&a)?;
    let boot = q.output();
    assert!(boot.contains("usb1: EHCI at 00:") && boot.contains(": 2 device(s) enumerated"), "{boot}");
    assert!(boot.contains("usb: EHCI port 3: interrupt endpoints (the periodic schedule) are not supported yet on EHCI"), "{boot}");
    assert!(boot.contains("usb: /usb: Fat16 volume \"QUESTSTICK\""), "{boot}");
    let out = q.shell("lsusb -v")?;
    assert!(out.contains("Bus 001: EHCI at PCI 00:") && out.contains(", 6 ports, 2 device(s)"), "{out}");
    assert!(out.contains("Bus 001 Port 1 Device 001: ID 46f4:0001 QEMU QEMU USB HARDDRIVE"), "{out}");
    assert!(out.contains("Bus 001 Port 3 Device 002: ID 0627:0001 QEMU QEMU USB Keyboard"), "{out}");
    assert!(out.contains("speed high (480 Mbit/s), class 00"), "{out}");
    assert!(out.contains("\tMass storage: QEMU QEMU HARDDISK, 32768 blocks of 512 bytes"), "{out}");
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains(&format!("{} /usb/data.bin", fnv(&data))), "{out}");
    assert_eq!(q.shell("/usb/hello")?.trim(), "Hello World!");
    // Interrupt-driven where the caller may sleep: the boot-time mount's reads block until
    // their completion interrupt (at least the boot sector, FAT and root directory, each a
    // command, data and status transfer). read(2) holds the file's position lock (an IrqLock,
    // interrupts off) around the driver's read, so those reads poll instead.
    let out = q.shell("lsusb -v")?;
    let line = out.lines().find(|l| l.starts_with("Bus 001: EHCI")).unwrap_or_else(|| panic!("{out}"));
    let waited: u64 = line.rsplit(", ").next().and_then(|f| f.strip_suffix(" transfers waited for by interrupt")).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(waited >= 4, "{line}");
    assert!(line.contains(", interrupt INTx, IRQ ") || line.contains(", interrupt MSI vector "), "{line}");
    q.power_off_ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
