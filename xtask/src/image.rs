//! Building the kernel and its bootable ISO: kernel ELF, symbol map, /boot initrd (cpio newc),
//! GRUB configuration, `grub-mkrescue` (one ISO boots legacy BIOS and UEFI).
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSymbol, SymbolKind};

use crate::{cargo, root};

/// Kernel build profile of the test images (Cargo.toml: optimised, debug assertions and the
/// scheduler's full consistency checks on).
pub const PROFILE: &str = "kernel";
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

pub struct Image {
    pub elf: PathBuf,
    pub iso: PathBuf,
}

/// Profile of the kernel users run (`cargo xtask run`) and `cargo xtask bench` measures: no
/// debug assertions or overflow checks (the scheduler's O(n) consistency check after every
/// decision is a debug assertion).
pub const BENCH_PROFILE: &str = "kernel-release";

/// The image `cargo xtask run` boots: the optimised `kernel-release` build (what users judge),
/// or the test build with `ktest`.
pub fn build_for_run(ktest: bool, add: &[PathBuf]) -> Result<Image> {
    if ktest { build(true, add) } else { build_with(BENCH_PROFILE, false, "release", add) }
}

/// Builds the kernel (`ktest`: the test build) and an ISO with `add` in /boot.
pub fn build(ktest: bool, add: &[PathBuf]) -> Result<Image> {
    build_with(PROFILE, ktest, if ktest { "ktest" } else { "normal" }, add)
}

/// Builds the kernel with cargo profile `profile` into target/quest/`flavour`/.
pub fn build_with(profile: &str, ktest: bool, flavour: &str, add: &[PathBuf]) -> Result<Image> {
    let mut c = cargo();
    c.args(["build", "-p", "kernel", "--bin", "quest", "--target", KERNEL_TARGET, "--profile", profile]);
    if ktest {
        c.args(["--features", "ktest"]);
    }
    let st = c.status().context("running cargo build for the kernel")?;
    if !st.success() {
        bail!("kernel build failed");
    }
    let built = root().join("target").join(KERNEL_TARGET).join(profile).join("quest");
    let out = root().join("target/quest").join(flavour);
    // This process's own tree: two builds at once (two `cargo xtask run` in one checkout) never
    // write into each other's.
    let iso_root = private_dir(&out, "iso")?;
    fs::create_dir_all(iso_root.join("boot/grub"))?;
    let elf_bytes = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let elf = out.join("quest.elf");
    write_atomically(&elf, &elf_bytes)?;

    fs::write(iso_root.join("boot/quest.elf"), &elf_bytes)?;
    fs::write(iso_root.join("boot/kernel.sym"), symbol_map(&elf_bytes)?)?;
    fs::write(iso_root.join("boot/initrd.cpio"), initrd(add)?)?;
    fs::write(iso_root.join("boot/grub/grub.cfg"), GRUB_CFG)?;

    let iso = out.join("quest.iso");
    let r = mkrescue(&iso_root, &iso);
    let _ = fs::remove_dir_all(&iso_root);
    r?;
    Ok(Image { elf, iso })
}

/// A fresh directory `NAME.PID` in `dir`, private to this process (emptied if a dead process
/// with the same id left one behind).
pub fn private_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    let d = dir.join(format!("{name}.{}", std::process::id()));
    if d.exists() {
        fs::remove_dir_all(&d)?;
    }
    fs::create_dir_all(&d)?;
    Ok(d)
}

/// A scratch path beside `dest`, private to this process.
fn private_tmp(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Puts `tmp` in place of `dest` with a rename: a reader that has `dest` open (a QEMU booting
/// the previous image) keeps reading its own, unchanged file, and nobody sees a half-written one.
pub fn replace_atomically(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest).with_context(|| format!("replacing {}", dest.display()))
}

/// Writes `bytes` to `dest` through a private scratch file and [`replace_atomically`].
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = private_tmp(dest);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    replace_atomically(&tmp, dest)
}

/// `grub-mkrescue`: one ISO that boots under legacy BIOS and UEFI. Built beside `iso` and
/// renamed into place, so a QEMU still booting the previous image is not disturbed.
pub fn mkrescue(tree: &Path, iso: &Path) -> Result<()> {
    let tmp = private_tmp(iso);
    let output = std::process::Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&tmp)
        .arg(tree)
        .output()
        .context("running grub-mkrescue")?;
    if !output.status.success() {
        let _ = fs::remove_file(&tmp);
        bail!("grub-mkrescue failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    replace_atomically(&tmp, iso)
}

const GRUB_CFG: &str = "\
set timeout=0
set default=0
set gfxpayload=text
menuentry \"Quest-RS\" {
    multiboot2 /boot/quest.elf
    module2 /boot/kernel.sym kernel.sym
    module2 /boot/initrd.cpio initrd
    boot
}
";

/// The kernel's function symbols, demangled, sorted by address (format: crate `ksym`).
pub fn symbol_map(elf: &[u8]) -> Result<Vec<u8>> {
    let file = object::File::parse(elf).context("parsing the kernel ELF")?;
    let mut syms: Vec<(u64, u64, String)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            let name = s.name().ok()?;
            let name = format!("{:#}", rustc_demangle::demangle(name));
            Some((s.address(), s.size(), name))
        })
        .collect();
    syms.sort();
    syms.dedup_by_key(|s| s.0);
    let mut out = String::new();
    for (a, sz, n) in syms {
        out.push_str(&format!("{a:x} {sz:x} {n}\n"));
    }
    Ok(out.into_bytes())
}

/// The /boot archive: every `--add` file under its file name.
pub fn initrd(add: &[PathBuf]) -> Result<Vec<u8>> {
    let mut w = cpio::Writer::new();
    for f in add {
        let name = file_name(f)?;
        let data = fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        w.add_file(name, 0o755, &data).map_err(|e| anyhow::anyhow!("adding {name} to /boot: {e:?}"))?;
    }
    Ok(w.finish())
}

fn file_name(p: &Path) -> Result<&str> {
    p.file_name().and_then(|n| n.to_str()).with_context(|| format!("{}: not a usable file name", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_roundtrip_keeps_added_files() {
        let dir = std::env::temp_dir().join(format!("xtask-initrd-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("hello.txt");
        fs::write(&f, b"hi\n").unwrap();
        let bytes = initrd(&[f]).unwrap();
        let a = cpio::Archive::new(&bytes);
        let e = a.find("hello.txt").expect("file in archive");
        assert_eq!(e.data, b"hi\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replacing_an_image_leaves_a_running_reader_its_own_copy() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("xtask-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let iso = dir.join("quest.iso");
        write_atomically(&iso, b"first image").unwrap();
        // A QEMU booting the first image holds it open...
        let mut reader = fs::File::open(&iso).unwrap();
        // ... while a second `run` rebuilds it.
        write_atomically(&iso, b"second image, longer").unwrap();
        let mut seen = String::new();
        reader.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, "first image");
        assert_eq!(fs::read(&iso).unwrap(), b"second image, longer");
        // No scratch files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symbol_map_of_this_binary_is_sorted_and_parses() {
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let map = symbol_map(&me).unwrap();
        let m = ksym::SymbolMap::new(&map);
        assert!(m.len() > 100);
        let addrs: Vec<u64> = m.iter().map(|s| s.addr).collect();
        assert!(addrs.windows(2).all(|w| w[0] < w[1]));
    }
}
