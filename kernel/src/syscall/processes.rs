//! Processes, threads and the system: execve, clone, wait4, kill, prlimit64, arch_prctl,
//! uname, getrandom and reboot (fork, the exits and the ids are one-liners in the dispatcher).
use alloc::vec::Vec;

use hal::trap::TrapFrame;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use linux_raw_sys::system::new_utsname;

use super::{Args, Cx, Errno, SysResult, UserCStr, UserPtr, UserSliceMut};
use crate::process;

/// arch_prctl code to read the FS base (not in linux-raw-sys's general module).
const ARCH_GET_FS: u32 = 0x1003;

/// Reads a NULL-terminated array of strings (argv, envp), at most 128 KiB in all.
fn read_strings(p: &process::Process, arr: UserPtr<u64>, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut v = Vec::new();
    if arr.is_null() {
        return Ok(v);
    }
    for i in 0..4096u64 {
        let ptr = arr.at(i)?.read(p)?;
        if ptr == 0 {
            return Ok(v);
        }
        let a = UserCStr::new(ptr).read(p, 128 * 1024)?;
        *total += a.len() + 1;
        if *total > 128 * 1024 {
            return Err(E2BIG);
        }
        v.push(a);
    }
    Err(E2BIG)
}

/// execve: on success the new program's initial user frame (the caller returns to it), else
/// the errno. The program is any executable file of the tree (/boot's, or one written to the
/// in-memory file system).
pub fn execve(cx: &Cx, path: UserCStr, argv: UserPtr<u64>, envp: UserPtr<u64>) -> Result<TrapFrame, Errno> {
    let p = cx.p();
    let full = super::files::path_at(cx, AT_FDCWD as u32 as u64, path)?;
    let (node, real) = crate::vfs::resolve(&full, true)?;
    let image: alloc::borrow::Cow<'static, [u8]> = match &node.kind {
        crate::vfs::Kind::Boot(b) => alloc::borrow::Cow::Borrowed(b),
        crate::vfs::Kind::File(d) if node.mode() & 0o111 != 0 => alloc::borrow::Cow::Owned(d.read_at(0, usize::MAX)),
        crate::vfs::Kind::External(x) if !x.is_dir() && node.mode() & 0o111 != 0 => alloc::borrow::Cow::Owned(x.read_at(0, usize::try_from(x.size()).map_err(|_| E2BIG)?.min(256 << 20))?),
        _ if node.is_dir() => return Err(EACCES),
        _ => return Err(EACCES),
    };
    let mut total = 0;
    let mut args = read_strings(p, argv, &mut total)?;
    let env = read_strings(p, envp, &mut total)?;
    if args.is_empty() {
        args.push(real.clone().into_bytes());
    }
    process::exec(&cx.proc, &image, &real, &args, &env)
}

/// clone: a thread (CLONE_THREAD | CLONE_VM), a fork with extra flags (musl's fork), or
/// CLONE_VM | CLONE_VFORK (musl's posix_spawn), done as a vfork (`process::fork`).
pub fn clone(cx: &Cx, f: &TrapFrame, a: Args) -> SysResult {
    let flags = a.n(0);
    let vm = flags & u64::from(CLONE_VM) != 0;
    let vfork = flags & u64::from(CLONE_VFORK) != 0;
    if flags & u64::from(CLONE_THREAD) != 0 && vm {
        process::clone_thread(&cx.proc, f, flags, a.n(1), a.n(2), a.n(3), a.n(4)).map(u64::from)
    } else if !vm || vfork {
        process::fork(&cx.proc, f, a.n(1), vfork).map(u64::from)
    } else {
        Err(EINVAL) // CLONE_VM without CLONE_THREAD or CLONE_VFORK: not supported yet
    }
}

pub fn wait4(cx: &Cx, pid: i64, status: UserPtr<u32>, options: u64) -> SysResult {
    let nohang = options as u32 & WNOHANG != 0;
    let untraced = options as u32 & WUNTRACED != 0;
    let continued = options as u32 & WCONTINUED != 0;
    match process::wait_child(&cx.proc, pid, nohang, untraced, continued)? {
        Some((pid, code)) => {
            if !status.is_null() {
                status.write(cx.p(), &(code as u32))?;
            }
            Ok(u64::from(pid))
        }
        None => Ok(0),
    }
}

/// prlimit64 (getrlimit and setrlimit in musl): RLIMIT_NOFILE (at most `fs::MAX_FDS`),
/// RLIMIT_DATA (anonymous memory promised) and RLIMIT_STACK (the main stack from the next
/// execve, at most 1 GiB) are honoured; RLIMIT_CORE may be set to anything (no core files
/// are ever written); other limits report "unlimited" and cannot be changed yet (EPERM).
pub fn prlimit64(cx: &Cx, pid: u64, resource: u64, new: UserPtr<rlimit64>, old: UserPtr<rlimit64>) -> SysResult {
    if pid != 0 && pid as u32 != cx.p().pid {
        return Err(ESRCH);
    }
    let p = cx.p();
    let (cur, max) = match resource as u32 {
        RLIMIT_STACK => (p.stack_limit.load(core::sync::atomic::Ordering::Relaxed), process::MAX_STACK_LIMIT),
        RLIMIT_DATA => (p.data_limit.load(core::sync::atomic::Ordering::Relaxed), u64::MAX),
        RLIMIT_NOFILE => {
            let f = p.files.lock();
            (f.limit as u64, f.hard as u64)
        }
        RLIMIT_CORE => (p.core_limit.load(core::sync::atomic::Ordering::Relaxed), u64::MAX),
        r if r < RLIM_NLIMITS => (u64::MAX, u64::MAX),
        _ => return Err(EINVAL),
    };
    let set = if new.is_null() { None } else { Some(new.read(p)?) };
    if let Some(n) = set {
        if n.rlim_cur > n.rlim_max {
            return Err(EINVAL);
        }
        match resource as u32 {
            RLIMIT_NOFILE => {
                // Every Quest process is root, so it may raise the hard limit, up to MAX_FDS.
                if n.rlim_max > crate::fs::MAX_FDS as u64 && n.rlim_max != u64::MAX {
                    return Err(EPERM);
                }
                let mut f = p.files.lock();
                f.limit = (n.rlim_cur as usize).min(crate::fs::MAX_FDS);
                f.hard = (n.rlim_max as usize).min(crate::fs::MAX_FDS);
            }
            RLIMIT_CORE => p.core_limit.store(n.rlim_cur, core::sync::atomic::Ordering::Relaxed),
            RLIMIT_DATA => p.data_limit.store(n.rlim_cur, core::sync::atomic::Ordering::Relaxed),
            RLIMIT_STACK => {
                if n.rlim_cur > process::MAX_STACK_LIMIT {
                    return Err(EPERM);
                }
                p.stack_limit.store(n.rlim_cur, core::sync::atomic::Ordering::Relaxed);
            }
            _ if n.rlim_cur == cur && n.rlim_max == max => {}
            _ => return Err(EPERM),
        }
    }
    if !old.is_null() {
        old.write(p, &rlimit64 { rlim_cur: cur, rlim_max: max })?;
    }
    Ok(0)
}

/// time(2): seconds of CLOCK_REALTIME (the kernel's one clock, counted from boot).
pub fn time(cx: &Cx, out: UserPtr<u64>) -> SysResult {
    let s = hal::time::now_ns() / 1_000_000_000;
    if !out.is_null() {
        out.write(cx.p(), &s)?;
    }
    Ok(s)
}

/// sysinfo(2): uptime, memory (frames), number of processes. Written as `struct sysinfo`'s
/// fourteen 8-byte words (procs is the low 16 bits of word 10, mem_unit the low 32 of 13).
pub fn sysinfo(cx: &Cx, out: UserPtr<[u64; 14]>) -> SysResult {
    let (free, total) = hal::mm::frame_counts();
    let mut w = [0u64; 14];
    w[0] = hal::time::now_ns() / 1_000_000_000;
    w[4] = total as u64 * 4096;
    w[5] = free as u64 * 4096;
    w[10] = process::all().len() as u64 & 0xffff;
    w[13] = 1;
    out.write(cx.p(), &w).map(|_| 0)
}

/// prctl: PR_SET_NAME and PR_GET_NAME (the process's short name); others are not supported
/// yet (EINVAL).
pub fn prctl(cx: &Cx, op: u64, arg: u64) -> SysResult {
    const PR_SET_NAME: u64 = 15;
    const PR_GET_NAME: u64 = 16;
    match op {
        PR_SET_NAME => {
            let mut n = UserCStr::new(arg).read(cx.p(), 4096)?;
            n.truncate(15);
            let name = alloc::string::String::from_utf8_lossy(&n).into_owned();
            crate::sched::set_current_name(&name); // the kernel console's `ps`
            cx.p().comm.lock().insert(cx.tid, name); // `ps -t` (PS_TASKS)
            Ok(0)
        }
        PR_GET_NAME => {
            let name = thread_name(cx.p(), cx.tid);
            let mut b = [0u8; 16];
            for (d, s) in b.iter_mut().zip(name.bytes().take(15)) {
                *d = s;
            }
            UserPtr::<[u8; 16]>::new(arg).write(cx.p(), &b).map(|_| 0)
        }
        _ => Err(EINVAL),
    }
}

/// A thread's short name: what PR_SET_NAME gave it, else its program's file name (15 bytes at
/// most, as Linux's `comm`).
pub fn thread_name(p: &process::Process, tid: u32) -> alloc::string::String {
    let mut n: alloc::string::String = p.comm.lock().get(&tid).cloned().unwrap_or_else(|| p.name.lock().rsplit('/').next().unwrap_or("").into());
    while n.len() > 15 {
        n.pop();
    }
    n
}

pub fn reboot(magic: u64, magic2: u64, cmd: u64) -> SysResult {
    if magic as u32 != LINUX_REBOOT_MAGIC1
        || !matches!(magic2 as u32, LINUX_REBOOT_MAGIC2 | LINUX_REBOOT_MAGIC2A | LINUX_REBOOT_MAGIC2B | LINUX_REBOOT_MAGIC2C)
    {
        return Err(EINVAL);
    }
    match cmd as u32 {
        LINUX_REBOOT_CMD_POWER_OFF | LINUX_REBOOT_CMD_HALT => {
            hal::println!("Quest-RS: powering off.");
            hal::cpu::power_off(hal::cpu::ExitCode::Success)
        }
        _ => Err(EINVAL),
    }
}

pub fn arch_prctl(cx: &Cx, code: u64, addr: u64) -> SysResult {
    match code as u32 {
        ARCH_SET_FS => {
            if hal::user::set_fs_base(addr) { Ok(0) } else { Err(EPERM) }
        }
        ARCH_GET_FS => UserPtr::<u64>::new(addr).write(cx.p(), &hal::user::fs_base()).map(|_| 0),
        _ => Err(EINVAL),
    }
}

pub fn uname(cx: &Cx, buf: UserPtr<new_utsname>) -> SysResult {
    let mut u = new_utsname {
        sysname: [0; 65],
        nodename: [0; 65],
        release: [0; 65],
        version: [0; 65],
        machine: [0; 65],
        domainname: [0; 65],
    };
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
    buf.write(cx.p(), &u).map(|_| 0)
}

pub fn getrandom(cx: &Cx, buf: UserSliceMut) -> SysResult {
    let len = buf.len().min(256);
    let mut x = hal::cpu::rdtsc() | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    buf.write(cx.p(), &bytes)?;
    Ok(len)
}

/// setpgid(pid, pgid): the caller or one of its children (0: the caller) joins process group
/// `pgid` (0: its own id), which must exist in the same session unless it is the process's own.
pub fn setpgid(cx: &Cx, pid: u64, pgid: u64) -> SysResult {
    use core::sync::atomic::Ordering::Relaxed;
    let me = cx.p();
    let pid = pid as u32;
    let target = if pid == 0 || pid == me.pid {
        cx.proc.clone()
    } else {
        me.children.lock().iter().find(|c| c.pid == pid).cloned().ok_or(ESRCH)?
    };
    if (pgid as i64) < 0 {
        return Err(EINVAL);
    }
    let g = if pgid == 0 { target.pid } else { pgid as u32 };
    if target.sid.load(Relaxed) == target.pid {
        return Err(EPERM); // a session leader stays in its group
    }
    if g != target.pid && !process::all().iter().any(|q| q.pgid.load(Relaxed) == g && q.sid.load(Relaxed) == target.sid.load(Relaxed)) {
        return Err(EPERM);
    }
    target.pgid.store(g, Relaxed);
    Ok(0)
}

/// getpgid(pid) / getsid(pid): 0 is the caller.
pub fn getpgid(cx: &Cx, pid: u64, session: bool) -> SysResult {
    use core::sync::atomic::Ordering::Relaxed;
    let q = if pid == 0 { cx.proc.clone() } else { process::get(pid as u32).ok_or(ESRCH)? };
    Ok(u64::from(if session { q.sid.load(Relaxed) } else { q.pgid.load(Relaxed) }))
}

/// setsid: a new session and process group led by the caller (EPERM for a group leader).
pub fn setsid(cx: &Cx) -> SysResult {
    use core::sync::atomic::Ordering::Relaxed;
    let p = cx.p();
    if process::all().iter().any(|q| q.pgid.load(Relaxed) == p.pid) {
        return Err(EPERM);
    }
    p.sid.store(p.pid, Relaxed);
    p.pgid.store(p.pid, Relaxed);
    Ok(u64::from(p.pid))
}
