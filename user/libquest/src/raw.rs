//! The raw `syscall` instruction, Linux x86-64 convention: number in `rax`, arguments in
//! `rdi, rsi, rdx, r10, r8, r9`, result in `rax` (`-4095..=-1` is `-errno`, decode it with
//! [`Errno::from_ret`](crate::Errno::from_ret)); the instruction clobbers `rcx` (return address)
//! and `r11` (saved RFLAGS). Works for Quest and Linux numbers alike.
//!
//! On targets other than x86-64 (nothing Quest-RS runs, but the crate must build anywhere)
//! every call returns `-ENOSYS`.
//!
//! # Safety
//!
//! A system call can do anything the kernel allows to the calling process: write through
//! pointer arguments, unmap memory, end the process. Each function is `unsafe`; callers must
//! make sure that every pointer argument is valid for what the call does with it (as the safe
//! wrappers in the crate root do) and that the call does not break Rust's assumptions (e.g.
//! unmapping memory that is borrowed).

/// Invokes syscall `nr` with no arguments.
///
/// # Safety
///
/// See the [module documentation](self).
#[inline]
pub unsafe fn syscall0(nr: u32) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr, 0, 0, 0, 0, 0, 0) }
}

/// Invokes syscall `nr` with one argument.
///
/// # Safety
///
/// See the [module documentation](self).
#[inline]
pub unsafe fn syscall1(nr: u32, a1: usize) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr, a1, 0, 0, 0, 0, 0) }
}

/// Invokes syscall `nr` with two arguments.
///
/// # Safety
///
/// See the [module documentation](self).
#[inline]
pub unsafe fn syscall2(nr: u32, a1: usize, a2: usize) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr, a1, a2, 0, 0, 0, 0) }
}

/// Invokes syscall `nr` with three arguments.
///
/// # Safety
///
/// See the [module documentation](self).
#[inline]
pub unsafe fn syscall3(nr: u32, a1: usize, a2: usize, a3: usize) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr, a1, a2, a3, 0, 0, 0) }
}

/// Invokes syscall `nr` with six arguments (unused ones are ignored by the kernel; passing 0
/// costs nothing measurable next to the kernel entry).
///
/// # Safety
///
/// See the [module documentation](self).
#[cfg(target_arch = "x86_64")]
#[inline]
pub unsafe fn syscall6(
    nr: u32,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY:
    // 1. The register assignment is the Linux x86-64 syscall ABI, which Quest-RS follows: the
    //    kernel preserves every register except rax (the result), rcx and r11 (declared
    //    clobbered with `lateout`).
    // 2. `nostack`: the kernel runs on its own stack and never touches ours, so the red zone
    //    below rsp survives. `preserves_flags`: `syscall` saves RFLAGS in r11 and the return
    //    to user mode restores them.
    // 3. What the call does to memory through pointer arguments is the caller's contract (this
    //    fn is unsafe; see the module docs), so the asm claims neither `nomem` nor `readonly`.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as usize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    ret
}

/// Not x86-64: there is no Quest-RS here; every call fails with `-ENOSYS`.
///
/// # Safety
///
/// Always safe; `unsafe` only to match the x86-64 signature.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub unsafe fn syscall6(
    _nr: u32,
    _a1: usize,
    _a2: usize,
    _a3: usize,
    _a4: usize,
    _a5: usize,
    _a6: usize,
) -> isize {
    crate::Errno::ENOSYS.to_ret()
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    //! Linux calls on the host check the register convention end to end.
    use super::*;
    use crate::Errno;
    use quest_abi::linux;

    extern crate std;

    #[test]
    fn getpid_matches_std() {
        // SAFETY: getpid takes no arguments and has no side effects.
        let pid = unsafe { syscall0(linux::__NR_getpid) };
        assert_eq!(pid, std::process::id() as isize);
    }

    #[test]
    fn write_passes_three_arguments_and_errors_decode() {
        // A pipe would need more calls; write to fd -1 must fail with EBADF, and a zero-length
        // write to a valid fd (stderr) succeeds with 0: both need rdi/rsi/rdx in place.
        let buf = b"x";
        // SAFETY: `buf` is valid for 1 byte of reading; fd -1 is never open.
        let r = unsafe { syscall3(linux::__NR_write, usize::MAX, buf.as_ptr() as usize, 1) };
        assert_eq!(Errno::from_ret(r), Err(Errno::EBADF));
        // SAFETY: a zero-length write reads nothing.
        let r = unsafe { syscall3(linux::__NR_write, 2, buf.as_ptr() as usize, 0) };
        assert_eq!(Errno::from_ret(r), Ok(0));
    }

    #[test]
    fn six_arguments_reach_the_kernel() {
        // mmap uses all six registers (r10 = flags, r8 = fd, r9 = offset): a wrong register
        // assignment would make it fail or map the wrong thing.
        use linux::general::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
        // SAFETY: a fresh anonymous private mapping aliases nothing; it is unmapped below and
        // never borrowed by Rust code in between except through the raw pointer.
        unsafe {
            let p = syscall6(
                linux::__NR_mmap,
                0,
                4096,
                (PROT_READ | PROT_WRITE) as usize,
                (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
                usize::MAX, // fd -1
                0,
            );
            let addr = Errno::from_ret(p).expect("mmap");
            let ptr = addr as *mut u8;
            ptr.write(42);
            assert_eq!(ptr.read(), 42);
            assert_eq!(
                Errno::from_ret(syscall2(linux::__NR_munmap, addr, 4096)),
                Ok(0)
            );
        }
    }

    #[test]
    fn unknown_quest_number_is_enosys() {
        // SAFETY: not a syscall on Linux; the kernel returns -ENOSYS without doing anything.
        let r = unsafe { syscall0(quest_abi::nr::QUEST_LAST) };
        assert_eq!(Errno::from_ret(r), Err(Errno::ENOSYS));
    }
}
