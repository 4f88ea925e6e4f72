//! User mode: the `syscall` entry, the first entry into ring 3, and the FS base.
//!
//! `syscall` lands in `hal_syscall_entry` with interrupts off (SFMASK clears IF): it switches
//! to the kernel GS and the running thread's kernel stack (per-CPU `kernel_rsp`, kept current
//! by the scheduler through `gdt::set_kernel_stack`), saves the registers as a [`TrapFrame`]
//! (vector [`SYSCALL_VECTOR`], and the call number in `error_code` too, where it survives the
//! result the handler leaves in `rax`: Linux's `orig_rax`, which restarting a call needs) and
//! calls the kernel's handler, which leaves the result in `rax`. The return uses `iretq` (never `sysret`, so a non-canonical user RIP cannot fault in
//! ring 0).
use core::arch::global_asm;

use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, FsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::PrivilegeLevel;

use crate::gdt::{KERNEL_CS, KERNEL_DS, USER_CS, USER_DS};
use crate::trap::TrapFrame;

/// `TrapFrame::vector` of a system call.
pub const SYSCALL_VECTOR: u64 = 0x100;

global_asm!(
    r#"
    .text
    .global hal_syscall_entry
hal_syscall_entry:
    swapgs
    mov %rsp, %gs:32
    mov %gs:24, %rsp
    pushq $0x23
    pushq %gs:32
    push %r11
    pushq $0x2b
    push %rcx
    push %rax
    pushq $0x100
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call hal_syscall_dispatch
    .global hal_return_to_user
hal_return_to_user:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    cli
    swapgs
    iretq

    /* hal_enter_user(frame: *const TrapFrame): load a full user frame and return to it. */
    .global hal_enter_user
hal_enter_user:
    cli
    mov %rdi, %rsp
    jmp hal_return_to_user
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn hal_syscall_entry();
    fn hal_enter_user(frame: *const TrapFrame) -> !;
}

/// The kernel's system-call handler: reads the call from the frame, writes the result to `rax`.
pub type SyscallHandler = fn(&mut TrapFrame);

/// Typed (no function pointer kept as an integer), set once, read without a lock.
static HANDLER: spin::Once<SyscallHandler> = spin::Once::new();

/// Installs the kernel's system-call handler. Once only: a second call panics.
pub fn set_syscall_handler(h: SyscallHandler) {
    let mut set = false;
    HANDLER.call_once(|| {
        set = true;
        h
    });
    assert!(set, "system-call handler set twice");
}

#[unsafe(no_mangle)]
extern "C" fn hal_syscall_dispatch(frame: &mut TrapFrame) {
    match HANDLER.get() {
        Some(h) => h(frame),
        None => frame.rax = (-38i64) as u64, // ENOSYS
    }
}

/// Enables `syscall` on this CPU (EFER.SCE, STAR, LSTAR, SFMASK).
pub(crate) fn init_cpu() {
    // SAFETY: STAR gets the selectors of our GDT (kernel CS/SS at 0x08/0x10; sysret base 0x18
    // so user SS = 0x20 and CS = 0x28, matching `gdt`); LSTAR the entry stub above; SFMASK
    // clears IF, TF, DF and AC on entry. EFER.SCE only enables the instruction.
    unsafe {
        Star::write(
            SegmentSelector::new(USER_CS >> 3, PrivilegeLevel::Ring3),
            SegmentSelector::new(USER_DS >> 3, PrivilegeLevel::Ring3),
            SegmentSelector::new(KERNEL_CS >> 3, PrivilegeLevel::Ring0),
            SegmentSelector::new(KERNEL_DS >> 3, PrivilegeLevel::Ring0),
        )
        .expect("GDT layout fits syscall/sysret");
        LStar::write(VirtAddr::new(hal_syscall_entry as *const () as u64));
        SFMask::write(RFlags::INTERRUPT_FLAG | RFlags::TRAP_FLAG | RFlags::DIRECTION_FLAG | RFlags::ALIGNMENT_CHECK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    // SMEP/SMAP: the kernel never executes or touches user pages through user addresses
    // (copies go through the direct map), so both can be on wherever the CPU has them.
    let b = crate::cpu::cpuid(7, 0).ebx;
    // SAFETY: setting CR4.SMEP/SMAP only makes ring-0 accesses to user pages fault; nothing in
    // the kernel makes such accesses.
    unsafe {
        x86_64::registers::control::Cr4::update(|f| {
            if b & (1 << 7) != 0 {
                f.insert(x86_64::registers::control::Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if b & (1 << 20) != 0 {
                f.insert(x86_64::registers::control::Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        })
    };
}

/// Whether SMEP and SMAP are on (this CPU).
pub fn smep_smap() -> (bool, bool) {
    let f = x86_64::registers::control::Cr4::read();
    (
        f.contains(x86_64::registers::control::Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        f.contains(x86_64::registers::control::Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
    )
}

/// A fresh user-mode frame: entry point, stack, interrupts on, all registers zero.
pub fn initial_frame(rip: u64, rsp: u64) -> TrapFrame {
    TrapFrame {
        rip,
        rsp,
        cs: u64::from(USER_CS),
        ss: u64::from(USER_DS),
        rflags: 0x202,
        ..TrapFrame::default()
    }
}

/// Enters user mode with `frame` (from [`initial_frame`], or a copy of a saved one, e.g. the
/// parent's at `fork`). Never returns: the thread's next kernel entry starts afresh at the top
/// of its kernel stack (set with `gdt::set_kernel_stack` before calling this).
pub fn enter(frame: &TrapFrame) -> ! {
    // Only user-mode selectors and a canonical, user-half RIP may be loaded.
    let mut f = *frame;
    f.cs = u64::from(USER_CS);
    f.ss = u64::from(USER_DS);
    f.rflags = (f.rflags & 0xcd5) | 0x202; // arithmetic flags kept; IF on; IOPL 0
    if f.rip >= 0x0000_8000_0000_0000 {
        f.rip = 0; // faults in user mode: the task is killed, never the kernel
    }
    // SAFETY: the frame is on this stack (`f`), complete, with user selectors, IF set and a
    // user-half RIP, so `iretq` goes to ring 3 and nowhere else; interrupts are disabled by the
    // stub before it switches GS. The current kernel stack is abandoned, which is what the
    // caller promises (nothing on it is needed again).
    unsafe { hal_enter_user(&f) }
}

/// The FS base of the running thread (TLS of user programs).
pub fn fs_base() -> u64 {
    FsBase::read().as_u64()
}

/// Sets the FS base (arch_prctl(ARCH_SET_FS)); only canonical user addresses are accepted.
pub fn set_fs_base(v: u64) -> bool {
    if v >= 0x0000_8000_0000_0000 {
        return false;
    }
    FsBase::write(VirtAddr::new(v));
    true
}

/// Plain old data: a type whose every byte is initialised in every value (no padding, no
/// uninitialised bytes), that has no interior mutability, and for which every bit pattern is a
/// valid value, so its bytes may be viewed as a `&[u8]` ([`pod_bytes`]) and copied out to user
/// memory, and a value may be made from any bytes ([`pod_read`]) copied in from user memory.
///
/// # Safety
/// Implementors have no padding and no `UnsafeCell`, and every field is `Pod` (so, down to the
/// primitive integers, every bit pattern is valid). Within hal,
/// structures are declared with [`unsafe_impl_pod!`](crate::unsafe_impl_pod), which checks the
/// first condition at compile time from the fields' offsets and sizes.
///
/// Why not `zerocopy`'s `IntoBytes + Immutable`: the Linux ABI structures come from
/// `linux-raw-sys` (foreign types, which neither this crate nor the kernel may derive or
/// implement zerocopy's traits for), and the kernel may not write `unsafe impl` itself.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod_primitive {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive integer: every bit pattern valid, no padding, no UnsafeCell.
        unsafe impl Pod for $t {}
    )* };
}
pod_primitive!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
// (No `bool`, `char`, references or pointers: not every bit pattern is one of them.)

// SAFETY: an array of `Pod` has no padding (a type's size is a multiple of its alignment, so
// elements follow each other without gaps) and no UnsafeCell.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Size of a field (through a raw pointer, so no value is needed), requiring the field be Pod.
const fn pod_field_size<F: Pod>(_: *const F) -> usize {
    core::mem::size_of::<F>()
}

/// Implements [`Pod`] for a `#[repr(C)]` structure after checking at compile time that its
/// fields, listed in declaration order, are all `Pod` and follow each other with no gap and end
/// at the structure's size (no padding anywhere).
macro_rules! unsafe_impl_pod {
    ($t:ty { $($f:ident),+ $(,)? }) => {
        const _: () = {
            let u = core::mem::MaybeUninit::<$t>::uninit();
            let p = u.as_ptr();
            let mut at = 0usize;
            $(
                assert!(core::mem::offset_of!($t, $f) == at, "padding before a field");
                // SAFETY: `p` points to a (uninitialised) local `$t`; taking a field's address
                // does not read it.
                at += pod_field_size(unsafe { &raw const (*p).$f });
            )+
            assert!(at == core::mem::size_of::<$t>(), "fields missing or padding at the end");
        };
        // SAFETY: the assertion above proves every byte belongs to a field, and each field is
        // `Pod` (the bound of `pod_field_size`), so there is neither padding nor UnsafeCell.
        unsafe impl Pod for $t {}
    };
}

unsafe_impl_pod!(linux_raw_sys::general::timespec { tv_sec, tv_nsec });
unsafe_impl_pod!(linux_raw_sys::general::winsize { ws_row, ws_col, ws_xpixel, ws_ypixel });
unsafe_impl_pod!(linux_raw_sys::system::new_utsname { sysname, nodename, release, version, machine, domainname });
unsafe_impl_pod!(linux_raw_sys::general::stat {
    st_dev, st_ino, st_nlink, st_mode, st_uid, st_gid, __pad0, st_rdev, st_size, st_blksize, st_blocks,
    st_atime, st_atime_nsec, st_mtime, st_mtime_nsec, st_ctime, st_ctime_nsec, __unused,
});
unsafe_impl_pod!(linux_raw_sys::general::timeval { tv_sec, tv_usec });
unsafe_impl_pod!(linux_raw_sys::general::rlimit64 { rlim_cur, rlim_max });
unsafe_impl_pod!(linux_raw_sys::general::termios { c_iflag, c_oflag, c_cflag, c_lflag, c_line, c_cc });
unsafe_impl_pod!(linux_raw_sys::general::statx_timestamp { tv_sec, tv_nsec, __reserved });
unsafe_impl_pod!(linux_raw_sys::general::statx {
    stx_mask, stx_blksize, stx_attributes, stx_nlink, stx_uid, stx_gid, stx_mode, __spare0, stx_ino, stx_size,
    stx_blocks, stx_attributes_mask, stx_atime, stx_btime, stx_ctime, stx_mtime, stx_rdev_major, stx_rdev_minor,
    stx_dev_major, stx_dev_minor, stx_mnt_id, stx_dio_mem_align, stx_dio_offset_align, stx_subvol,
    stx_atomic_write_unit_min, stx_atomic_write_unit_max, stx_atomic_write_segments_max, stx_dio_read_offset_align,
    stx_atomic_write_unit_max_opt, __spare2, __spare3,
});
unsafe_impl_pod!(quest_abi::SchedParam { kind, c, t, io_class, affinity });
unsafe_impl_pod!(quest_abi::TpipeQos { c, lambda, b });
unsafe_impl_pod!(quest_abi::TpipeGuarantee { throughput, delay_us, c, t, writer_vcpu, reader_vcpu, b });
unsafe_impl_pod!(quest_abi::BoomerangQos { c, lambda, b, packet, stages });
unsafe_impl_pod!(quest_abi::BoomerangPlan { c, t, chunk, packets, slots, throughput, hop_delay_us, delay_us, vcpu });
unsafe_impl_pod!(quest_abi::TaskInfo { id, process, parent, vcpu, pcpu, status, nthreads, thread, name });
unsafe_impl_pod!(quest_abi::can::CanFrame { can_id, len, pad, res0, len8_dlc, data });
unsafe_impl_pod!(quest_abi::can::CanFilter { can_id, can_mask });
unsafe_impl_pod!(quest_abi::can::CanStats {
    bitrate, state, tx_frames, rx_frames, rx_filtered, rx_overruns, rx_dropped, bus_errors, bus_off, restarts,
    tx_errors, rx_errors, latency_median_ns, latency_max_ns, latency_samples,
});
unsafe_impl_pod!(quest_abi::VcpuInfo { id, pcpu, kind, c, t, io_class, num_tasks });

/// The bytes of a plain-old-data value (the Linux ABI's structures, Quest's `ps` records,
/// integers and arrays of them), to copy out to user memory.
pub fn pod_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `v` is a valid `T` for the lifetime of the returned slice, `size_of::<T>()` bytes
    // long; `T: Pod` guarantees every byte is initialised (no padding) and that nothing can
    // change them through a shared reference (no UnsafeCell).
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) }
}

/// A plain-old-data value made from the first `size_of::<T>()` bytes of `bytes` (copied in
/// from user memory); `None` if there are fewer.
pub fn pod_read<T: Pod>(bytes: &[u8]) -> Option<T> {
    let b = bytes.get(..core::mem::size_of::<T>())?;
    // SAFETY: `b` is `size_of::<T>()` initialised bytes; `read_unaligned` copies them without
    // an alignment requirement; `T: Pod` makes every bit pattern a valid `T`.
    Some(unsafe { core::ptr::read_unaligned(b.as_ptr() as *const T) })
}
