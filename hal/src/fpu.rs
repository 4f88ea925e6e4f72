//! FPU/SSE/AVX state: enabled on every CPU; each thread that may use it owns an [`FpuState`]
//! that the scheduler saves and restores on every switch (xsave/xrstor where the CPU has them,
//! fxsave/fxrstor otherwise). The kernel itself is built soft-float and never touches it.
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Once;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};

static XSAVE: AtomicBool = AtomicBool::new(false);
static SIZE: AtomicUsize = AtomicUsize::new(512);
static CLEAN: Once<FpuState> = Once::new();

/// Enables the FPU, SSE and (where present) XSAVE with x87|SSE|AVX on this CPU.
pub(crate) fn init_cpu(bsp: bool) {
    let c1 = crate::cpu::cpuid(1, 0);
    let xsave = c1.ecx & (1 << 26) != 0;
    // SAFETY: standard FPU enabling: EM off, MP on, TS off; OSFXSR/OSXMMEXCPT tell the CPU the
    // OS saves SSE state (fxsave) and handles SIMD exceptions (#XM is reported like any fault).
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            if xsave {
                f.insert(Cr4Flags::OSXSAVE);
            }
        });
    }
    if xsave {
        let supported = crate::cpu::cpuid(0xd, 0).eax as u64;
        let mut flags = XCr0Flags::X87 | XCr0Flags::SSE;
        if supported & (1 << 2) != 0 {
            flags |= XCr0Flags::AVX;
        }
        // SAFETY: only x87, SSE and AVX (when CPUID reports it) are enabled: a valid XCR0.
        unsafe { XCr0::write(flags) };
    }
    if bsp {
        XSAVE.store(xsave, Ordering::Relaxed);
        if xsave {
            SIZE.store(crate::cpu::cpuid(0xd, 0).ebx as usize, Ordering::Relaxed);
        }
        // The state every new thread starts with: after fninit, MXCSR default.
        // SAFETY: resets the x87 unit and loads the default MXCSR; nothing in the kernel uses them.
        unsafe { core::arch::asm!("fninit", "sub rsp, 8", "mov dword ptr [rsp], 0x1f80", "ldmxcsr [rsp]", "add rsp, 8") };
        CLEAN.call_once(|| {
            let mut s = FpuState::alloc();
            s.save();
            s
        });
    }
}

/// Bytes of state saved per thread.
pub fn state_size() -> usize {
    SIZE.load(Ordering::Relaxed)
}

pub fn uses_xsave() -> bool {
    XSAVE.load(Ordering::Relaxed)
}

/// One thread's saved FPU/SSE/AVX registers (64-byte aligned, as xsave requires).
pub struct FpuState {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is owned exclusively by this value (like a Box).
unsafe impl Send for FpuState {}
// SAFETY: shared references only allow no access to the buffer at all.
unsafe impl Sync for FpuState {}

impl FpuState {
    fn alloc() -> FpuState {
        let layout = Layout::from_size_align(state_size().max(512), 64).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        FpuState { ptr, layout }
    }

    /// A fresh state (x87 reset, default MXCSR, all vector registers zero).
    pub fn new() -> FpuState {
        let s = FpuState::alloc();
        if let Some(clean) = CLEAN.get() {
            // SAFETY: both buffers have the same size and are distinct allocations.
            unsafe { core::ptr::copy_nonoverlapping(clean.ptr, s.ptr, s.layout.size()) };
        }
        s
    }

    /// Saves this CPU's FPU registers here.
    pub fn save(&mut self) {
        // SAFETY: `ptr` is a 64-byte-aligned buffer of the size CPUID reports for the enabled
        // XCR0 features (or 512 bytes for fxsave), exclusively ours (&mut self).
        unsafe {
            if uses_xsave() {
                core::arch::asm!("xsave64 [{}]", in(reg) self.ptr, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
            } else {
                core::arch::asm!("fxsave64 [{}]", in(reg) self.ptr, options(nostack));
            }
        }
    }

    /// Loads the FPU registers from here.
    pub fn restore(&self) {
        // SAFETY: as in `save`; the buffer holds a state written by `save` or copied from the
        // clean state (itself written by `save`), so xrstor/fxrstor accept it.
        unsafe {
            if uses_xsave() {
                core::arch::asm!("xrstor64 [{}]", in(reg) self.ptr, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack, readonly));
            } else {
                core::arch::asm!("fxrstor64 [{}]", in(reg) self.ptr, options(nostack, readonly));
            }
        }
    }
}

/// 512 bytes, 16-byte aligned (what fxsave64/fxrstor64 require).
#[repr(C, align(16))]
struct FxArea([u8; 512]);

/// This CPU's x87 and SSE registers in the `fxsave` format (512 bytes): the running user
/// thread's (the kernel never touches them), for a signal frame. AVX upper halves are not
/// included.
pub fn save_sse() -> [u8; 512] {
    let mut a = FxArea([0; 512]);
    // SAFETY: `a` is a 16-byte-aligned, 512-byte local buffer, written by fxsave64 only.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) a.0.as_mut_ptr(), options(nostack)) };
    a.0
}

/// Loads x87 and SSE registers from `state` (the `fxsave` format, e.g. a signal frame user
/// space may have changed). MXCSR's reserved bits — the only part of the image `fxrstor`
/// faults on — are cleared first, with the mask this CPU reports, so any bytes are safe.
pub fn load_sse(state: &[u8; 512]) {
    let cur = save_sse();
    let mut mask = u32::from_le_bytes([cur[28], cur[29], cur[30], cur[31]]);
    if mask == 0 {
        mask = 0xffbf; // the architectural default when the CPU reports none
    }
    let mut a = FxArea(*state);
    let mxcsr = u32::from_le_bytes([a.0[24], a.0[25], a.0[26], a.0[27]]) & mask;
    a.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    // SAFETY: `a` is a 16-byte-aligned 512-byte buffer whose MXCSR has no reserved bit set (the
    // only condition besides alignment under which fxrstor64 faults); it changes user-visible
    // FPU registers only, which the kernel (soft-float) does not use.
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) a.0.as_ptr(), options(nostack, readonly)) };
}

impl Default for FpuState {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FpuState {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc` with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}
