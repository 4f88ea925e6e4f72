//! Files: read and write (console, pipes, /boot files), open, close, lseek, the stat family,
//! getdents64, dup/fcntl, pipe, the terminal ioctls, getcwd and chdir.
use alloc::vec;
use alloc::vec::Vec;

use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use linux_raw_sys::ioctl::{TCGETS, TIOCGWINSZ};

use super::{Cx, Errno, SysResult, UserCStr, UserPtr, UserSlice, UserSliceMut};
use crate::fs::File;

/// Writes user bytes to the console's device file (the UART directly if no driver has
/// registered one), through a kernel buffer of at most a page.
fn write_console(cx: &Cx, buf: UserSlice) -> SysResult {
    let buf = buf.prefix(1 << 20);
    let console = crate::drivers::console();
    let mut chunk = vec![0u8; 4096.min(buf.len() as usize)];
    for c in buf.chunks(4096) {
        let part = &mut chunk[..c.len() as usize];
        c.read_into(cx.p(), part)?;
        match console {
            Some(d) => {
                d.write(part)?;
            }
            None => hal::serial::write_raw(part),
        }
    }
    Ok(buf.len())
}

pub fn write(cx: &Cx, fd: u64, buf: UserSlice) -> SysResult {
    let p = cx.p();
    let pipe = match p.files.lock().get(fd)? {
        File::Console => None,
        File::Pipe(e) if e.write => Some(e.clone()),
        _ => return Err(EBADF),
    };
    if let Some(e) = pipe {
        let data = buf.prefix(1 << 20).read_to_vec(p)?;
        return match e.pipe.write(&data) {
            Ok(n) => Ok(n as u64),
            Err(crate::pipe::WriteError::Interrupted) => Err(crate::signal::ERESTARTSYS),
            Err(crate::pipe::WriteError::Broken) => {
                // Linux: SIGPIPE too (its default ends the writer), and EPIPE if it is handled.
                let _ = crate::signal::send(&cx.proc, Some(cx.tid), signals::SigInfo::kernel(signals::SIGPIPE));
                Err(EPIPE)
            }
        };
    }
    write_console(cx, buf)
}

/// `struct iovec` as two words (its `iov_base` is a pointer type, which is not `Pod`).
type Iovec = [u64; 2];
const _: () = assert!(core::mem::size_of::<iovec>() == core::mem::size_of::<Iovec>());

pub fn writev(cx: &Cx, fd: u64, iov: UserPtr<Iovec>, cnt: u64) -> SysResult {
    if fd != 1 && fd != 2 {
        return Err(EBADF);
    }
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let [base, len] = iov.at(i)?.read(cx.p())?;
        total += write_console(cx, UserSlice::new(base, len))?;
    }
    Ok(total)
}

pub fn read(cx: &Cx, fd: u64, buf: UserSliceMut) -> SysResult {
    let p = cx.p();
    let len = buf.len();
    let pipe = match p.files.lock().get(fd)? {
        File::Pipe(e) if !e.write => Some(e.clone()),
        File::Pipe(_) => return Err(EBADF),
        _ => None,
    };
    if let Some(e) = pipe {
        let data = e.pipe.read(len.min(1 << 20) as usize).ok_or(crate::signal::ERESTARTSYS)?;
        buf.write(p, &data)?;
        return Ok(data.len() as u64);
    }
    let boot = match p.files.lock().get(fd)? {
        File::Console => None,
        File::Dir { .. } => return Err(EISDIR),
        File::Pipe(_) => None,
        File::Shm(_) => return Err(EBADF), // shmcomm_read
        File::Boot { data, pos } => {
            let n = (len as usize).min(data.len().saturating_sub(*pos)).min(1 << 20);
            let chunk = &data[*pos..*pos + n];
            *pos += n;
            Some(chunk)
        }
    };
    if let Some(chunk) = boot {
        buf.write(p, chunk)?;
        return Ok(chunk.len() as u64);
    }
    if len == 0 {
        return Ok(0);
    }
    // The console's device file (a line at a time, with echo). A killed task (ctrl-c,
    // kill -t) stops waiting for input and dies on the way out.
    let console = crate::drivers::console().ok_or(EIO)?;
    let line = console
        .read(usize::try_from(len).unwrap_or(usize::MAX), &|| p.terminal.load(core::sync::atomic::Ordering::Relaxed) || crate::sched::must_act_before_user())
        .map_err(|e| if e == EINTR { crate::signal::ERESTARTSYS } else { e })?;
    buf.write(p, &line)?;
    Ok(line.len() as u64)
}

pub fn readv(cx: &Cx, fd: u64, iov: UserPtr<Iovec>, cnt: u64) -> SysResult {
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let [base, len] = iov.at(i)?.read(cx.p())?;
        let n = read(cx, fd, UserSliceMut::new(base, len))?;
        total += n;
        if n < len {
            break;
        }
    }
    Ok(total)
}

/// The name of a file in /boot that `path` names (also execve's program).
pub(super) fn boot_name(path: &[u8]) -> Result<&str, Errno> {
    let s = core::str::from_utf8(path).map_err(|_| ENOENT)?;
    let s = s.strip_prefix("/boot/").or_else(|| s.strip_prefix("./")).unwrap_or(s);
    if s.is_empty() || s.contains('/') {
        return Err(ENOENT);
    }
    Ok(s)
}

pub fn openat(cx: &Cx, path: UserCStr, flags: u64) -> SysResult {
    let p = cx.p();
    let name = path.read(p, 255)?;
    if flags as u32 & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC) != 0 {
        return Err(EROFS);
    }
    if is_boot_dir(&name) {
        return p.files.lock().insert(File::Dir { pos: 0 }, 0);
    }
    let n = boot_name(&name)?;
    let data = crate::initrd::get().read(n).ok_or(ENOENT)?;
    p.files.lock().insert(File::Boot { data, pos: 0 }, 0)
}

pub fn lseek(cx: &Cx, fd: u64, off: u64, whence: u64) -> SysResult {
    match cx.p().files.lock().get(fd)? {
        File::Console | File::Pipe(_) | File::Shm(_) => Err(ESPIPE),
        File::Dir { pos } => {
            if off == 0 && whence as u32 == SEEK_SET {
                *pos = 0;
                Ok(0)
            } else {
                Err(EINVAL)
            }
        }
        File::Boot { data, pos } => {
            let base = match whence as u32 {
                SEEK_SET => 0i64,
                SEEK_CUR => *pos as i64,
                SEEK_END => data.len() as i64,
                _ => return Err(EINVAL),
            };
            let new = base.checked_add(off as i64).filter(|&n| n >= 0).ok_or(EINVAL)?;
            *pos = (new as usize).min(data.len());
            Ok(new as u64)
        }
    }
}

fn stat_of(f: &File) -> stat {
    let mut st: stat = zeroed_stat();
    match f {
        File::Console => {
            st.st_mode = S_IFCHR | 0o620;
            st.st_rdev = 0x0400;
        }
        File::Boot { data, .. } => {
            st.st_mode = S_IFREG | 0o555;
            st.st_size = data.len() as _;
            st.st_blocks = data.len().div_ceil(512) as _;
        }
        File::Dir { .. } => st.st_mode = S_IFDIR | 0o555,
        File::Pipe(_) => st.st_mode = S_IFIFO | 0o600,
        File::Shm(_) => st.st_mode = S_IFSOCK | 0o600,
    }
    st.st_nlink = 1;
    st.st_blksize = 4096;
    st
}

fn is_boot_dir(name: &[u8]) -> bool {
    matches!(name, b"/boot" | b"/boot/" | b"." | b"/")
}

/// stat of a path: the /boot directory or one of its files.
fn stat_path(name: &[u8]) -> Result<stat, Errno> {
    if is_boot_dir(name) {
        return Ok(stat_of(&File::Dir { pos: 0 }));
    }
    let data = crate::initrd::get().read(boot_name(name)?).ok_or(ENOENT)?;
    Ok(stat_of(&File::Boot { data, pos: 0 }))
}

fn zeroed_stat() -> stat {
    stat {
        st_dev: 0, st_ino: 0, st_nlink: 0, st_mode: 0, st_uid: 0, st_gid: 0, __pad0: 0, st_rdev: 0,
        st_size: 0, st_blksize: 0, st_blocks: 0, st_atime: 0, st_atime_nsec: 0, st_mtime: 0,
        st_mtime_nsec: 0, st_ctime: 0, st_ctime_nsec: 0, __unused: [0; 3],
    }
}

/// The stat of descriptor `fd`, or of `path` (with AT_EMPTY_PATH and an empty path: of `fd`).
fn stat_at(cx: &Cx, fd: u64, path: UserCStr, flags: u64) -> Result<stat, Errno> {
    let name = path.read(cx.p(), 255)?;
    if name.is_empty() && flags as u32 & AT_EMPTY_PATH != 0 {
        Ok(stat_of(cx.p().files.lock().get(fd)?))
    } else {
        stat_path(&name)
    }
}

pub fn fstat(cx: &Cx, fd: u64, out: UserPtr<stat>) -> SysResult {
    let st = stat_of(cx.p().files.lock().get(fd)?);
    out.write(cx.p(), &st).map(|_| 0)
}

pub fn stat(cx: &Cx, path: UserCStr, out: UserPtr<stat>) -> SysResult {
    let st = stat_path(&path.read(cx.p(), 255)?)?;
    out.write(cx.p(), &st).map(|_| 0)
}

pub fn newfstatat(cx: &Cx, fd: u64, path: UserCStr, out: UserPtr<stat>, flags: u64) -> SysResult {
    let st = stat_at(cx, fd, path, flags)?;
    out.write(cx.p(), &st).map(|_| 0)
}

pub fn statx(cx: &Cx, fd: u64, path: UserCStr, flags: u64, out: UserPtr<statx>) -> SysResult {
    let st = stat_at(cx, fd, path, flags)?;
    let ts = statx_timestamp { tv_sec: 0, tv_nsec: 0, __reserved: 0 };
    let x = statx {
        stx_mask: STATX_BASIC_STATS,
        stx_blksize: st.st_blksize as u32,
        stx_attributes: 0,
        stx_nlink: st.st_nlink as u32,
        stx_uid: 0,
        stx_gid: 0,
        stx_mode: st.st_mode as u16,
        __spare0: [0],
        stx_ino: 0,
        stx_size: st.st_size as u64,
        stx_blocks: st.st_blocks as u64,
        stx_attributes_mask: 0,
        stx_atime: ts,
        stx_btime: ts,
        stx_ctime: ts,
        stx_mtime: ts,
        stx_rdev_major: 0,
        stx_rdev_minor: 0,
        stx_dev_major: 0,
        stx_dev_minor: 0,
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
    let f = cx.p().files.lock().get(fd)?.clone();
    cx.p().files.lock().insert(f, 0)
}

pub fn fcntl(cx: &Cx, fd: u64, cmd: u64, arg: u64) -> SysResult {
    let files = &cx.p().files;
    match cmd as u32 {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let f = files.lock().get(fd)?.clone();
            files.lock().insert(f, arg as usize)
        }
        F_GETFD | F_SETFD | F_SETFL => files.lock().get(fd).map(|_| 0),
        F_GETFL => files.lock().get(fd).map(|_| u64::from(O_RDWR)),
        _ => Err(EINVAL),
    }
}

pub fn getcwd(cx: &Cx, buf: UserSliceMut) -> SysResult {
    if buf.len() < 7 {
        return Err(ERANGE);
    }
    buf.write(cx.p(), b"/boot\0")?;
    Ok(buf.addr())
}

pub fn chdir(cx: &Cx, path: UserCStr) -> SysResult {
    let d = path.read(cx.p(), 255)?;
    if d == b"/boot" || d == b"/boot/" || d == b"/" { Ok(0) } else { Err(ENOENT) }
}

pub fn pipe(cx: &Cx, fds: UserPtr<[i32; 2]>) -> SysResult {
    let p = cx.p();
    let (r, w) = crate::pipe::new();
    let (rfd, wfd) = p.files.lock().insert_pair(File::Pipe(r), File::Pipe(w))?;
    if let Err(e) = fds.write(p, &[rfd as i32, wfd as i32]) {
        let _ = p.files.lock().close(rfd);
        let _ = p.files.lock().close(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn ioctl(cx: &Cx, fd: u64, req: u64, arg: u64) -> SysResult {
    match (fd, req as u32) {
        (0..=2, TIOCGWINSZ) => {
            let ws = winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
            UserPtr::<winsize>::new(arg).write(cx.p(), &ws).map(|_| 0)
        }
        (0..=2, TCGETS) => {
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
        (0..=2, _) => Err(ENOTTY),
        _ => Err(EBADF),
    }
}

pub fn getdents64(cx: &Cx, fd: u64, buf: UserSliceMut) -> SysResult {
    // The fixed part of `struct linux_dirent64` ends where its name starts.
    const NAME_AT: usize = core::mem::offset_of!(linux_dirent64, d_name);
    let p = cx.p();
    let mut files = p.files.lock();
    let File::Dir { pos } = files.get(fd)? else { return Err(ENOTDIR) };
    let names: Vec<&str> = crate::initrd::get().files().map(|(n, _)| n).collect();
    let mut out = Vec::new();
    let mut i = *pos;
    while i < names.len() {
        let name = names[i].as_bytes();
        let reclen = (NAME_AT + name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > buf.len() as usize {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes()); // d_ino
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes()); // d_off
        out.extend_from_slice(&(reclen as u16).to_le_bytes()); // d_reclen
        out.push(DT_REG as u8); // d_type
        debug_assert_eq!(out.len() - start, NAME_AT);
        out.extend_from_slice(name);
        out.resize(start + reclen, 0);
        i += 1;
    }
    if out.is_empty() && i < names.len() {
        return Err(EINVAL);
    }
    *pos = i;
    drop(files);
    buf.write(p, &out)?;
    Ok(out.len() as u64)
}
