//! The file system tree (issue 22 item 2): an in-memory, writable file system for `/` with
//! `/tmp` and `/dev/shm`, device nodes in `/dev` (`null`, `zero`, `full`, `random`, `urandom`,
//! `tty`, `console`), `/boot` (the read-only initrd, as before) and a minimal `/proc` (`self`,
//! `<pid>/stat`, `<pid>/cmdline`, `<pid>/status`, `<pid>/exe`, `meminfo`, `uptime`,
//! `loadavg`, `cpuinfo`, `mounts`).
//!
//! Hand-written: the tree is small and kernel-specific (a file's data is a shared memory
//! object, `shm.rs`, whose pages `MAP_SHARED` maps, with a fixed budget, [`TMPFS_MAX_BYTES`]; `/boot`'s files are the initrd's bytes, never
//! copied; `/proc`'s files are generated when opened).
//!
//! Paths are resolved from the root after joining them to the process's working directory
//! (or an open directory's path, for the `*at` calls): `.` and `..` lexically, symbolic links
//! (only `/proc`'s: `self`, `<pid>/exe`) as they are met. Directories hold their entries in a
//! `BTreeMap` behind their own lock; `rename` takes the two directories' locks in inode order.
use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::{S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};

use crate::syscall::Errno;

/// Most bytes all files of the in-memory file system may hold together (their pages come from
/// the frame allocator, `shm.rs`): beyond, writes fail with ENOSPC.
pub const TMPFS_MAX_BYTES: u64 = 32 << 20;
/// Longest path and name.
pub const PATH_MAX: usize = 4096;
pub const NAME_MAX: usize = 255;

static NEXT_INO: AtomicU64 = AtomicU64::new(1000);

/// A device node's behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dev {
    Null,
    Zero,
    Full,
    Random,
    /// The console (`/dev/tty`, `/dev/console`): opened as the console descriptor.
    Console,
}

/// A `/proc` entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proc {
    Root,
    Pid(u32),
    PidFile(u32, &'static str),
    File(&'static str),
}

pub enum Kind {
    Dir(IrqLock<BTreeMap<String, Arc<Inode>>>),
    /// A regular file: its bytes are a shared memory object (so `MAP_SHARED` maps them).
    File(Arc<crate::shm::ShmObject>),
    Boot(&'static [u8]),
    BootDir,
    Dev(Dev),
    Proc(Proc),
    Symlink(String),
    /// An AF_UNIX socket bound to this path (gone when the socket is closed).
    Sock(alloc::sync::Weak<crate::socket::Sock>),
    /// A file or directory of a file system a driver serves (the USB stick's FAT at `/usb`).
    External(alloc::boxed::Box<dyn External>),
}

/// A node of a file system served by a driver (read-only): what the tree asks of it.
pub trait External: Send + Sync {
    fn is_dir(&self) -> bool;
    fn size(&self) -> u64;
    /// The entry `name` of this directory, as an inode ([`external`]).
    fn child(&self, name: &str) -> Result<Arc<Inode>, Errno>;
    fn read_at(&self, pos: u64, max: usize) -> Result<Vec<u8>, Errno>;
    /// Entries: (inode number, is a directory, name).
    fn list(&self) -> Result<Vec<(u64, bool, String)>, Errno>;
    /// Whether it may be opened for writing (else EROFS).
    fn writable(&self) -> bool {
        false
    }
    fn write_at(&self, _pos: u64, _data: &[u8]) -> Result<usize, Errno> {
        Err(EROFS)
    }
    /// A device's wait for input before a read (called with no lock held): Ok when there
    /// is something to read (or it never waits).
    fn wait_readable(&self, _nonblock: bool) -> Result<(), Errno> {
        Ok(())
    }
}

/// Waits, for a driver's device node, until a read has something to return.
pub fn wait_readable(n: &Inode, nonblock: bool) -> Result<(), Errno> {
    match &n.kind {
        Kind::External(x) => x.wait_readable(nonblock),
        _ => Ok(()),
    }
}

/// Adds device node `node` as `/dev/name`.
pub fn add_dev(name: &str, node: Arc<Inode>) -> Result<(), Errno> {
    let (dev, _) = resolve("/dev", true)?;
    let Kind::Dir(e) = &dev.kind else { return Err(ENOTDIR) };
    let mut e = e.lock();
    if e.contains_key(name) {
        return Err(EEXIST);
    }
    e.insert(name.to_owned(), node);
    Ok(())
}

/// An inode for a driver's node (`mode`: type and permissions).
pub fn external(ino: u64, node: alloc::boxed::Box<dyn External>, mode: u32) -> Arc<Inode> {
    Inode::fixed(ino, Kind::External(node), mode)
}

/// Mounts (`/proc/mounts` lines) made by drivers.
static MOUNTS: IrqLock<Vec<String>> = IrqLock::new(Vec::new());

/// Removes the mount at `/name` (open files keep their nodes).
pub fn unmount(name: &str) -> Result<(), Errno> {
    let r = root();
    let Kind::Dir(e) = &r.kind else { return Err(ENOTDIR) };
    e.lock().remove(name).ok_or(ENOENT)?;
    let point = alloc::format!(" /{name} ");
    MOUNTS.lock().retain(|l| !l.contains(&point));
    Ok(())
}

/// Mounts directory `node` at `/name` (a new root entry), listed in `/proc/mounts` as `line`.
pub fn mount(name: &str, node: Arc<Inode>, line: String) -> Result<(), Errno> {
    let r = root();
    let Kind::Dir(e) = &r.kind else { return Err(ENOTDIR) };
    let mut e = e.lock();
    if e.contains_key(name) {
        return Err(EEXIST);
    }
    e.insert(name.to_owned(), node);
    MOUNTS.lock().push(line);
    Ok(())
}

/// Times in nanoseconds of the monotonic clock (CLOCK_REALTIME is the same clock).
#[derive(Clone, Copy, Default)]
pub struct Meta {
    pub mode: u32,
    pub nlink: u32,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    pub meta: IrqLock<Meta>,
    /// flock(2) holders (open file descriptions by id) and waiters.
    pub flock: IrqLock<Flock>,
    /// fcntl record locks and their waiters.
    pub rlocks: IrqLock<crate::ipc::rlock::RecLocks>,
}

/// flock(2) state of one inode: an exclusive holder or shared holders, and who waits.
#[derive(Default)]
pub struct Flock {
    exclusive: Option<u64>,
    shared: Vec<u64>,
    waiters: Vec<crate::sched::Tid>,
}

impl Flock {
    /// Takes (`exclusive` or shared) or converts the lock of open file `id`; false if another
    /// holder is in the way.
    pub fn try_lock(&mut self, id: u64, exclusive: bool) -> bool {
        let others_shared = self.shared.iter().any(|&s| s != id);
        let other_excl = self.exclusive.is_some_and(|e| e != id);
        if other_excl || (exclusive && others_shared) {
            return false;
        }
        self.unlock(id);
        if exclusive {
            self.exclusive = Some(id);
        } else {
            self.shared.push(id);
        }
        true
    }
    /// Drops `id`'s lock; returns the waiters to wake.
    pub fn unlock(&mut self, id: u64) -> Vec<crate::sched::Tid> {
        if self.exclusive == Some(id) {
            self.exclusive = None;
        }
        self.shared.retain(|&s| s != id);
        core::mem::take(&mut self.waiters)
    }
    pub fn wait(&mut self, t: crate::sched::Tid) {
        if !self.waiters.contains(&t) {
            self.waiters.push(t);
        }
    }
}

fn now() -> u64 {
    hal::time::now_ns()
}

impl Inode {
    fn new(kind: Kind, mode: u32) -> Arc<Inode> {
        let t = now();
        Arc::new(Inode {
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
            kind,
            meta: IrqLock::new(Meta { mode, nlink: 1, atime: t, mtime: t, ctime: t }),
            flock: IrqLock::new(Flock::default()),
            rlocks: IrqLock::new(Default::default()),
        })
    }
    fn fixed(ino: u64, kind: Kind, mode: u32) -> Arc<Inode> {
        Arc::new(Inode { ino, kind, meta: IrqLock::new(Meta { mode, nlink: 1, ..Meta::default() }), flock: IrqLock::new(Flock::default()), rlocks: IrqLock::new(Default::default()) })
    }
    pub fn new_dir(perm: u32) -> Arc<Inode> {
        let d = Inode::new(Kind::Dir(IrqLock::new(BTreeMap::new())), S_IFDIR | (perm & 0o7777));
        d.meta.lock().nlink = 2;
        d
    }
    pub fn new_file(perm: u32) -> Arc<Inode> {
        Inode::new(Kind::File(crate::shm::ShmObject::new(true, 0)), S_IFREG | (perm & 0o7777))
    }
    pub fn is_dir(&self) -> bool {
        if let Kind::External(x) = &self.kind {
            return x.is_dir();
        }
        matches!(self.kind, Kind::Dir(_) | Kind::BootDir | Kind::Proc(Proc::Root) | Kind::Proc(Proc::Pid(_)))
    }
    pub fn mode(&self) -> u32 {
        self.meta.lock().mode
    }
    /// Size in bytes (what stat reports).
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(d) => d.len(),
            Kind::Boot(b) => b.len() as u64,
            Kind::Symlink(s) => s.len() as u64,
            Kind::Dir(e) => 4096.max(e.lock().len() as u64 * 32),
            Kind::External(x) => x.size(),
            _ => 0,
        }
    }
    pub fn touch_modified(&self) {
        let t = now();
        let mut m = self.meta.lock();
        m.mtime = t;
        m.ctime = t;
    }
}

/// The node of an AF_UNIX socket bound to a path (mode: the permission bits).
pub fn new_socket(s: &Arc<crate::socket::Sock>, perm: u32) -> Arc<Inode> {
    Inode::new(Kind::Sock(Arc::downgrade(s)), linux_raw_sys::general::S_IFSOCK | (perm & 0o7777))
}

/// A symbolic link to `target`.
pub fn new_symlink(target: String) -> Arc<Inode> {
    Inode::new(Kind::Symlink(target), linux_raw_sys::general::S_IFLNK | 0o777)
}

/// Bytes the in-memory files hold (allocated).
pub fn bytes_used() -> u64 {
    crate::shm::file_bytes()
}

static ROOT: spin::Once<Arc<Inode>> = spin::Once::new();

/// The root directory (made on first use).
pub fn root() -> Arc<Inode> {
    ROOT.call_once(|| {
        let root = Inode::new_dir(0o755);
        let Kind::Dir(entries) = &root.kind else { unreachable!() };
        let mut e = entries.lock();
        e.insert("tmp".to_owned(), Inode::new_dir(0o1777));
        let dev = Inode::new_dir(0o755);
        if let Kind::Dir(d) = &dev.kind {
            let mut d = d.lock();
            for (name, kind) in [
                ("null", Dev::Null),
                ("zero", Dev::Zero),
                ("full", Dev::Full),
                ("random", Dev::Random),
                ("urandom", Dev::Random),
                ("tty", Dev::Console),
                ("console", Dev::Console),
            ] {
                d.insert(name.to_owned(), Inode::new(Kind::Dev(kind), S_IFCHR | 0o666));
            }
            d.insert("shm".to_owned(), Inode::new_dir(0o1777));
        }
        e.insert("dev".to_owned(), dev);
        e.insert("boot".to_owned(), Inode::fixed(2, Kind::BootDir, S_IFDIR | 0o555));
        e.insert("proc".to_owned(), Inode::fixed(3, Kind::Proc(Proc::Root), S_IFDIR | 0o555));
        // /bin/sh for system() and popen(): Debian's busybox (its ash) when /boot has it — the
        // stock static shell the tests already fetch; the Quest shell is interactive only
        // (no -c). Without busybox there is no /bin/sh (system() reports 127).
        if crate::initrd::get().read("busybox").is_some() {
            let bin = Inode::new_dir(0o755);
            if let Kind::Dir(b) = &bin.kind {
                b.lock().insert("sh".to_owned(), new_symlink(String::from("/boot/busybox")));
            }
            e.insert("bin".to_owned(), bin);
        }
        drop(e);
        root
    })
    .clone()
}

/// `path` joined to directory `base` (absolute, normalised) and normalised: no `.`, `..`,
/// empty components or trailing `/` (the root is `/`).
pub fn join(base: &str, path: &[u8]) -> Result<String, Errno> {
    let path = core::str::from_utf8(path).map_err(|_| ENOENT)?;
    if path.is_empty() {
        return Err(ENOENT);
    }
    if path.len() > PATH_MAX {
        return Err(ENAMETOOLONG);
    }
    let mut parts: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { base };
    for c in start.split('/').chain(path.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c if c.len() > NAME_MAX => return Err(ENAMETOOLONG),
            c => parts.push(c),
        }
    }
    let mut s = String::new();
    for p in &parts {
        s.push('/');
        s.push_str(p);
    }
    if s.is_empty() {
        s.push('/');
    }
    Ok(s)
}

/// The child `name` of directory `dir`.
fn child(dir: &Arc<Inode>, name: &str) -> Result<Arc<Inode>, Errno> {
    match &dir.kind {
        Kind::External(x) => x.child(name),
        Kind::Dir(e) => e.lock().get(name).cloned().ok_or(ENOENT),
        Kind::BootDir => {
            let fs = crate::initrd::get();
            let (i, _) = fs.files().enumerate().find(|(_, (n, _))| *n == name).ok_or(ENOENT)?;
            let data = fs.read(name).ok_or(ENOENT)?;
            Ok(Inode::fixed(0x1_0000 + i as u64, Kind::Boot(data), S_IFREG | 0o555))
        }
        Kind::Proc(Proc::Root) => {
            if name == "self" {
                let pid = crate::process::current().map_or(0, |p| p.pid);
                return Ok(Inode::fixed(4, Kind::Symlink(alloc::format!("/proc/{pid}")), S_IFLNK | 0o777));
            }
            if let Some(f) = PROC_FILES.iter().find(|f| **f == name) {
                return Ok(Inode::fixed(0x2_0000 + proc_index(f), Kind::Proc(Proc::File(f)), S_IFREG | 0o444));
            }
            let pid: u32 = name.parse().map_err(|_| ENOENT)?;
            crate::process::get(pid).ok_or(ENOENT)?;
            Ok(Inode::fixed(0x100_0000 + u64::from(pid) * 16, Kind::Proc(Proc::Pid(pid)), S_IFDIR | 0o555))
        }
        Kind::Proc(Proc::Pid(pid)) => {
            let p = crate::process::get(*pid).ok_or(ENOENT)?;
            if name == "exe" {
                let target = p.name.lock().clone();
                return Ok(Inode::fixed(0x100_0000 + u64::from(*pid) * 16 + 1, Kind::Symlink(target), S_IFLNK | 0o777));
            }
            let f = PID_FILES.iter().find(|f| **f == name).ok_or(ENOENT)?;
            Ok(Inode::fixed(0x100_0000 + u64::from(*pid) * 16 + 2 + proc_index(f), Kind::Proc(Proc::PidFile(*pid, f)), S_IFREG | 0o444))
        }
        _ => Err(ENOTDIR),
    }
}

const PROC_FILES: [&str; 5] = ["meminfo", "uptime", "loadavg", "cpuinfo", "mounts"];
const PID_FILES: [&str; 3] = ["stat", "cmdline", "status"];

fn proc_index(f: &str) -> u64 {
    PROC_FILES.iter().chain(PID_FILES.iter()).position(|x| *x == f).unwrap_or(0) as u64
}

/// Resolves absolute normalised `path`; the last component's symbolic link is followed if
/// `follow`. Returns the node and its path (after links).
pub fn resolve(path: &str, follow: bool) -> Result<(Arc<Inode>, String), Errno> {
    let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).rev().map(String::from).collect();
    let mut cur = root();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == "." {
            continue;
        }
        if name == ".." {
            at.pop();
            cur = root();
            for c in &at {
                cur = child(&cur, c)?;
            }
            continue;
        }
        if !cur.is_dir() {
            return Err(ENOTDIR);
        }
        let next = child(&cur, &name)?;
        if let Kind::Symlink(target) = &next.kind
            && (follow || !todo.is_empty())
        {
            links += 1;
            if links > 40 {
                return Err(ELOOP);
            }
            for c in target.split('/').filter(|c| !c.is_empty()).rev() {
                todo.push(String::from(c));
            }
            if target.starts_with('/') {
                at.clear();
                cur = root();
            }
            continue;
        }
        at.push(name);
        cur = next;
    }
    let mut p = String::new();
    for c in &at {
        p.push('/');
        p.push_str(c);
    }
    if p.is_empty() {
        p.push('/');
    }
    Ok((cur, p))
}

/// The directory that would hold absolute normalised `path`, and the last component's name.
pub fn parent(path: &str) -> Result<(Arc<Inode>, String), Errno> {
    let (dir, name) = path.rsplit_once('/').ok_or(ENOENT)?;
    if name.is_empty() {
        return Err(EEXIST); // the root
    }
    let (d, _) = resolve(if dir.is_empty() { "/" } else { dir }, true)?;
    if !d.is_dir() {
        return Err(ENOTDIR);
    }
    Ok((d, String::from(name)))
}

fn entries(d: &Arc<Inode>) -> Result<&IrqLock<BTreeMap<String, Arc<Inode>>>, Errno> {
    match &d.kind {
        Kind::Dir(e) => Ok(e),
        Kind::BootDir | Kind::Proc(_) => Err(EROFS),
        Kind::External(x) if x.is_dir() => Err(EROFS),
        _ => Err(ENOTDIR),
    }
}

/// Creates `node` as `name` in `dir` (EEXIST if taken).
pub fn link(dir: &Arc<Inode>, name: &str, node: Arc<Inode>) -> Result<(), Errno> {
    let e = entries(dir)?;
    let mut e = e.lock();
    if e.contains_key(name) {
        return Err(EEXIST);
    }
    if node.is_dir() {
        dir.meta.lock().nlink += 1;
    }
    e.insert(String::from(name), node);
    drop(e);
    dir.touch_modified();
    Ok(())
}

/// unlink (`dir_only` false: not a directory) or rmdir (`dir_only` true: an empty directory).
pub fn remove(dir: &Arc<Inode>, name: &str, dir_only: bool) -> Result<(), Errno> {
    if name == "." {
        return Err(EINVAL);
    }
    let e = entries(dir)?;
    let mut e = e.lock();
    let n = e.get(name).ok_or(ENOENT)?;
    match (&n.kind, dir_only) {
        (Kind::Dir(sub), true) => {
            if !sub.lock().is_empty() {
                return Err(ENOTEMPTY);
            }
            dir.meta.lock().nlink -= 1;
        }
        (_, true) => return Err(ENOTDIR),
        (Kind::Dir(_), false) => return Err(EISDIR),
        _ => {}
    }
    let n = e.remove(name).ok_or(ENOENT)?;
    drop(e);
    {
        let mut m = n.meta.lock();
        m.nlink = m.nlink.saturating_sub(1);
        m.ctime = now();
    }
    dir.touch_modified();
    Ok(())
}

/// Whether `a` is `b` or a directory above it (a directory cannot move into itself).
fn contains(a: &Arc<Inode>, b: &Arc<Inode>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    let Kind::Dir(e) = &a.kind else { return false };
    let subs: Vec<Arc<Inode>> = e.lock().values().filter(|n| matches!(n.kind, Kind::Dir(_))).cloned().collect();
    subs.iter().any(|s| contains(s, b))
}

/// rename: moves `from_dir/from` to `to_dir/to`, replacing a file there (or an empty
/// directory by a directory).
pub fn rename(from_dir: &Arc<Inode>, from: &str, to_dir: &Arc<Inode>, to: &str) -> Result<(), Errno> {
    let (fe, te) = (entries(from_dir)?, entries(to_dir)?);
    let node = fe.lock().get(from).cloned().ok_or(ENOENT)?;
    if node.is_dir() && contains(&node, to_dir) {
        return Err(EINVAL);
    }
    if Arc::ptr_eq(from_dir, to_dir) {
        let mut e = fe.lock();
        if from == to {
            return Ok(());
        }
        check_replace(&node, e.get(to))?;
        let n = e.remove(from).ok_or(ENOENT)?;
        e.insert(String::from(to), n);
    } else {
        // Two directories: locked in inode order.
        let (mut a, mut b);
        if from_dir.ino < to_dir.ino {
            a = fe.lock();
            b = te.lock();
        } else {
            b = te.lock();
            a = fe.lock();
        }
        check_replace(&node, b.get(to))?;
        let n = a.remove(from).ok_or(ENOENT)?;
        if b.insert(String::from(to), n).is_some_and(|old| old.is_dir()) {
            to_dir.meta.lock().nlink -= 1;
        }
        if node.is_dir() {
            from_dir.meta.lock().nlink -= 1;
            to_dir.meta.lock().nlink += 1;
        }
    }
    from_dir.touch_modified();
    to_dir.touch_modified();
    Ok(())
}

fn check_replace(node: &Arc<Inode>, old: Option<&Arc<Inode>>) -> Result<(), Errno> {
    let Some(old) = old else { return Ok(()) };
    match (node.is_dir(), &old.kind) {
        (true, Kind::Dir(e)) => {
            if e.lock().is_empty() { Ok(()) } else { Err(ENOTEMPTY) }
        }
        (true, _) => Err(ENOTDIR),
        (false, Kind::Dir(_)) => Err(EISDIR),
        _ => Ok(()),
    }
}

/// Reads up to `max` bytes of a file at `pos`.
pub fn read_at(n: &Inode, pos: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let slice = |b: &[u8]| -> Vec<u8> {
        let start = usize::try_from(pos).unwrap_or(usize::MAX).min(b.len());
        b[start..(start.saturating_add(max)).min(b.len())].to_vec()
    };
    match &n.kind {
        Kind::File(d) => Ok(d.read_at(pos, max)),
        Kind::Boot(b) => Ok(slice(b)),
        Kind::Dev(Dev::Null) => Ok(Vec::new()),
        Kind::Dev(Dev::Zero | Dev::Full) => Ok(alloc::vec![0; max.min(1 << 20)]),
        Kind::Dev(Dev::Random) => Ok(random_bytes(max.min(1 << 20))),
        Kind::Dir(_) | Kind::BootDir | Kind::Proc(Proc::Root | Proc::Pid(_)) => Err(EISDIR),
        Kind::Proc(_) => Ok(slice(&proc_content(n)?)),
        Kind::External(x) if x.is_dir() => Err(EISDIR),
        Kind::External(x) => x.read_at(pos, max),
        _ => Err(EINVAL),
    }
}

/// Writes `data` at `pos` (extending the file; a hole reads as zeros); returns the count.
pub fn write_at(n: &Inode, pos: u64, data: &[u8]) -> Result<usize, Errno> {
    match &n.kind {
        Kind::External(x) => x.write_at(pos, data),
        Kind::File(d) => {
            let n_written = d.write_at(pos, data)?;
            n.touch_modified();
            Ok(n_written)
        }
        Kind::Dev(Dev::Null | Dev::Zero | Dev::Random) => Ok(data.len()),
        Kind::Dev(Dev::Full) => Err(ENOSPC),
        Kind::Dir(_) | Kind::BootDir => Err(EISDIR),
        _ => Err(EBADF),
    }
}

/// truncate / ftruncate / O_TRUNC.
pub fn truncate(n: &Inode, len: u64) -> Result<(), Errno> {
    match &n.kind {
        Kind::File(d) => {
            d.set_len(len)?;
            n.touch_modified();
            Ok(())
        }
        Kind::Dir(_) | Kind::BootDir => Err(EISDIR),
        Kind::Boot(_) | Kind::Proc(_) => Err(EROFS),
        _ => Err(EINVAL),
    }
}

/// Directory entries: (inode, type as in `d_type`, name), `.` and `..` first.
pub fn list(d: &Arc<Inode>) -> Result<Vec<(u64, u8, String)>, Errno> {
    const DT_DIR: u8 = 4;
    const DT_REG: u8 = 8;
    const DT_CHR: u8 = 2;
    const DT_LNK: u8 = 10;
    let mut v = alloc::vec![(d.ino, DT_DIR, String::from(".")), (1, DT_DIR, String::from(".."))];
    let ty = |n: &Inode| match &n.kind {
        Kind::Dev(_) => DT_CHR,
        Kind::Symlink(_) => DT_LNK,
        Kind::Sock(_) => 12, // DT_SOCK
        _ if n.is_dir() => DT_DIR,
        _ => DT_REG,
    };
    match &d.kind {
        Kind::External(x) => {
            for (ino, dir, name) in x.list()? {
                v.push((ino, if dir { DT_DIR } else { DT_REG }, name));
            }
        }
        Kind::Dir(e) => {
            for (name, n) in e.lock().iter() {
                v.push((n.ino, ty(n), name.clone()));
            }
        }
        Kind::BootDir => {
            for (i, (name, _)) in crate::initrd::get().files().enumerate() {
                v.push((0x1_0000 + i as u64, DT_REG, String::from(name)));
            }
        }
        Kind::Proc(Proc::Root) => {
            v.push((4, DT_LNK, String::from("self")));
            for f in PROC_FILES {
                v.push((0x2_0000 + proc_index(f), DT_REG, String::from(f)));
            }
            for p in crate::process::all() {
                v.push((0x100_0000 + u64::from(p.pid) * 16, DT_DIR, alloc::format!("{}", p.pid)));
            }
        }
        Kind::Proc(Proc::Pid(pid)) => {
            v.push((0x100_0000 + u64::from(*pid) * 16 + 1, DT_LNK, String::from("exe")));
            for f in PID_FILES {
                v.push((0x100_0000 + u64::from(*pid) * 16 + 2 + proc_index(f), DT_REG, String::from(f)));
            }
        }
        _ => return Err(ENOTDIR),
    }
    Ok(v)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = hal::cpu::rdtsc() | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The text of a `/proc` file (generated now).
pub fn proc_content(n: &Inode) -> Result<Vec<u8>, Errno> {
    let mut s = String::new();
    let Kind::Proc(what) = n.kind else { return Err(EINVAL) };
    let up = now();
    match what {
        Proc::File("meminfo") => {
            let (free, total) = hal::mm::frame_counts();
            let _ = write!(
                s,
                "MemTotal:       {:8} kB\nMemFree:        {:8} kB\nMemAvailable:   {:8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
                total * 4,
                free * 4,
                free * 4
            );
        }
        Proc::File("uptime") => {
            let _ = writeln!(s, "{}.{:02} 0.00", up / 1_000_000_000, (up / 10_000_000) % 100);
        }
        Proc::File("loadavg") => {
            let _ = writeln!(s, "0.00 0.00 0.00 1/{} {}", crate::process::all().len(), crate::process::all().iter().map(|p| p.pid).max().unwrap_or(0));
        }
        Proc::File("cpuinfo") => {
            for cpu in 0..hal::percpu::online() {
                let _ = write!(s, "processor\t: {cpu}\nvendor_id\t: QuestRS\nmodel name\t: x86-64 (QEMU)\n\n");
            }
        }
        Proc::File("mounts") => {
            s.push_str("rootfs / tmpfs rw 0 0\ninitrd /boot cpio ro 0 0\nproc /proc proc ro 0 0\n");
            for m in MOUNTS.lock().iter() {
                s.push_str(m);
                s.push('\n');
            }
        }
        Proc::PidFile(pid, f) => {
            let p = crate::process::get(pid).ok_or(ENOENT)?;
            let name = p.name.lock().clone();
            let comm = name.rsplit('/').next().unwrap_or("?");
            let threads = p.threads.lock().clone();
            let run: u64 = threads.iter().filter_map(|t| crate::sched::runtime_ns(*t)).sum();
            let ticks = run / 10_000_000; // USER_HZ = 100
            let state = if crate::sched::threads().iter().any(|t| threads.contains(&t.id) && t.state == crate::sched::State::Running) { 'R' } else { 'S' };
            match f {
                "stat" => {
                    let _ = writeln!(
                        s,
                        "{pid} ({comm}) {state} {} {pid} {pid} 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 {} 0 0 {} 0",
                        p.parent,
                        threads.len(),
                        p.mem.lock().space.pages() * 4096
                    );
                }
                "cmdline" => {
                    s.push_str(&p.cmdline.lock());
                }
                _ => {
                    let _ = write!(
                        s,
                        "Name:\t{comm}\nState:\t{state}\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t{}\nVmRSS:\t{} kB\n",
                        p.parent,
                        threads.len(),
                        p.mem.lock().space.pages() * 4
                    );
                }
            }
        }
        _ => return Err(EINVAL),
    }
    Ok(s.into_bytes())
}
