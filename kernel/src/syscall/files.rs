//! Files: read and write (console, pipes, the file tree of `crate::vfs`), open/creat with
//! O_CREAT/O_EXCL/O_TRUNC/O_APPEND/O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC, the `*at` calls, close,
//! lseek, pread/pwrite, sendfile, the stat family, getdents64, dup/fcntl, pipe, the terminal
//! ioctls, the working directory, mkdir/rmdir/unlink/rename/link/symlink/readlink, access,
//! truncate, fsync, utimensat, chmod, chown, umask and statfs.
//!
//! Ownership is not kept: every file belongs to root (uid 0), and `chown` to anyone else is
//! EPERM (not supported yet). `flock` locks whole files; record locks (`fcntl`
//! F_GETLK/F_SETLK/F_SETLKW) are not supported yet (EINVAL, logged).
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use linux_raw_sys::ioctl::{FIONBIO, TCGETS, TIOCGWINSZ};

use super::{Cx, Errno, SysResult, UserCStr, UserPtr, UserSlice, UserSliceMut};
use crate::fs::{File, OpenFile};
use super::can::{can_ioctl, can_path, can_read, can_write};
use crate::signal::ERESTARTSYS;
use crate::vfs::{self, Inode, Kind};

/// Largest single read or write (bytes), as the kernel buffers it.
const IO_MAX: u64 = 1 << 20;
/// Reads and writes of pipes up to this size copy through a buffer on the kernel stack.
const SMALL_IO: usize = 512;

/// Writes user bytes to the console's device file (the UART directly if no driver has
/// registered one), through a kernel buffer of at most a page.
fn write_console(cx: &Cx, buf: UserSlice) -> SysResult {
    let buf = buf.prefix(IO_MAX);
    let console = crate::drivers::console();
    let mut chunk = vec![0u8; 4096.min(buf.len() as usize)];
    for c in buf.chunks(4096) {
        let part = &mut chunk[..c.len() as usize];
        c.read_into(cx.p(), part)?;
        match console {
            Some(d) => {
                d.write(part)?;
            }
            None => crate::drivers::serial::write_whole(part),
        }
    }
    Ok(buf.len())
}

pub(super) fn file(cx: &Cx, fd: u64) -> Result<File, Errno> {
    cx.p().files.lock().get(fd).cloned()
}

fn writable(of: &OpenFile) -> bool {
    of.flags.load(Ordering::Relaxed) & O_ACCMODE != O_RDONLY
}

fn readable(of: &OpenFile) -> bool {
    of.flags.load(Ordering::Relaxed) & O_ACCMODE != O_WRONLY
}

pub fn write(cx: &Cx, fd: u64, buf: UserSlice) -> SysResult {
    let p = cx.p();
    match file(cx, fd)? {
        File::Console => write_console(cx, buf),
        File::Pipe(e) if e.write => {
            // Small writes (messages) pass through the kernel stack, not the heap.
            let mut small = [0u8; SMALL_IO];
            let heap;
            let data: &[u8] = if buf.len() <= SMALL_IO as u64 {
                let d = &mut small[..buf.len() as usize];
                buf.read_into(p, d)?;
                d
            } else {
                heap = buf.prefix(IO_MAX).read_to_vec(p)?;
                &heap
            };
            match if e.nonblock.load(Ordering::Relaxed) { e.pipe.write_now(data) } else { e.pipe.write(data) } {
                Ok(0) if !data.is_empty() => Err(EAGAIN),
                Ok(n) => Ok(n as u64),
                Err(crate::pipe::WriteError::Interrupted) => Err(ERESTARTSYS),
                Err(crate::pipe::WriteError::Broken) => {
                    // Linux: SIGPIPE too (its default ends the writer), and EPIPE if it is handled.
                    let _ = crate::signal::send(&cx.proc, Some(cx.tid), signals::SigInfo::kernel(signals::SIGPIPE));
                    Err(EPIPE)
                }
            }
        }
        File::Sock(s) => super::sockets::send_bytes(cx, &s, buf, None, false, false),
        File::Can(c) => can_write(cx, c, buf),
        File::Event(e) => crate::eventfd::write(cx, &e, buf),
        File::Timer(_) | File::Epoll(_) => Err(EINVAL),
        File::Node(of) => {
            if !writable(&of) {
                return Err(EBADF);
            }
            let data = buf.prefix(IO_MAX).read_to_vec(p)?;
            let mut pos = of.pos.lock();
            if of.flags.load(Ordering::Relaxed) & O_APPEND != 0 {
                pos.set(of.node.size());
            }
            let n = vfs::write_at(&of.node, pos.get(), &data)?;
            pos.set(pos.get() + n as u64);
            Ok(n as u64)
        }
        _ => Err(EBADF),
    }
}

/// `struct iovec` as two words (its `iov_base` is a pointer type, which is not `Pod`).
type Iovec = [u64; 2];
const _: () = assert!(core::mem::size_of::<iovec>() == core::mem::size_of::<Iovec>());

pub fn writev(cx: &Cx, fd: u64, iov: UserPtr<Iovec>, cnt: u64) -> SysResult {
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let [base, len] = iov.at(i)?.read(cx.p())?;
        if len == 0 {
            continue;
        }
        match write(cx, fd, UserSlice::new(base, len)) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// The bytes of an open tree file from `pos` (its /proc text if it has one).
fn node_read(of: &OpenFile, pos: u64, len: u64) -> Result<Vec<u8>, Errno> {
    let max = len.min(IO_MAX) as usize;
    match &of.snapshot {
        Some(s) => {
            let start = usize::try_from(pos).unwrap_or(usize::MAX).min(s.len());
            Ok(s[start..start.saturating_add(max).min(s.len())].to_vec())
        }
        None => vfs::read_at(&of.node, pos, max),
    }
}

pub fn read(cx: &Cx, fd: u64, buf: UserSliceMut) -> SysResult {
    let p = cx.p();
    let len = buf.len();
    match file(cx, fd)? {
        File::Pipe(e) if !e.write => {
            // Small reads (messages) pass through the kernel stack, not the heap.
            let mut small = [0u8; SMALL_IO];
            let mut heap = Vec::new();
            let out: &mut [u8] = if len <= SMALL_IO as u64 {
                &mut small[..len as usize]
            } else {
                heap.resize(len.min(IO_MAX) as usize, 0);
                &mut heap
            };
            let n = if e.nonblock.load(Ordering::Relaxed) { e.pipe.read_now_into(out).ok_or(EAGAIN)? } else { e.pipe.read_into(out).ok_or(ERESTARTSYS)? };
            buf.write(p, &out[..n])?;
            Ok(n as u64)
        }
        File::Pipe(_) | File::Shm(_) => Err(EBADF),
        File::Can(c) => can_read(cx, c, buf),
        File::Sock(s) => {
            // Descriptors sent with the bytes (SCM_RIGHTS) are dropped by read, as on Linux.
            let r = s.recv(len.min(IO_MAX) as usize, s.nonblock.load(Ordering::Relaxed))?;
            buf.write(p, &r.data)?;
            Ok(r.data.len() as u64)
        }
        File::Event(e) => crate::eventfd::read(cx, &e, buf),
        File::Timer(t) => crate::timerfd::read(cx, &t, buf),
        File::Epoll(_) => Err(EINVAL),
        File::Node(of) => {
            if !readable(&of) {
                return Err(EBADF);
            }
            vfs::wait_readable(&of.node, of.flags.load(Ordering::Relaxed) & O_NONBLOCK != 0)?; // a driver's device waits here, unlocked
            let mut pos = of.pos.lock();
            let data = node_read(&of, pos.get(), len)?;
            buf.write(p, &data)?;
            pos.set(pos.get() + data.len() as u64);
            Ok(data.len() as u64)
        }
        File::Console => {
            if len == 0 {
                return Ok(0);
            }
            // The console's device file (a line at a time, with echo). A killed task (ctrl-c,
            // kill -t) stops waiting for input and dies on the way out; a signal interrupts.
            let console = crate::drivers::console().ok_or(EIO)?;
            let line = console
                .read(usize::try_from(len).unwrap_or(usize::MAX), &|| p.terminal.load(Ordering::Relaxed) || crate::sched::must_act_before_user())
                .map_err(|e| if e == EINTR { ERESTARTSYS } else { e })?;
            buf.write(p, &line)?;
            Ok(line.len() as u64)
        }
    }
}

pub fn readv(cx: &Cx, fd: u64, iov: UserPtr<Iovec>, cnt: u64) -> SysResult {
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let [base, len] = iov.at(i)?.read(cx.p())?;
        if len == 0 {
            continue;
        }
        match read(cx, fd, UserSliceMut::new(base, len)) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

fn node_file(cx: &Cx, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    match file(cx, fd)? {
        File::Node(of) => Ok(of),
        _ => Err(ESPIPE),
    }
}

pub fn pread(cx: &Cx, fd: u64, buf: UserSliceMut, off: u64) -> SysResult {
    let of = node_file(cx, fd)?;
    if (off as i64) < 0 {
        return Err(EINVAL);
    }
    if !readable(&of) {
        return Err(EBADF);
    }
    let data = node_read(&of, off, buf.len())?;
    buf.write(cx.p(), &data)?;
    Ok(data.len() as u64)
}

pub fn pwrite(cx: &Cx, fd: u64, buf: UserSlice, off: u64) -> SysResult {
    let of = node_file(cx, fd)?;
    if (off as i64) < 0 {
        return Err(EINVAL);
    }
    if !writable(&of) {
        return Err(EBADF);
    }
    let data = buf.prefix(IO_MAX).read_to_vec(cx.p())?;
    vfs::write_at(&of.node, off, &data).map(|n| n as u64)
}

/// sendfile(out, in, offset, count): copies through a kernel buffer (`offset`: read from there
/// without moving `in`'s position, and updated).
pub fn sendfile(cx: &Cx, out: u64, inp: u64, off: UserPtr<i64>, count: u64) -> SysResult {
    let p = cx.p();
    let of = node_file(cx, inp)?;
    if !readable(&of) {
        return Err(EBADF);
    }
    let count = count.min(IO_MAX);
    let start = if off.is_null() { of.pos.peek() } else { u64::try_from(off.read(p)?).map_err(|_| EINVAL)? };
    let data = node_read(&of, start, count)?;
    // Write through the normal path, from a kernel copy.
    let n = match file(cx, out)? {
        File::Console => {
            match crate::drivers::console() {
                Some(d) => d.write(&data)?,
                None => {
                    crate::drivers::serial::write_whole(&data);
                    data.len()
                }
            }
        }
        File::Pipe(e) if e.write => e.pipe.write(&data).map_err(|_| EPIPE)?,
        File::Node(o) if writable(&o) => {
            let mut pos = o.pos.lock();
            if o.flags.load(Ordering::Relaxed) & O_APPEND != 0 {
                pos.set(o.node.size());
            }
            let n = vfs::write_at(&o.node, pos.get(), &data)?;
            pos.set(pos.get() + n as u64);
            n
        }
        _ => return Err(EBADF),
    };
    if off.is_null() {
        of.pos.lock().set(start + n as u64);
    } else {
        off.write(p, &((start + n as u64) as i64))?;
    }
    Ok(n as u64)
}

/// The working directory of the calling process.
fn cwd(cx: &Cx) -> String {
    cx.p().cwd.lock().clone()
}

/// A path argument made absolute: relative to the working directory, or to directory `dirfd`
/// (the `*at` calls; AT_FDCWD for the working directory).
pub(super) fn path_at(cx: &Cx, dirfd: u64, path: UserCStr) -> Result<String, Errno> {
    let name = path.read(cx.p(), vfs::PATH_MAX)?;
    path_at_bytes(cx, dirfd, &name)
}

pub(super) fn path_at_bytes(cx: &Cx, dirfd: u64, name: &[u8]) -> Result<String, Errno> {
    if name.starts_with(b"/") || dirfd as i32 == AT_FDCWD {
        return vfs::join(&cwd(cx), name);
    }
    match file(cx, dirfd)? {
        File::Node(of) if of.node.is_dir() => vfs::join(&of.path, name),
        File::Node(_) => Err(ENOTDIR),
        _ => Err(EBADF),
    }
}

/// The open file for `path` with open(2)'s `flags` and `mode`.
fn open_path(cx: &Cx, path: &str, flags: u32, mode: u32) -> Result<File, Errno> {
    let acc = flags & O_ACCMODE;
    let wants_write = acc != O_RDONLY || flags & O_TRUNC != 0;
    if flags & O_TMPFILE == O_TMPFILE {
        return Err(EOPNOTSUPP); // not supported yet
    }
    if let Some(c) = can_path(path.as_bytes()) {
        return Ok(File::Can(c?));
    }
    if path == "/dev/pci" {
        // The kernel's PCI listing (what `lspci` reads), made when opened.
        if wants_write {
            return Err(EROFS);
        }
        let text = crate::drivers::pci::listing_file();
        return Ok(File::Node(Arc::new(OpenFile::new(Inode::new_file(0o444), String::from(path), O_RDONLY, Some(text.to_vec())))));
    }
    if path == "/dev/usb" {
        // The USB listing (what `lsusb` reads), made when opened.
        if wants_write {
            return Err(EROFS);
        }
        let text = crate::drivers::usb::listing().into_bytes();
        return Ok(File::Node(Arc::new(OpenFile::new(Inode::new_file(0o444), String::from(path), O_RDONLY, Some(text)))));
    }
    let (node, real) = match vfs::resolve(path, flags & O_NOFOLLOW == 0) {
        Ok((n, real)) => {
            if flags & O_CREAT != 0 && flags & O_EXCL != 0 {
                return Err(EEXIST);
            }
            (n, real)
        }
        Err(ENOENT) if flags & O_CREAT != 0 => {
            let (dir, name) = vfs::parent(path)?;
            let n = Inode::new_file(mode & !cx.p().umask.load(Ordering::Relaxed));
            vfs::link(&dir, &name, n.clone())?;
            (n, String::from(path))
        }
        Err(e) => return Err(e),
    };
    if flags & O_DIRECTORY != 0 && !node.is_dir() {
        return Err(ENOTDIR);
    }
    if wants_write && node.is_dir() {
        return Err(EISDIR);
    }
    match &node.kind {
        Kind::Symlink(_) => return Err(ELOOP),
        Kind::Sock(_) => return Err(ENXIO),
        Kind::Dev(vfs::Dev::Console) => return Ok(File::Console),
        Kind::Boot(_) | Kind::BootDir | Kind::Proc(_) if wants_write => return Err(EROFS),
        Kind::External(x) if wants_write && !x.writable() => return Err(EROFS),
        _ => {}
    }
    if flags & O_TRUNC != 0 && acc != O_RDONLY && matches!(node.kind, Kind::File(_)) {
        vfs::truncate(&node, 0)?;
    }
    let snapshot = if matches!(node.kind, Kind::Proc(vfs::Proc::File(_) | vfs::Proc::PidFile(..))) { Some(vfs::proc_content(&node)?) } else { None };
    Ok(File::Node(Arc::new(OpenFile::new(node, real, flags & (O_ACCMODE | O_APPEND | O_NONBLOCK), snapshot))))
}

pub fn openat(cx: &Cx, dirfd: u64, path: UserCStr, flags: u64, mode: u64) -> SysResult {
    let path = path_at(cx, dirfd, path)?;
    let flags = flags as u32;
    let f = open_path(cx, &path, flags, mode as u32)?;
    cx.p().files.lock().insert_flags(f, 0, flags & O_CLOEXEC != 0)
}

pub fn lseek(cx: &Cx, fd: u64, off: u64, whence: u64) -> SysResult {
    let of = node_file(cx, fd)?;
    let mut pos = of.pos.lock();
    if of.node.is_dir() {
        // A directory's position counts entries: only a rewind is meaningful.
        return if off == 0 && whence as u32 == SEEK_SET {
            pos.set(0);
            Ok(0)
        } else {
            Err(EINVAL)
        };
    }
    let size = of.snapshot.as_ref().map_or_else(|| of.node.size(), |s| s.len() as u64);
    let base = match whence as u32 {
        SEEK_SET => 0i64,
        SEEK_CUR => pos.get() as i64,
        SEEK_END => size as i64,
        _ => return Err(EINVAL),
    };
    let new = base.checked_add(off as i64).filter(|&n| n >= 0).ok_or(EINVAL)?;
    pos.set(new as u64);
    Ok(new as u64)
}

fn zeroed_stat() -> stat {
    stat {
        st_dev: 0, st_ino: 0, st_nlink: 0, st_mode: 0, st_uid: 0, st_gid: 0, __pad0: 0, st_rdev: 0,
        st_size: 0, st_blksize: 0, st_blocks: 0, st_atime: 0, st_atime_nsec: 0, st_mtime: 0,
        st_mtime_nsec: 0, st_ctime: 0, st_ctime_nsec: 0, __unused: [0; 3],
    }
}

fn stat_node(n: &Inode) -> stat {
    let mut st = zeroed_stat();
    let m = *n.meta.lock();
    st.st_ino = n.ino;
    st.st_mode = m.mode;
    st.st_nlink = u64::from(m.nlink.max(1));
    st.st_size = n.size() as _;
    st.st_blocks = n.size().div_ceil(512) as _;
    st.st_blksize = 4096;
    st.st_dev = match n.kind {
        Kind::Boot(_) | Kind::BootDir => 2,
        Kind::Proc(_) => 3,
        _ => 1,
    };
    st.st_rdev = match n.kind {
        Kind::Dev(vfs::Dev::Null) => 0x103,
        Kind::Dev(vfs::Dev::Zero) => 0x105,
        Kind::Dev(vfs::Dev::Full) => 0x107,
        Kind::Dev(vfs::Dev::Random) => 0x109,
        Kind::Dev(vfs::Dev::Console) => 0x501,
        _ => 0,
    };
    let (a, mt, c) = (m.atime, m.mtime, m.ctime);
    st.st_atime = (a / 1_000_000_000) as _;
    st.st_atime_nsec = (a % 1_000_000_000) as _;
    st.st_mtime = (mt / 1_000_000_000) as _;
    st.st_mtime_nsec = (mt % 1_000_000_000) as _;
    st.st_ctime = (c / 1_000_000_000) as _;
    st.st_ctime_nsec = (c % 1_000_000_000) as _;
    st
}

fn stat_of(f: &File) -> stat {
    let mut st = zeroed_stat();
    match f {
        File::Console => {
            st.st_mode = S_IFCHR | 0o620;
            st.st_rdev = 0x0400;
        }
        File::Node(of) => {
            let mut s = stat_node(&of.node);
            if let Some(t) = &of.snapshot {
                s.st_size = t.len() as _;
            }
            return s;
        }
        File::Pipe(_) => st.st_mode = S_IFIFO | 0o600,
        File::Shm(_) | File::Sock(_) => st.st_mode = S_IFSOCK | 0o600,
        File::Can(_) => st.st_mode = S_IFCHR | 0o660,
        File::Event(_) | File::Timer(_) | File::Epoll(_) => st.st_mode = 0o600, // anonymous inodes
    }
    st.st_nlink = 1;
    st.st_blksize = 4096;
    st
}

/// The stat of descriptor `fd`, or of `path` (with AT_EMPTY_PATH and an empty path: of `fd`).
fn stat_at(cx: &Cx, fd: u64, path: UserCStr, flags: u64) -> Result<stat, Errno> {
    let name = path.read(cx.p(), vfs::PATH_MAX)?;
    if name.is_empty() && flags as u32 & AT_EMPTY_PATH != 0 {
        return Ok(stat_of(&file(cx, fd)?));
    }
    let path = path_at_bytes(cx, fd, &name)?;
    let (n, _) = vfs::resolve(&path, flags as u32 & AT_SYMLINK_NOFOLLOW == 0)?;
    Ok(stat_node(&n))
}

pub fn fstat(cx: &Cx, fd: u64, out: UserPtr<stat>) -> SysResult {
    let st = stat_of(&file(cx, fd)?);
    out.write(cx.p(), &st).map(|_| 0)
}

pub fn stat(cx: &Cx, path: UserCStr, out: UserPtr<stat>, follow: bool) -> SysResult {
    let path = path_at(cx, AT_FDCWD as u32 as u64, path)?;
    let (n, _) = vfs::resolve(&path, follow)?;
    out.write(cx.p(), &stat_node(&n)).map(|_| 0)
}

pub fn newfstatat(cx: &Cx, fd: u64, path: UserCStr, out: UserPtr<stat>, flags: u64) -> SysResult {
    let st = stat_at(cx, fd, path, flags)?;
    out.write(cx.p(), &st).map(|_| 0)
}

pub fn statx(cx: &Cx, fd: u64, path: UserCStr, flags: u64, out: UserPtr<statx>) -> SysResult {
    let st = stat_at(cx, fd, path, flags)?;
    let ts = |s: i64, ns: u64| statx_timestamp { tv_sec: s, tv_nsec: ns as u32, __reserved: 0 };
    let x = statx {
        stx_mask: STATX_BASIC_STATS,
        stx_blksize: st.st_blksize as u32,
        stx_attributes: 0,
        stx_nlink: st.st_nlink as u32,
        stx_uid: 0,
        stx_gid: 0,
        stx_mode: st.st_mode as u16,
        __spare0: [0],
        stx_ino: st.st_ino,
        stx_size: st.st_size as u64,
        stx_blocks: st.st_blocks as u64,
        stx_attributes_mask: 0,
        stx_atime: ts(st.st_atime as i64, st.st_atime_nsec),
        stx_btime: ts(st.st_ctime as i64, st.st_ctime_nsec),
        stx_ctime: ts(st.st_ctime as i64, st.st_ctime_nsec),
        stx_mtime: ts(st.st_mtime as i64, st.st_mtime_nsec),
        stx_rdev_major: (st.st_rdev >> 8) as u32,
        stx_rdev_minor: (st.st_rdev & 0xff) as u32,
        stx_dev_major: 0,
        stx_dev_minor: st.st_dev as u32,
        stx_mnt_id: 0,
        stx_dio_mem_align: 0,
        stx_dio_offset_align: 0,
        stx_subvol: 0,
        stx_atomic_write_unit_min: 0,
        stx_atomic_write_unit_max: 0,
        stx_atomic_write_segments_max: 0,
        stx_dio_read_offset_align: 0,
        stx_atomic_write_unit_max_opt: 0,
        __spare2: [0],
        __spare3: [0; 8],
    };
    out.write(cx.p(), &x).map(|_| 0)
}

pub fn dup(cx: &Cx, fd: u64) -> SysResult {
    let f = file(cx, fd)?;
    cx.p().files.lock().insert(f, 0)
}

pub fn dup3(cx: &Cx, old: u64, new: u64, flags: Option<u64>) -> SysResult {
    let mut t = cx.p().files.lock();
    t.get(old)?;
    if old == new {
        return if flags.is_some() { Err(EINVAL) } else { Ok(new) };
    }
    let cloexec = flags.is_some_and(|f| f as u32 & O_CLOEXEC != 0);
    if flags.is_some_and(|f| f as u32 & !O_CLOEXEC != 0) {
        return Err(EINVAL);
    }
    t.dup_to(old, new, cloexec)
}


/// close: a process's POSIX record locks on the file go with any of its descriptors.
pub fn close(cx: &Cx, fd: u64) -> SysResult {
    let f = cx.p().files.lock().get(fd).cloned();
    cx.p().files.lock().close(fd)?;
    if let Ok(File::Node(of)) = f {
        crate::ipc::rlock::closed(&of.node, cx.p().pid);
    }
    Ok(0)
}

pub fn fcntl(cx: &Cx, fd: u64, cmd: u64, arg: u64) -> SysResult {
    let files = &cx.p().files;
    match cmd as u32 {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let f = file(cx, fd)?;
            files.lock().insert_flags(f, arg as usize, cmd as u32 == F_DUPFD_CLOEXEC)
        }
        F_GETFD => files.lock().cloexec(fd).map(|c| if c { u64::from(FD_CLOEXEC) } else { 0 }),
        F_SETFD => files.lock().set_cloexec(fd, arg as u32 & FD_CLOEXEC != 0).map(|_| 0),
        F_GETFL => match file(cx, fd)? {
            File::Node(of) => Ok(u64::from(of.flags.load(Ordering::Relaxed))),
            File::Pipe(e) => Ok(u64::from(if e.write { O_WRONLY } else { O_RDONLY } | nonblock_flag(&File::Pipe(e.clone())))),
            f => Ok(u64::from(O_RDWR | nonblock_flag(&f))),
        },
        F_SETFL => match file(cx, fd)? {
            File::Node(of) => {
                let keep = of.flags.load(Ordering::Relaxed) & O_ACCMODE;
                of.flags.store(keep | (arg as u32 & (O_APPEND | O_NONBLOCK)), Ordering::Relaxed);
                Ok(0)
            }
            f => {
                if let Some(nb) = f.nonblock() {
                    nb.store(arg as u32 & O_NONBLOCK != 0, Ordering::Relaxed);
                }
                Ok(0)
            }
        },
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW => match file(cx, fd)? {
            File::Node(of) if !of.node.is_dir() => crate::ipc::rlock::fcntl(cx, &of, cmd as u32, arg),
            _ => Err(EINVAL),
        },
        _ => Err(EINVAL),
    }
}

pub fn getcwd(cx: &Cx, buf: UserSliceMut) -> SysResult {
    let mut c = cwd(cx).into_bytes();
    c.push(0);
    if (buf.len() as usize) < c.len() {
        return Err(ERANGE);
    }
    buf.write(cx.p(), &c)?;
    Ok(c.len() as u64)
}

fn set_cwd(cx: &Cx, path: &str) -> SysResult {
    let (n, real) = vfs::resolve(path, true)?;
    if !n.is_dir() {
        return Err(ENOTDIR);
    }
    *cx.p().cwd.lock() = real;
    Ok(0)
}

pub fn chdir(cx: &Cx, path: UserCStr) -> SysResult {
    let p = path_at(cx, AT_FDCWD as u32 as u64, path)?;
    set_cwd(cx, &p)
}

pub fn fchdir(cx: &Cx, fd: u64) -> SysResult {
    match file(cx, fd)? {
        File::Node(of) => {
            let path = of.path.clone();
            set_cwd(cx, &path)
        }
        _ => Err(ENOTDIR),
    }
}

pub fn mkdirat(cx: &Cx, dirfd: u64, path: UserCStr, mode: u64) -> SysResult {
    let path = path_at(cx, dirfd, path)?;
    let (dir, name) = vfs::parent(&path)?;
    let um = cx.p().umask.load(Ordering::Relaxed);
    vfs::link(&dir, &name, Inode::new_dir(mode as u32 & !um)).map(|_| 0)
}

pub fn unlinkat(cx: &Cx, dirfd: u64, path: UserCStr, flags: u64) -> SysResult {
    let path = path_at(cx, dirfd, path)?;
    if flags as u32 & !AT_REMOVEDIR != 0 {
        return Err(EINVAL);
    }
    let (dir, name) = vfs::parent(&path).map_err(|e| if e == EEXIST { EBUSY } else { e })?;
    vfs::remove(&dir, &name, flags as u32 & AT_REMOVEDIR != 0).map(|_| 0)
}

pub fn renameat(cx: &Cx, olddir: u64, old: UserCStr, newdir: u64, new: UserCStr, flags: u64) -> SysResult {
    let (from, to) = (path_at(cx, olddir, old)?, path_at(cx, newdir, new)?);
    if flags as u32 & !RENAME_NOREPLACE != 0 {
        return Err(EINVAL); // RENAME_EXCHANGE, RENAME_WHITEOUT: not supported yet
    }
    let (fd, fname) = vfs::parent(&from).map_err(|e| if e == EEXIST { EBUSY } else { e })?;
    let (td, tname) = vfs::parent(&to).map_err(|e| if e == EEXIST { EBUSY } else { e })?;
    if flags as u32 & RENAME_NOREPLACE != 0 && vfs::resolve(&to, false).is_ok() {
        return Err(EEXIST);
    }
    vfs::rename(&fd, &fname, &td, &tname).map(|_| 0)
}

pub fn linkat(cx: &Cx, olddir: u64, old: UserCStr, newdir: u64, new: UserCStr, flags: u64) -> SysResult {
    let (from, to) = (path_at(cx, olddir, old)?, path_at(cx, newdir, new)?);
    let (n, _) = vfs::resolve(&from, flags as u32 & AT_SYMLINK_FOLLOW != 0)?;
    match n.kind {
        Kind::File(_) | Kind::Symlink(_) => {}
        Kind::Dir(_) => return Err(EPERM),
        _ => return Err(EXDEV),
    }
    let (dir, name) = vfs::parent(&to)?;
    vfs::link(&dir, &name, n.clone())?;
    n.meta.lock().nlink += 1;
    Ok(0)
}

pub fn symlinkat(cx: &Cx, target: UserCStr, dirfd: u64, path: UserCStr) -> SysResult {
    let t = target.read(cx.p(), vfs::PATH_MAX)?;
    let t = String::from_utf8(t).map_err(|_| EINVAL)?;
    if t.is_empty() {
        return Err(ENOENT);
    }
    let path = path_at(cx, dirfd, path)?;
    let (dir, name) = vfs::parent(&path)?;
    vfs::link(&dir, &name, vfs::new_symlink(t)).map(|_| 0)
}

pub fn readlinkat(cx: &Cx, dirfd: u64, path: UserCStr, buf: UserSliceMut) -> SysResult {
    let path = path_at(cx, dirfd, path)?;
    let (n, _) = vfs::resolve(&path, false)?;
    let Kind::Symlink(t) = &n.kind else { return Err(EINVAL) };
    let b = t.as_bytes();
    let len = b.len().min(buf.len() as usize);
    buf.write(cx.p(), &b[..len])?;
    Ok(len as u64)
}

pub fn faccessat(cx: &Cx, dirfd: u64, path: UserCStr, mode: u64, flags: u64) -> SysResult {
    let path = path_at(cx, dirfd, path)?;
    let (n, _) = vfs::resolve(&path, flags as u32 & AT_SYMLINK_NOFOLLOW == 0)?;
    let mode = mode as u32;
    if mode & !(R_OK | W_OK | X_OK) != 0 {
        return Err(EINVAL);
    }
    if mode & W_OK != 0 && matches!(n.kind, Kind::Boot(_) | Kind::BootDir | Kind::Proc(_)) {
        return Err(EROFS);
    }
    // Root: read and write always; execute if any execute bit is set (or a directory).
    if mode & X_OK != 0 && !n.is_dir() && n.mode() & 0o111 == 0 {
        return Err(EACCES);
    }
    Ok(0)
}

pub fn truncate(cx: &Cx, path: UserCStr, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(EINVAL);
    }
    let path = path_at(cx, AT_FDCWD as u32 as u64, path)?;
    let (n, _) = vfs::resolve(&path, true)?;
    vfs::truncate(&n, len).map(|_| 0)
}

pub fn ftruncate(cx: &Cx, fd: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(EINVAL);
    }
    let of = match file(cx, fd)? {
        File::Node(of) => of,
        _ => return Err(EINVAL),
    };
    if !writable(&of) {
        return Err(EINVAL);
    }
    vfs::truncate(&of.node, len).map(|_| 0)
}

/// fsync and fdatasync: the files are in memory, always "on disk".
pub fn fsync(cx: &Cx, fd: u64) -> SysResult {
    file(cx, fd).map(|_| 0)
}

pub fn utimensat(cx: &Cx, dirfd: u64, path: UserCStr, times: UserPtr<[timespec; 2]>, flags: u64) -> SysResult {
    let n = if path.is_null() {
        match file(cx, dirfd)? {
            File::Node(of) => of.node.clone(),
            _ => return Err(EBADF),
        }
    } else {
        let p = path_at(cx, dirfd, path)?;
        vfs::resolve(&p, flags as u32 & AT_SYMLINK_NOFOLLOW == 0)?.0
    };
    if matches!(n.kind, Kind::Boot(_) | Kind::BootDir | Kind::Proc(_)) {
        return Err(EROFS);
    }
    let now = hal::time::now_ns();
    let ts = if times.is_null() { None } else { Some(times.read(cx.p())?) };
    let pick = |t: Option<&timespec>, cur: u64| -> Result<u64, Errno> {
        match t {
            None => Ok(now),
            Some(t) if t.tv_nsec == i64::from(UTIME_NOW) => Ok(now),
            Some(t) if t.tv_nsec == i64::from(UTIME_OMIT) => Ok(cur),
            Some(t) if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) => Err(EINVAL),
            Some(t) => Ok((t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)),
        }
    };
    let mut m = n.meta.lock();
    m.atime = pick(ts.as_ref().map(|t| &t[0]), m.atime)?;
    m.mtime = pick(ts.as_ref().map(|t| &t[1]), m.mtime)?;
    m.ctime = now;
    Ok(0)
}

fn chmod_node(n: &Inode, mode: u64) -> SysResult {
    if matches!(n.kind, Kind::Boot(_) | Kind::BootDir | Kind::Proc(_)) {
        return Err(EROFS);
    }
    let mut m = n.meta.lock();
    m.mode = (m.mode & S_IFMT) | (mode as u32 & 0o7777);
    m.ctime = hal::time::now_ns();
    Ok(0)
}

pub fn fchmodat(cx: &Cx, dirfd: u64, path: UserCStr, mode: u64) -> SysResult {
    let p = path_at(cx, dirfd, path)?;
    chmod_node(&vfs::resolve(&p, true)?.0, mode)
}

pub fn fchmod(cx: &Cx, fd: u64, mode: u64) -> SysResult {
    match file(cx, fd)? {
        File::Node(of) => chmod_node(&of.node, mode),
        _ => Err(EINVAL),
    }
}

/// chown and friends: every file belongs to root; changing that is not supported yet.
pub fn chown(uid: u64, gid: u64) -> SysResult {
    let keep = |v: u64| v as u32 == 0 || v as u32 == u32::MAX;
    if keep(uid) && keep(gid) { Ok(0) } else { Err(EPERM) }
}

pub fn umask(cx: &Cx, mask: u64) -> SysResult {
    Ok(u64::from(cx.p().umask.swap(mask as u32 & 0o777, Ordering::Relaxed)))
}

/// `struct statfs` (x86-64): type, bsize, blocks, bfree, bavail, files, ffree, fsid (2 ints),
/// namelen, frsize, flags, spare[4]: fifteen 8-byte words.
type Statfs = [u64; 15];

fn statfs_of(n: &Inode) -> Statfs {
    let (kind, used, total) = match n.kind {
        Kind::Boot(_) | Kind::BootDir => (0x2871_35fa_u64 /* ramfs-like id for the cpio initrd */, 0, 0),
        Kind::Proc(_) => (u64::from(PROC_SUPER_MAGIC), 0, 0),
        _ => (u64::from(TMPFS_MAGIC), vfs::bytes_used() / 4096, vfs::TMPFS_MAX_BYTES / 4096),
    };
    let ro = if matches!(n.kind, Kind::Boot(_) | Kind::BootDir | Kind::Proc(_)) { 1 } else { 0 }; // ST_RDONLY
    let free = total.saturating_sub(used);
    [kind, 4096, total, free, free, 65536, 65536, 0, 255, 4096, ro, 0, 0, 0, 0]
}

pub fn statfs(cx: &Cx, path: UserCStr, out: UserPtr<Statfs>) -> SysResult {
    let p = path_at(cx, AT_FDCWD as u32 as u64, path)?;
    out.write(cx.p(), &statfs_of(&vfs::resolve(&p, true)?.0)).map(|_| 0)
}

pub fn fstatfs(cx: &Cx, fd: u64, out: UserPtr<Statfs>) -> SysResult {
    let s = match file(cx, fd)? {
        File::Node(of) => statfs_of(&of.node),
        _ => statfs_of(&vfs::root()),
    };
    out.write(cx.p(), &s).map(|_| 0)
}

pub fn pipe(cx: &Cx, fds: UserPtr<[i32; 2]>, flags: u64) -> SysResult {
    let p = cx.p();
    if flags as u32 & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(EINVAL);
    }
    let (r, w) = crate::pipe::new();
    r.nonblock.store(flags as u32 & O_NONBLOCK != 0, Ordering::Relaxed);
    w.nonblock.store(flags as u32 & O_NONBLOCK != 0, Ordering::Relaxed);
    let (rfd, wfd) = p.files.lock().insert_pair(File::Pipe(r), File::Pipe(w), flags as u32 & O_CLOEXEC != 0)?;
    if let Err(e) = fds.write(p, &[rfd as i32, wfd as i32]) {
        let _ = p.files.lock().close(rfd);
        let _ = p.files.lock().close(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn ioctl(cx: &Cx, fd: u64, req: u64, arg: u64) -> SysResult {
    match file(cx, fd)? {
        File::Console => {}
        File::Can(c) => return can_ioctl(cx, c, req as u32, arg),
        f => match f.nonblock() {
            // FIONBIO: an int, non-zero for O_NONBLOCK (what Rust's set_nonblocking uses).
            Some(nb) if req as u32 == FIONBIO => {
                nb.store(UserPtr::<i32>::new(arg).read(cx.p())? != 0, Ordering::Relaxed);
                return Ok(0);
            }
            _ => return Err(ENOTTY),
        },
    }
    match req as u32 {
        TIOCGWINSZ => {
            let ws = winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
            UserPtr::<winsize>::new(arg).write(cx.p(), &ws).map(|_| 0)
        }
        TCGETS => {
            // A terminal in canonical mode with echo (what the console does).
            let t = termios {
                c_iflag: ICRNL,
                c_oflag: OPOST | ONLCR,
                c_cflag: CS8 | CREAD | B115200,
                c_lflag: ICANON | ECHO | ISIG,
                c_line: 0,
                c_cc: [0; 19],
            };
            UserPtr::<termios>::new(arg).write(cx.p(), &t).map(|_| 0)
        }
        _ => Err(ENOTTY),
    }
}

pub fn getdents64(cx: &Cx, fd: u64, buf: UserSliceMut) -> SysResult {
    // The fixed part of `struct linux_dirent64` ends where its name starts.
    const NAME_AT: usize = core::mem::offset_of!(linux_dirent64, d_name);
    let p = cx.p();
    let of = match file(cx, fd)? {
        File::Node(of) => of,
        _ => return Err(ENOTDIR),
    };
    if !of.node.is_dir() {
        return Err(ENOTDIR);
    }
    let names = vfs::list(&of.node)?;
    let mut pos = of.pos.lock();
    let mut out = Vec::new();
    let mut i = pos.get() as usize;
    while i < names.len() {
        let (ino, ty, name) = &names[i];
        let name = name.as_bytes();
        let reclen = (NAME_AT + name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > buf.len() as usize {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&ino.to_le_bytes()); // d_ino
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes()); // d_off
        out.extend_from_slice(&(reclen as u16).to_le_bytes()); // d_reclen
        out.push(*ty); // d_type
        debug_assert_eq!(out.len() - start, NAME_AT);
        out.extend_from_slice(name);
        out.resize(start + reclen, 0);
        i += 1;
    }
    if out.is_empty() && i < names.len() {
        return Err(EINVAL);
    }
    pos.set(i as u64);
    drop(pos);
    buf.write(p, &out)?;
    Ok(out.len() as u64)
}

/// flock(2): advisory whole-file locks held by open file descriptions (shared by dup and fork,
/// released by LOCK_UN or when the last descriptor closes); LOCK_NB gives EWOULDBLOCK instead
/// of waiting; a signal interrupts the wait.
pub fn flock(cx: &Cx, fd: u64, op: u64) -> SysResult {
    const LOCK_SH: u32 = 1;
    const LOCK_EX: u32 = 2;
    const LOCK_NB: u32 = 4;
    const LOCK_UN: u32 = 8;
    let of = match file(cx, fd)? {
        File::Node(of) => of,
        _ => return Err(EINVAL),
    };
    let op = op as u32;
    let exclusive = match op & !LOCK_NB {
        LOCK_SH => false,
        LOCK_EX => true,
        LOCK_UN => {
            let woken = of.node.flock.lock().unlock(of.id());
            for t in woken {
                let _ = crate::sched::wake(t);
            }
            return Ok(0);
        }
        _ => return Err(EINVAL),
    };
    loop {
        {
            let mut l = of.node.flock.lock();
            if l.try_lock(of.id(), exclusive) {
                return Ok(0);
            }
            if op & LOCK_NB != 0 {
                return Err(EWOULDBLOCK);
            }
            l.wait(cx.tid);
        }
        if crate::sched::block_current() == crate::sched::Wake::Interrupted {
            return Err(ERESTARTSYS);
        }
    }
}

/// `O_NONBLOCK` if `f` has it set (F_GETFL).
fn nonblock_flag(f: &File) -> u32 {
    if f.nonblock().is_some_and(|nb| nb.load(Ordering::Relaxed)) { O_NONBLOCK } else { 0 }
}
