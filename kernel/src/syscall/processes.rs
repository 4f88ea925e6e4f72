//! Processes, threads and the system: execve, clone, wait4, kill, prlimit64,
//! sched_getaffinity, arch_prctl, uname, getrandom and reboot (fork, the exits and the ids are
//! one-liners in the dispatcher).
use alloc::vec::Vec;

use hal::trap::TrapFrame;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;
use linux_raw_sys::system::new_utsname;

use super::{Args, Cx, Errno, SysResult, UserCStr, UserPtr, UserSliceMut};
use crate::process;

/// arch_prctl code to read the FS base (not in linux-raw-sys's general module).
const ARCH_GET_FS: u32 = 0x1003;

/// execve: on success the new program's initial user frame (the caller returns to it), else
/// the errno.
pub fn execve(cx: &Cx, path: UserCStr, argv: UserPtr<u64>) -> Result<TrapFrame, Errno> {
    let p = cx.p();
    let name = path.read(p, 255)?;
    let n = super::files::boot_name(&name)?;
    let mut args = Vec::new();
    let mut total = 0;
    if !argv.is_null() {
        for i in 0..256u64 {
            let ptr = argv.at(i)?.read(p)?;
            if ptr == 0 {
                break;
            }
            let a = UserCStr::new(ptr).read(p, 4096)?;
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
    process::exec(&cx.proc, &fs, n, &args)
}

/// clone: a thread (CLONE_THREAD | CLONE_VM) or a fork with extra flags (what musl's fork and
/// posix_spawn use).
pub fn clone(cx: &Cx, f: &TrapFrame, a: Args) -> SysResult {
    let flags = a.n(0);
    if flags & u64::from(CLONE_THREAD) != 0 && flags & u64::from(CLONE_VM) != 0 {
        process::clone_thread(&cx.proc, f, flags, a.n(1), a.n(2), a.n(3), a.n(4)).map(u64::from)
    } else if flags & u64::from(CLONE_VM) == 0 {
        process::fork(&cx.proc, f).map(u64::from)
    } else {
        Err(EINVAL)
    }
}

pub fn wait4(cx: &Cx, pid: i64, status: UserPtr<u32>, options: u64) -> SysResult {
    let nohang = options as u32 & WNOHANG != 0;
    match process::wait_child(&cx.proc, pid, nohang)? {
        Some((pid, code)) => {
            if !status.is_null() {
                status.write(cx.p(), &(code as u32))?;
            }
            Ok(u64::from(pid))
        }
        None => Ok(0),
    }
}

pub fn prlimit64(cx: &Cx, pid: u64, resource: u64, old: UserPtr<rlimit64>) -> SysResult {
    if pid != 0 && pid as u32 != cx.p().pid {
        return Err(ESRCH);
    }
    if !old.is_null() {
        let (cur, max) = match resource as u32 {
            RLIMIT_STACK => (process::STACK_PAGES * 4096, process::STACK_PAGES * 4096),
            RLIMIT_NOFILE => (256, 256),
            _ => (u64::MAX, u64::MAX),
        };
        old.write(cx.p(), &rlimit64 { rlim_cur: cur, rlim_max: max })?;
    }
    Ok(0)
}

pub fn sched_getaffinity(cx: &Cx, len: u64, mask: UserPtr<u64>) -> SysResult {
    let n = hal::percpu::online();
    let m: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    if len < 8 {
        return Err(EINVAL);
    }
    mask.write(cx.p(), &m)?;
    Ok(8)
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
