//! `/usb`: the first USB stick's FAT file system, read-only, read through `crates/fat`
//! (host-tested; a malformed volume gives errors, never a fault) from the stick's blocks
//! (`storage`). Files read as mode 0555 (FAT has no permissions: every file may be run).
//!
//! A read holds the volume (a `host::Gate`: a sleeping lock, so a read may block) and, for each
//! block read, the controller: on xHCI its lock (interrupts off meanwhile: the read polls the
//! event ring), on EHCI its gate (the read blocks until the transfer's interrupt). A read that fails (the device failed or was
//! removed, the volume is malformed) returns EIO and logs the reason once per mount.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::{EIO, EISDIR, ENOENT, ENOTDIR};
use linux_raw_sys::general::{S_IFDIR, S_IFREG};

use super::Host;
use super::host::Gate;
use crate::syscall::Errno;
use crate::vfs::{self, Inode};

/// A stick as `crates/fat` sees it.
struct StickBlocks {
    ctrl: Host,
    stick: usize,
    block_size: usize,
    blocks: u64,
}

impl fat::BlockDevice for StickBlocks {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        self.ctrl.read_blocks(self.stick, lba, buf)
    }
}

struct Mounted {
    dev: StickBlocks,
    vol: fat::Volume,
    logged: AtomicBool,
}

/// One file or directory of the volume.
struct Node {
    fs: Arc<Gate<Mounted>>,
    entry: fat::Entry,
    /// Its path below the mount point (for inode numbers).
    path: String,
}

fn errno(m: &Mounted, path: &str, e: fat::Error) -> Errno {
    match e {
        fat::Error::NotFound => ENOENT,
        fat::Error::NotADirectory => ENOTDIR,
        fat::Error::IsADirectory => EISDIR,
        e => {
            if !m.logged.swap(true, Ordering::Relaxed) {
                hal::println!("usb: /usb{path}: {e}");
            }
            EIO
        }
    }
}

/// Inode numbers: a hash of the path, above the tree's other numbers.
fn ino(path: &str) -> u64 {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    0x100_0000_0000 | (h & 0xff_ffff_ffff)
}

fn inode(fs: Arc<Gate<Mounted>>, entry: fat::Entry, path: String) -> Arc<Inode> {
    let mode = if entry.is_dir { S_IFDIR } else { S_IFREG } | 0o555;
    let n = ino(&path);
    vfs::external(n, Box::new(Node { fs, entry, path }), mode)
}

impl vfs::External for Node {
    fn is_dir(&self) -> bool {
        self.entry.is_dir
    }
    fn size(&self) -> u64 {
        u64::from(self.entry.size)
    }
    fn child(&self, name: &str) -> Result<Arc<Inode>, Errno> {
        let entries = self.entries()?;
        let e = entries.into_iter().find(|e| e.name.eq_ignore_ascii_case(name)).ok_or(ENOENT)?;
        let path = format!("{}/{}", self.path, e.name);
        Ok(inode(self.fs.clone(), e, path))
    }
    fn read_at(&self, pos: u64, max: usize) -> Result<Vec<u8>, Errno> {
        self.fs
            .with(|m| {
                let r = m.vol.read(&mut m.dev, &self.entry, pos, max.min(1 << 20));
                r.map_err(|e| errno(m, &self.path, e))
            })
            .unwrap_or(Err(EIO))
    }
    fn list(&self) -> Result<Vec<(u64, bool, String)>, Errno> {
        Ok(self.entries()?.into_iter().map(|e| (ino(&format!("{}/{}", self.path, e.name)), e.is_dir, e.name)).collect())
    }
}

impl Node {
    fn entries(&self) -> Result<Vec<fat::Entry>, Errno> {
        self.fs
            .with(|m| {
                let r = m.vol.list(&mut m.dev, &self.entry);
                r.map_err(|e| errno(m, &self.path, e))
            })
            .unwrap_or(Err(EIO))
    }
}

/// The stick mounted at `/usb`: (bus index, stick index).
static MOUNTED: IrqLock<Option<(usize, usize)>> = IrqLock::new(None);

/// Mounts the first stick with a FAT volume at `/usb`; logs what it mounted or why a stick's
/// volume was refused.
pub fn mount_first(ctrls: &[Host]) {
    for (bus, &c) in ctrls.iter().enumerate() {
        let all: Vec<usize> = (0..c.stick_count()).collect();
        if mount_one_of(bus, c, &all) {
            return;
        }
    }
}

/// Sticks `removed` of bus `bus` were unplugged: if one was mounted, `/usb` goes (open files
/// keep failing with EIO).
pub(super) fn removed(bus: usize, removed: &[usize]) {
    let mut m = MOUNTED.lock();
    if m.is_some_and(|(b, s)| b == bus && removed.contains(&s)) {
        *m = None;
        drop(m);
        let _ = vfs::unmount("usb");
        hal::println!("usb: /usb: unmounted (the stick was unplugged)");
    }
}

/// Sticks `added` of bus `bus` were plugged in: the first FAT volume among them is mounted
/// if `/usb` is free.
pub(super) fn added(bus: usize, c: Host, added: &[usize]) {
    if MOUNTED.lock().is_none() {
        mount_one_of(bus, c, added);
    }
}

fn mount_one_of(bus: usize, c: Host, which: &[usize]) -> bool {
    {
        let sticks: Vec<(usize, usize, u64)> = which
            .iter()
            .filter_map(|&i| c.stick(i, |m| m.failed.is_none().then_some((i, m.block_size as usize, m.blocks))).flatten())
            .collect();
        for (stick, block_size, blocks) in sticks {
            let mut dev = StickBlocks { ctrl: c, stick, block_size, blocks };
            match fat::Volume::open(&mut dev) {
                Ok(vol) => {
                    let what = format!(
                        "{:?} volume \"{}\", {} clusters of {} bytes",
                        vol.fat_type,
                        vol.label,
                        vol.clusters,
                        vol.cluster_bytes()
                    );
                    let root = vol.root();
                    let fs = Arc::new(Gate::new(Mounted { dev, vol, logged: AtomicBool::new(false) }));
                    let node = inode(fs, root, String::new());
                    match vfs::mount("usb", node, format!("usb{}.{stick} /usb vfat ro 0 0", bus + 1)) {
                        Ok(()) => {
                            hal::println!("usb: /usb: {what} (read-only)");
                            *MOUNTED.lock() = Some((bus, stick));
                            return true;
                        }
                        Err(e) => hal::println!("usb: /usb: not mounted (errno {e})"),
                    }
                }
                Err(e) => hal::println!("usb: stick {stick} on bus {}: not mounted: {e}", bus + 1),
            }
        }
    }
    false
}
