//! The Linux x86-64 system-call subset (numbers and layouts from `linux-raw-sys`). Every user
//! pointer goes through the process's address space (`copy_from_user`/`copy_to_user`), so a bad
//! pointer is `EFAULT`, never a kernel fault. Unimplemented calls return `ENOSYS` and are logged
//! once each.
#![allow(non_upper_case_globals)] // linux-raw-sys's __NR_* constants used as match patterns
use alloc::collections::BTreeSet;
use alloc::vec;

use hal::mm::{UserAccess, UserMemError};
use hal::sync::IrqLock;
use hal::trap::TrapFrame;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use linux_raw_sys::ioctl::{TCGETS, TIOCGWINSZ};
use linux_raw_sys::system::new_utsname;

use crate::fs::File;
use crate::process::{self, Process};
use crate::sched;

type SysResult = Result<u64, u32>;

/// arch_prctl code to read the FS base (not in linux-raw-sys's general module).
const ARCH_GET_FS: u32 = 0x1003;

static LOGGED: IrqLock<BTreeSet<u64>> = IrqLock::ranked(BTreeSet::new(), crate::locks::LOGGED);

fn efault(_: UserMemError) -> u32 {
    EFAULT
}

fn write_console(p: &Process, buf: u64, len: u64) -> SysResult {
    let len = len.min(1 << 20);
    let mut chunk = vec![0u8; 4096.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        p.mem.lock().space.copy_from_user(buf + done, &mut chunk[..n]).map_err(efault)?;
        hal::serial::write_raw(&chunk[..n]);
        done += n as u64;
    }
    Ok(len)
}

fn sys_write(p: &Process, fd: u64, buf: u64, len: u64) -> SysResult {
    let pipe = match p.files.lock().get(fd)? {
        File::Console => None,
        File::Pipe(e) if e.write => Some(e.clone()),
        _ => return Err(EBADF),
    };
    if let Some(e) = pipe {
        let n = len.min(1 << 20) as usize;
        let mut data = vec![0u8; n];
        p.mem.lock().space.copy_from_user(buf, &mut data).map_err(efault)?;
        return e.pipe.write(&data).map(|n| n as u64).map_err(|_| EPIPE);
    }
    write_console(p, buf, len)
}

/// Copies a NUL-terminated string (at most `max` bytes) from user memory.
fn user_str(p: &Process, addr: u64, max: usize) -> Result<alloc::vec::Vec<u8>, u32> {
    let mut out = alloc::vec::Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        let at = addr + out.len() as u64;
        // Read up to the end of the page so an unmapped next page is not touched.
        let n = (4096 - (at % 4096) as usize).min(chunk.len());
        p.mem.lock().space.copy_from_user(at, &mut chunk[..n]).map_err(efault)?;
        if let Some(i) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..i]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > max {
            return Err(ENAMETOOLONG);
        }
    }
}

fn boot_name(path: &[u8]) -> Result<&str, u32> {
    let s = core::str::from_utf8(path).map_err(|_| ENOENT)?;
    let s = s.strip_prefix("/boot/").or_else(|| s.strip_prefix("./")).unwrap_or(s);
    if s.is_empty() || s.contains('/') {
        return Err(ENOENT);
    }
    Ok(s)
}

fn sys_openat(p: &Process, path: u64, flags: u64) -> SysResult {
    let name = user_str(p, path, 255)?;
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
fn stat_path(name: &[u8]) -> Result<stat, u32> {
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

/// execve: on success the new program's initial user frame (the caller returns to it), else
/// the errno.
fn sys_execve(pa: &alloc::sync::Arc<Process>, path: u64, argv: u64) -> Result<TrapFrame, u32> {
    let p: &Process = pa;
    let name = user_str(p, path, 255)?;
    let n = boot_name(&name)?;
    let mut args = alloc::vec::Vec::new();
    let mut total = 0;
    if argv != 0 {
        for i in 0..256u64 {
            let mut raw = [0u8; 8];
            p.mem.lock().space.copy_from_user(argv + i * 8, &mut raw).map_err(efault)?;
            let ptr = u64::from_le_bytes(raw);
            if ptr == 0 {
                break;
            }
            let a = user_str(p, ptr, 4096)?;
            total += a.len() + 1;
            if total > 128 * 1024 {
                return Err(E2BIG);
            }
            args.push(a);
        }
    }
    if args.is_empty() {
        args.push(name.clone());
    }
    let fs = crate::initrd::get();
    process::exec(pa, &fs, n, &args)
}

fn sys_writev(p: &Process, fd: u64, iov: u64, cnt: u64) -> SysResult {
    if fd != 1 && fd != 2 {
        return Err(EBADF);
    }
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let mut raw = [0u8; 16];
        p.mem.lock().space.copy_from_user(iov + i * 16, &mut raw).map_err(efault)?;
        let base = u64::from_le_bytes(raw[..8].try_into().unwrap());
        let len = u64::from_le_bytes(raw[8..].try_into().unwrap());
        total += write_console(p, base, len)?;
    }
    Ok(total)
}

fn sys_read(p: &Process, fd: u64, buf: u64, len: u64) -> SysResult {
    let pipe = match p.files.lock().get(fd)? {
        File::Pipe(e) if !e.write => Some(e.clone()),
        File::Pipe(_) => return Err(EBADF),
        _ => None,
    };
    if let Some(e) = pipe {
        let data = e.pipe.read(len.min(1 << 20) as usize);
        p.mem.lock().space.copy_to_user(buf, &data).map_err(efault)?;
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
        p.mem.lock().space.copy_to_user(buf, chunk).map_err(efault)?;
        return Ok(chunk.len() as u64);
    }
    if len == 0 {
        return Ok(0);
    }
    // A line at a time, like a terminal in canonical mode (echo included).
    let mut line = vec![];
    while (line.len() as u64) < len {
        // A killed task (ctrl-c, kill -t) stops waiting for input and dies on the way out.
        let Some(b) = crate::drivers::serial::read_byte_or(|| p.terminal.load(core::sync::atomic::Ordering::Relaxed)) else {
            return Err(EINTR);
        };
        let b = if b == b'\r' { b'\n' } else { b };
        hal::serial::write_raw(&[b]);
        line.push(b);
        if b == b'\n' {
            break;
        }
    }
    p.mem.lock().space.copy_to_user(buf, &line).map_err(efault)?;
    Ok(line.len() as u64)
}

fn put<T: hal::user::Pod>(p: &Process, addr: u64, v: &T) -> SysResult {
    // Plain-old-data structures from linux-raw-sys: copied out byte for byte.
    p.mem.lock().space.copy_to_user(addr, pod_bytes(v)).map_err(efault)?;
    Ok(0)
}

fn pod_bytes<T: hal::user::Pod>(v: &T) -> &[u8] {
    hal::user::pod_bytes(v)
}

fn sys_clock_gettime(p: &Process, clock: u64, ts: u64) -> SysResult {
    let ns = match clock as u32 {
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME | CLOCK_REALTIME | CLOCK_MONOTONIC_COARSE
        | CLOCK_REALTIME_COARSE | CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => hal::time::now_ns(),
        _ => return Err(EINVAL),
    };
    let t = timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ };
    put(p, ts, &t)
}

fn read_timespec(p: &Process, addr: u64) -> Result<u64, u32> {
    let mut raw = [0u8; 16];
    p.mem.lock().space.copy_from_user(addr, &mut raw).map_err(efault)?;
    let s = i64::from_le_bytes(raw[..8].try_into().unwrap());
    let n = i64::from_le_bytes(raw[8..].try_into().unwrap());
    if s < 0 || !(0..1_000_000_000).contains(&n) {
        return Err(EINVAL);
    }
    Ok((s as u64).saturating_mul(1_000_000_000).saturating_add(n as u64))
}

fn sys_uname(p: &Process, buf: u64) -> SysResult {
    let mut u: new_utsname = zeroed_utsname();
    fn set(dst: &mut [core::ffi::c_char; 65], s: &str) {
        for (d, b) in dst.iter_mut().zip(s.bytes()) {
            *d = b as core::ffi::c_char;
        }
    }
    set(&mut u.sysname, "Quest");
    set(&mut u.nodename, "quest");
    set(&mut u.release, crate::VERSION);
    set(&mut u.version, "Quest-RS");
    set(&mut u.machine, "x86_64");
    put(p, buf, &u)
}

fn zeroed_utsname() -> new_utsname {
    new_utsname {
        sysname: [0; 65],
        nodename: [0; 65],
        release: [0; 65],
        version: [0; 65],
        machine: [0; 65],
        domainname: [0; 65],
    }
}

fn prot(prot: u64) -> UserAccess {
    let (w, x) = (prot & u64::from(PROT_WRITE) != 0, prot & u64::from(PROT_EXEC) != 0);
    // PROT_NONE: mapped, but no access at all (guard pages); any other right implies read on x86.
    UserAccess { read: prot & u64::from(PROT_READ) != 0 || w || x, write: w, exec: x }
}

fn sys_mmap(p: &Process, addr: u64, len: u64, pr: u64, flags: u64, fd: u64) -> SysResult {
    let flags = flags as u32;
    if flags & MAP_ANONYMOUS == 0 || fd as i64 != -1 && fd as i32 != -1 {
        return Err(ENODEV); // no files to map yet
    }
    let fixed = (flags & MAP_FIXED != 0).then_some(addr);
    process::mmap_anon(p, fixed, len, prot(pr)).map_err(|e| match e {
        UserMemError::Fault => EINVAL,
        UserMemError::NoMemory => ENOMEM,
    })
}

fn sys_getrandom(p: &Process, buf: u64, len: u64) -> SysResult {
    let len = len.min(256);
    let mut x = hal::cpu::rdtsc() | 1;
    let bytes: alloc::vec::Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    p.mem.lock().space.copy_to_user(buf, &bytes).map_err(efault)?;
    Ok(len)
}

fn name(nr: u64) -> &'static str {
    quest_abi::linux_syscall_name(nr).unwrap_or("?")
}

fn dispatch(pa: &alloc::sync::Arc<Process>, f: &TrapFrame) -> SysResult {
    let p: &Process = pa;
    let (a0, a1, a2, a3, a4) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    if f.rax >> 32 != 0 {
        return Err(ENOSYS);
    }
    match f.rax as u32 {
        __NR_read => sys_read(p, a0, a1, a2),
        __NR_write => sys_write(p, a0, a1, a2),
        __NR_writev => sys_writev(p, a0, a1, a2),
        __NR_open => sys_openat(p, a0, a1),
        __NR_openat => {
            if a0 as i32 != AT_FDCWD && !user_str(p, a1, 255)?.starts_with(b"/") {
                return Err(EBADF);
            }
            sys_openat(p, a1, a2)
        }
        __NR_close => p.files.lock().close(a0).map(|_| 0),
        __NR_lseek => match p.files.lock().get(a0)? {
            File::Console | File::Pipe(_) | File::Shm(_) => Err(ESPIPE),
            File::Dir { pos } => {
                if a1 == 0 && a2 as u32 == SEEK_SET {
                    *pos = 0;
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            File::Boot { data, pos } => {
                let base = match a2 as u32 {
                    SEEK_SET => 0i64,
                    SEEK_CUR => *pos as i64,
                    SEEK_END => data.len() as i64,
                    _ => return Err(EINVAL),
                };
                let new = base.checked_add(a1 as i64).filter(|&n| n >= 0).ok_or(EINVAL)?;
                *pos = (new as usize).min(data.len());
                Ok(new as u64)
            }
        },
        __NR_fstat => {
            let st = stat_of(p.files.lock().get(a0)?);
            put(p, a1, &st)
        }
        __NR_stat | __NR_lstat => {
            let st = stat_path(&user_str(p, a0, 255)?)?;
            put(p, a1, &st)
        }
        __NR_newfstatat => {
            let name = user_str(p, a1, 255)?;
            let st = if name.is_empty() && a3 as u32 & AT_EMPTY_PATH != 0 {
                stat_of(p.files.lock().get(a0)?)
            } else {
                stat_path(&name)?
            };
            put(p, a2, &st)
        }
        __NR_dup => {
            let f = p.files.lock().get(a0)?.clone();
            p.files.lock().insert(f, 0)
        }
        __NR_dup2 | __NR_dup3 => p.files.lock().dup_to(a0, a1),
        __NR_fcntl => match a1 as u32 {
            F_DUPFD | F_DUPFD_CLOEXEC => {
                let f = p.files.lock().get(a0)?.clone();
                p.files.lock().insert(f, a2 as usize)
            }
            F_GETFD | F_SETFD | F_SETFL => p.files.lock().get(a0).map(|_| 0),
            F_GETFL => p.files.lock().get(a0).map(|_| u64::from(O_RDWR)),
            _ => Err(EINVAL),
        },
        __NR_getcwd => {
            if a1 < 7 {
                return Err(ERANGE);
            }
            p.mem.lock().space.copy_to_user(a0, b"/boot\0").map_err(efault)?;
            Ok(a0)
        }
        __NR_chdir => {
            let d = user_str(p, a0, 255)?;
            if d == b"/boot" || d == b"/boot/" || d == b"/" { Ok(0) } else { Err(ENOENT) }
        }
        // Handled in `handle` (it replaces the caller's frame).
        __NR_execve => Err(ENOSYS),
        __NR_sync => Ok(0),
        __NR_readv => {
            if a2 > 1024 {
                return Err(EINVAL);
            }
            let mut total = 0;
            for i in 0..a2 {
                let mut raw = [0u8; 16];
                p.mem.lock().space.copy_from_user(a1 + i * 16, &mut raw).map_err(efault)?;
                let base = u64::from_le_bytes(raw[..8].try_into().unwrap());
                let len = u64::from_le_bytes(raw[8..].try_into().unwrap());
                let n = sys_read(p, a0, base, len)?;
                total += n;
                if n < len {
                    break;
                }
            }
            Ok(total)
        }
        __NR_getdents64 => sys_getdents64(p, a0, a1, a2),
        __NR_pipe | __NR_pipe2 => {
            let (r, w) = crate::pipe::new();
            let (rfd, wfd) = p.files.lock().insert_pair(File::Pipe(r), File::Pipe(w))?;
            let fds = [rfd as i32, wfd as i32];
            if let Err(e) = put(p, a0, &fds) {
                let _ = p.files.lock().close(rfd);
                let _ = p.files.lock().close(wfd);
                return Err(e);
            }
            Ok(0)
        }
        __NR_statx => {
            let name = user_str(p, a1, 255)?;
            let st = if name.is_empty() && a2 as u32 & AT_EMPTY_PATH != 0 {
                stat_of(p.files.lock().get(a0)?)
            } else {
                stat_path(&name)?
            };
            // struct statx (256 bytes): mask, blksize, nlink, mode, size, blocks.
            let mut b = [0u8; 256];
            b[0..4].copy_from_slice(&(STATX_BASIC_STATS).to_le_bytes());
            b[4..8].copy_from_slice(&(st.st_blksize as u32).to_le_bytes());
            b[16..20].copy_from_slice(&(st.st_nlink as u32).to_le_bytes());
            b[28..30].copy_from_slice(&(st.st_mode as u16).to_le_bytes());
            b[40..48].copy_from_slice(&(st.st_size as u64).to_le_bytes());
            b[48..56].copy_from_slice(&(st.st_blocks as u64).to_le_bytes());
            p.mem.lock().space.copy_to_user(a4_of(f), &b).map_err(efault)?;
            Ok(0)
        }
        __NR_prlimit64 => {
            if a0 != 0 && a0 as u32 != p.pid {
                return Err(ESRCH);
            }
            if a3 != 0 {
                let (cur, max) = match a1 as u32 {
                    RLIMIT_STACK => (crate::process::STACK_PAGES * 4096, crate::process::STACK_PAGES * 4096),
                    RLIMIT_NOFILE => (256, 256),
                    _ => (u64::MAX, u64::MAX),
                };
                put(p, a3, &[cur, max])?;
            }
            Ok(0)
        }
        __NR_sched_getaffinity => {
            let n = hal::percpu::online();
            let mask: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            if a1 < 8 {
                return Err(EINVAL);
            }
            put(p, a2, &mask)?;
            Ok(8)
        }
        __NR_reboot => {
            if a0 as u32 != LINUX_REBOOT_MAGIC1 || !matches!(a1 as u32, LINUX_REBOOT_MAGIC2 | LINUX_REBOOT_MAGIC2A | LINUX_REBOOT_MAGIC2B | LINUX_REBOOT_MAGIC2C) {
                return Err(EINVAL);
            }
            match a2 as u32 {
                LINUX_REBOOT_CMD_POWER_OFF | LINUX_REBOOT_CMD_HALT => {
                    hal::println!("Quest-RS: powering off.");
                    hal::cpu::power_off(hal::cpu::ExitCode::Success)
                }
                _ => Err(EINVAL),
            }
        }
        __NR_kill | __NR_tgkill | __NR_tkill => {
            let (target, sig) = if f.rax as u32 == __NR_tgkill { (a0, a2) } else { (a0, a1) };
            if sig == 0 {
                return process::get(target as u32).map(|_| 0).ok_or(ESRCH);
            }
            if !matches!(sig as u32, SIGKILL | SIGTERM | SIGINT) {
                return Err(EINVAL);
            }
            let target = process::of_thread(target as u32).map(|q| q.pid).unwrap_or(target as u32);
            process::kill(target, 128 + sig as i32).map(|_| 0)
        }
        // Handled in `handle` (they never return).
        __NR_exit_group | __NR_exit => Err(ENOSYS),
        __NR_fork | __NR_vfork => process::fork(pa, f).map(u64::from),
        __NR_clone => {
            let flags = a0;
            if flags & u64::from(CLONE_THREAD) != 0 && flags & u64::from(CLONE_VM) != 0 {
                process::clone_thread(pa, f, flags, a1, a2, a3, f.r8).map(u64::from)
            } else if flags & u64::from(CLONE_VM) == 0 {
                // A fork with extra flags (what musl's fork and posix_spawn use).
                process::fork(pa, f).map(u64::from)
            } else {
                Err(EINVAL)
            }
        }
        __NR_wait4 => {
            let nohang = a2 as u32 & WNOHANG != 0;
            match process::wait_child(pa, a0 as i64, nohang)? {
                Some((pid, code)) => {
                    if a1 != 0 {
                        let status: u32 = if code >= 128 { (code - 128) as u32 } else { (code as u32 & 0xff) << 8 };
                        put(p, a1, &status)?;
                    }
                    Ok(u64::from(pid))
                }
                None => Ok(0),
            }
        }
        __NR_futex => {
            let op = a1 as u32 & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
            match op {
                FUTEX_WAIT | FUTEX_WAIT_BITSET => {
                    let deadline = if a3 == 0 {
                        None
                    } else {
                        let t = read_timespec(p, a3)?;
                        Some(if op == FUTEX_WAIT { hal::time::now_ns().saturating_add(t) } else { t })
                    };
                    crate::futex::wait(p, a0, a2 as u32, deadline)
                }
                FUTEX_WAKE | FUTEX_WAKE_BITSET => Ok(crate::futex::wake(p.pid, a0, a2)),
                // musl's condition variables requeue waiters onto the mutex: without these,
                // pthread_cond_broadcast with several waiters lost wake-ups (found by the
                // thread storm). The 4th argument is the number to move, not a timeout.
                FUTEX_REQUEUE => crate::futex::requeue(p, a0, a2 as u32 as u64, a4, a3 as u32 as u64, None).map(|(w, _)| w),
                FUTEX_CMP_REQUEUE => {
                    crate::futex::requeue(p, a0, a2 as u32 as u64, a4, a3 as u32 as u64, Some(f.r9 as u32)).map(|(w, m)| w + m)
                }
                _ => Err(ENOSYS),
            }
        }
        __NR_arch_prctl => match a0 as u32 {
            ARCH_SET_FS => {
                if hal::user::set_fs_base(a1) { Ok(0) } else { Err(EPERM) }
            }
            ARCH_GET_FS => put(p, a1, &hal::user::fs_base()),
            _ => Err(EINVAL),
        },
        __NR_set_tid_address => {
            p.clear_tid.lock().insert(sched::current(), a0);
            Ok(u64::from(sched::current()))
        }
        __NR_gettid => Ok(u64::from(sched::current())),
        __NR_getpid => Ok(u64::from(p.pid)),
        __NR_getppid => Ok(u64::from(p.parent)),
        __NR_getuid | __NR_geteuid | __NR_getgid | __NR_getegid => Ok(0),
        __NR_ioctl => match (a0, a1 as u32) {
            (0..=2, TIOCGWINSZ) => put(p, a2, &winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 }),
            (0..=2, TCGETS) => {
                // A terminal in canonical mode with echo (what the console does).
                let mut t = [0u8; 60];
                t[0..4].copy_from_slice(&(ICRNL).to_le_bytes());
                t[4..8].copy_from_slice(&(OPOST | ONLCR).to_le_bytes());
                t[8..12].copy_from_slice(&(CS8 | CREAD | B115200).to_le_bytes());
                t[12..16].copy_from_slice(&(ICANON | ECHO | ISIG).to_le_bytes());
                p.mem.lock().space.copy_to_user(a2, &t).map_err(efault)?;
                Ok(0)
            }
            (0..=2, _) => Err(ENOTTY),
            _ => Err(EBADF),
        },
        __NR_brk => Ok(process::brk(p, a0)),
        __NR_mmap => sys_mmap(p, a0, a1, a2, a3, a4),
        __NR_munmap => process::munmap(p, a0, a1).map(|_| 0).map_err(|_| EINVAL),
        __NR_mprotect => process::mprotect(p, a0, a1, prot(a2)).map(|_| 0).map_err(|_| EINVAL),
        __NR_rt_sigaction | __NR_rt_sigprocmask | __NR_sigaltstack | __NR_set_robust_list => Ok(0),
        __NR_clock_gettime => sys_clock_gettime(p, a0, a1),
        __NR_gettimeofday => {
            let ns = hal::time::now_ns();
            let tv = [ns / 1_000_000_000, (ns % 1_000_000_000) / 1000];
            put(p, a0, &tv)
        }
        __NR_nanosleep => {
            let d = read_timespec(p, a0)?;
            let _ = sched::sleep_ns(d);
            Ok(0)
        }
        __NR_clock_nanosleep => {
            let d = read_timespec(p, a2)?;
            // An interrupted sleep ends the call; the kill is acted on as the call returns.
            let _ = if a1 as u32 & TIMER_ABSTIME != 0 { sched::sleep_until(d) } else { sched::sleep_ns(d) };
            Ok(0)
        }
        __NR_sched_yield => {
            sched::schedule();
            Ok(0)
        }
        __NR_poll => Ok(0),
        __NR_uname => sys_uname(p, a0),
        __NR_getrandom => sys_getrandom(p, a0, a1),
        nr if f.rax >> 32 == 0 && quest_abi::nr::is_quest_range(f.rax) => quest_call(p, nr, a0, a1, a2, a3),
        nr => {
            if LOGGED.lock().insert(u64::from(nr)) {
                hal::println!("syscall {nr} ({}) not implemented: ENOSYS", name(u64::from(nr)));
            }
            Err(ENOSYS)
        }
    }
}

/// hal's system-call hook.
///
/// The calls that never return to the caller (exit, exit_group, a kill noticed on entry or
/// exit) and execve (which returns to a new program) are handled here, after every value this
/// function owns is dropped: a thread's kernel stack is abandoned when it dies, so an `Arc`
/// still held on it would never be released. Before, every exit leaked the whole `Process`
/// record (about 600 bytes of heap per program run) and every execve its arguments.
pub fn handle(frame: &mut TrapFrame) {
    hal::cpu::enable_interrupts();
    let Some(p) = process::current() else {
        frame.rax = (-(ENOSYS as i64)) as u64;
        return;
    };
    if p.terminal.load(core::sync::atomic::Ordering::Relaxed) {
        drop(p);
        process::exit_current(128 + 9);
    }
    let nr = frame.rax;
    let result = match u32::try_from(nr) {
        Ok(__NR_exit_group) => {
            drop(p);
            process::exit_current(frame.rdi as i32)
        }
        Ok(__NR_exit) => {
            p.exit_code.store(frame.rdi as i32, core::sync::atomic::Ordering::Relaxed);
            drop(p);
            process::exit_thread()
        }
        Ok(__NR_execve) => match sys_execve(&p, frame.rdi, frame.rsi) {
            Ok(new) => {
                *frame = new;
                Ok(0)
            }
            Err(e) => Err(e),
        },
        _ => dispatch(&p, frame),
    };
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => (-(i64::from(e))) as u64,
    };
    // Killed (or another thread called exit_group) while in the kernel: die before returning.
    let dying = p.terminal.load(core::sync::atomic::Ordering::Relaxed);
    drop(p);
    if dying {
        process::exit_thread();
    }
}

fn get_param(p: &Process, addr: u64) -> Result<quest_abi::SchedParam, u32> {
    let mut b = [0u8; 20];
    p.mem.lock().space.copy_from_user(addr, &mut b).map_err(efault)?;
    let w = |i: usize| i32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    Ok(quest_abi::SchedParam { kind: w(0), c: w(1), t: w(2), io_class: w(3), affinity: w(4) })
}

/// Quest's own calls (numbers from crates/quest-abi).
fn quest_call(p: &Process, nr: u32, a0: u64, a1: u64, a2: u64, a3: u64) -> SysResult {
    use quest_abi::nr as q;
    match nr {
        q::SHMCOMM_OPEN_SEND | q::SHMCOMM_OPEN_RECEIVE => {
            let side = crate::shmcomm::open(a0 as u32, a1 as u32, a2, a3 as i64, nr == q::SHMCOMM_OPEN_SEND)?;
            p.files.lock().insert(File::Shm(side), 0)
        }
        q::SHMCOMM_WRITE => crate::shmcomm::write(p, &*shm_side(p, a0)?, a1, a2),
        q::SHMCOMM_READ => crate::shmcomm::read(p, &*shm_side(p, a0)?, a1, a2),
        q::SHMCOMM_CLOSE => {
            shm_side(p, a0)?;
            p.files.lock().close(a0).map(|_| 0)
        }
        q::SHMCOMM_GET_KEY => shm_side(p, a0).map(|s| u64::from(s.key())),
        q::TPIPE_OPEN => crate::tpipe::open(p, a0, a1, a2),
        q::TPIPE_WRITE => {
            crate::tpipe::check_end(p, a0, true)?;
            sys_write(p, a0, a1, a2)
        }
        q::TPIPE_READ => {
            crate::tpipe::check_end(p, a0, false)?;
            sys_read(p, a0, a1, a2)
        }
        q::TPIPE_CLOSE => {
            crate::tpipe::is_end(p, a0)?;
            p.files.lock().close(a0).map(|_| 0)
        }
        q::VCPU_CREATE => crate::vcpu::create(&get_param(p, a0)?).map(u64::from),
        q::VCPU_DESTROY => crate::vcpu::destroy(a0 as u32, a1 != 0).map(|_| 0),
        q::VCPU_BIND_TASK => crate::vcpu::bind_current(a0 as u32).map(|_| 0),
        q::PS_TASKS => ps_tasks(p, a0, a1 as i64),
        q::PS_VCPUS => ps_vcpus(p, a0, a1 as i64),
        q::TASK_KILL => {
            let q = process::of_thread(a0 as u32).ok_or(ESRCH)?;
            process::mark_terminal(&q, 128 + 9);
            Ok(0)
        }
        q::QUESTV_EXITS => {
            hal::questv::sandbox().ok_or(ENODEV)?;
            let mut words = alloc::vec![0u64; 1 + hal::percpu::MAX_CPUS.max(16) * (1 + quest_abi::questv::EXIT_REASONS)];
            let n = hal::questv::exit_stats(&mut words).map_err(|_| EIO)?;
            if (a1 as usize) < n {
                return Err(EINVAL);
            }
            let bytes: alloc::vec::Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(n).collect();
            p.mem.lock().space.copy_to_user(a0, &bytes).map_err(|_| EFAULT)?;
            Ok(n as u64)
        }
        q::VCPU_GETPARAMS => {
            let sp = crate::vcpu::current_params();
            put(p, a0, &[sp.kind, sp.c, sp.t, sp.io_class, sp.affinity])
        }
        _ => Err(ENOSYS),
    }
}

/// The shmcomm side behind descriptor `fd` (EBADF if it is something else).
fn shm_side(p: &Process, fd: u64) -> Result<alloc::sync::Arc<crate::shmcomm::Side>, u32> {
    match p.files.lock().get(fd)? {
        File::Shm(s) => Ok(s.clone()),
        _ => Err(EBADF),
    }
}

fn ps_tasks(p: &Process, buf: u64, max: i64) -> SysResult {
    if max < 0 {
        return Err(EINVAL);
    }
    let threads = sched::threads();
    let mut recs = alloc::vec::Vec::new();
    for t in &threads {
        let Some(q) = process::of_thread(t.id) else { continue };
        let list = q.threads.lock().clone();
        let mut r = quest_abi::TaskInfo::default();
        r.id = t.id;
        r.process = q.pid;
        r.parent = if t.id == q.pid { q.parent } else { q.pid };
        r.vcpu = t.vcpu.and_then(|v| crate::vcpu::global_id(t.cpu, v)).unwrap_or(0);
        r.pcpu = t.cpu as u32;
        let state = match t.state {
            sched::State::Running => quest_abi::TaskState::Running,
            sched::State::Ready => quest_abi::TaskState::Ready,
            sched::State::Sleeping(_) => quest_abi::TaskState::Sleeping,
            sched::State::Blocked => quest_abi::TaskState::Waiting,
            sched::State::Dead => quest_abi::TaskState::Zombie,
        };
        r.status = quest_abi::TaskInfo::make_status(state, q.terminal.load(core::sync::atomic::Ordering::Relaxed));
        r.nthreads = list.len() as u32;
        r.thread = list.iter().position(|&x| x == t.id).unwrap_or(0) as u32;
        r.set_name(q.name.lock().as_bytes());
        recs.push(r);
    }
    recs.sort_by_key(|r| r.id);
    for (i, r) in recs.iter().take(max as usize).enumerate() {
        put(p, buf + i as u64 * core::mem::size_of::<quest_abi::TaskInfo>() as u64, r)?;
    }
    Ok(recs.len() as u64)
}

fn ps_vcpus(p: &Process, buf: u64, max: i64) -> SysResult {
    if max < 0 {
        return Err(EINVAL);
    }
    let all = crate::vcpu::all();
    for (i, (id, cpu, v)) in all.iter().take(max as usize).enumerate() {
        let r = quest_abi::VcpuInfo {
            id: *id,
            pcpu: *cpu as u32,
            kind: if v.params.kind == vcpu_sched::VcpuKind::Main { 0 } else { 1 },
            c: v.params.c_us,
            t: v.params.t_us,
            io_class: 0,
            num_tasks: v.tasks as u32,
        };
        put(p, buf + i as u64 * core::mem::size_of::<quest_abi::VcpuInfo>() as u64, &r)?;
    }
    Ok(all.len() as u64)
}

fn a4_of(f: &TrapFrame) -> u64 {
    f.r8
}

fn sys_getdents64(p: &Process, fd: u64, buf: u64, len: u64) -> SysResult {
    let mut files = p.files.lock();
    let File::Dir { pos } = files.get(fd)? else { return Err(ENOTDIR) };
    let names: alloc::vec::Vec<&str> = crate::initrd::get().files().map(|(n, _)| n).collect();
    let mut out = alloc::vec::Vec::new();
    let mut i = *pos;
    while i < names.len() {
        let name = names[i].as_bytes();
        let reclen = (19 + name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > len as usize {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes()); // d_ino
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes()); // d_off
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(DT_REG as u8);
        out.extend_from_slice(name);
        out.resize(start + reclen, 0);
        i += 1;
    }
    if out.is_empty() && i < names.len() {
        return Err(EINVAL);
    }
    *pos = i;
    drop(files);
    p.mem.lock().space.copy_to_user(buf, &out).map_err(efault)?;
    Ok(out.len() as u64)
}
