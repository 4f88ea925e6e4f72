//! AMD-V (SVM): feature detection, enabling SVM on a core, and the world switch
//! (`vmload`/`vmrun`/`vmsave`) used by the Quest-V monitor.
//!
//! Everything here is mechanism: the VMCB's contents, the nested page tables and the exit
//! policy are built by the monitor (safe code, through [`crate::mm::PhysRegion`]).
use x86_64::registers::model_specific::Msr;

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_SVME: u64 = 1 << 12;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// What the CPU's SVM offers.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Number of address space ids (ASID 0 is the host's).
    pub asids: u32,
    /// Nested paging.
    pub nested_paging: bool,
    /// The CPU saves the next RIP on intercepts (TCG does not: the monitor decodes lengths).
    pub nrip_save: bool,
    /// SVM revision.
    pub revision: u8,
}

/// Checks that this CPU can run SVM guests with nested paging.
pub fn caps() -> Result<Caps, &'static str> {
    let ext = crate::cpu::cpuid(0x8000_0000, 0).eax;
    if ext < 0x8000_000a || crate::cpu::cpuid(0x8000_0001, 0).ecx & (1 << 2) == 0 {
        return Err("this CPU has no AMD-V (SVM); QEMU needs -cpu EPYC or -cpu max");
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM (checked above); reading it has no
    // side effect.
    let vm_cr = unsafe { Msr::new(MSR_VM_CR).read() };
    if vm_cr & VM_CR_SVMDIS != 0 {
        return Err("SVM is disabled by the firmware (VM_CR.SVMDIS)");
    }
    let r = crate::cpu::cpuid(0x8000_000a, 0);
    Ok(Caps {
        asids: r.ebx,
        nested_paging: r.edx & 1 != 0,
        nrip_save: r.edx & (1 << 3) != 0,
        revision: r.eax as u8,
    })
}

/// Enables SVM on this core with the host save area at `hsave_phys` (a 4 KiB frame the caller
/// owns for the rest of the run; the CPU writes host state there on every `vmrun`).
pub fn enable(hsave: &crate::mm::PhysRegion) -> Result<(), &'static str> {
    caps()?;
    if hsave.len() < 4096 || hsave.phys() % 4096 != 0 {
        return Err("host save area must be a whole aligned frame");
    }
    // SAFETY:
    // 1. SVM is supported and not disabled (checked by `caps`); setting EFER.SVME only makes
    //    the SVM instructions legal on this core.
    // 2. VM_HSAVE_PA gets a page-aligned frame owned by `hsave`, which the caller keeps for the
    //    whole run: nothing else uses that memory.
    unsafe {
        let mut efer = Msr::new(MSR_EFER);
        let v = efer.read();
        efer.write(v | EFER_SVME);
        Msr::new(MSR_VM_HSAVE_PA).write(hsave.phys());
    }
    Ok(())
}

/// The guest's general-purpose registers that `vmrun` does not switch (rax and rsp live in
/// the VMCB). Layout is fixed: the world-switch code addresses the fields by offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Runs the guest described by the VMCB in `vmcb` until its next #VMEXIT, with its other
/// registers in `regs`. `host_extra` is a frame holding the host's `vmsave` state (FS, GS,
/// TR, LDTR, syscall MSRs), restored after the exit. Interrupts must be off on this core.
pub fn run(vmcb: &crate::mm::PhysRegion, host_extra: &crate::mm::PhysRegion, regs: &mut GuestRegs) {
    assert!(!crate::cpu::interrupts_enabled(), "svm::run with interrupts on");
    assert!(vmcb.len() >= 4096 && vmcb.phys() % 4096 == 0 && host_extra.len() >= 4096 && host_extra.phys() % 4096 == 0);
    let vmcb_pa = vmcb.phys();
    let host_pa = host_extra.phys();
    let regs_ptr: *mut GuestRegs = regs;
    // SAFETY:
    // 1. SVM is enabled on this core (`enable`), the VMCB is a page-aligned frame the caller
    //    owns and filled in (the CPU checks its consistency and exits with VMEXIT_INVALID
    //    otherwise), and `host_extra` is an owned frame.
    // 2. The guest runs with its own CR3/GDT/IDT (restored to the host's by the #VMEXIT from
    //    the host save area); all host general-purpose registers LLVM may rely on are saved on
    //    the stack around the switch, and the guest's are stored into `*regs`, which is a
    //    valid exclusive reference for the duration.
    // 3. `vmsave`/`vmload` of `host_extra` restore the host's FS/GS bases, TR, LDTR and
    //    syscall MSRs, which the guest's `vmload` replaced.
    // 4. GIF is 0 after #VMEXIT; `stgi` sets it again (host interrupts stay masked by IF=0).
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "push rdi",            // [rsp+16]: regs pointer
            "push rsi",            // [rsp+8]:  host_extra
            "push rax",            // [rsp]:    vmcb
            "mov rax, rsi",
            "vmsave rax",          // host FS/GS/TR/LDTR/MSRs
            "mov rax, [rsp]",
            "mov rbx, [rdi + 0]",
            "mov rcx, [rdi + 8]",
            "mov rdx, [rdi + 16]",
            "mov rsi, [rdi + 24]",
            "mov rbp, [rdi + 40]",
            "mov r8,  [rdi + 48]",
            "mov r9,  [rdi + 56]",
            "mov r10, [rdi + 64]",
            "mov r11, [rdi + 72]",
            "mov r12, [rdi + 80]",
            "mov r13, [rdi + 88]",
            "mov r14, [rdi + 96]",
            "mov r15, [rdi + 104]",
            "mov rdi, [rdi + 32]",
            "vmload rax",
            "vmrun rax",
            "vmsave rax",
            "push rdi",            // guest rdi; regs pointer now at [rsp+24]
            "mov rdi, [rsp + 24]",
            "mov [rdi + 0], rbx",
            "mov [rdi + 8], rcx",
            "mov [rdi + 16], rdx",
            "mov [rdi + 24], rsi",
            "pop rax",
            "mov [rdi + 32], rax",
            "mov [rdi + 40], rbp",
            "mov [rdi + 48], r8",
            "mov [rdi + 56], r9",
            "mov [rdi + 64], r10",
            "mov [rdi + 72], r11",
            "mov [rdi + 80], r12",
            "mov [rdi + 88], r13",
            "mov [rdi + 96], r14",
            "mov [rdi + 104], r15",
            "mov rax, [rsp + 8]",
            "vmload rax",
            "stgi",
            "add rsp, 24",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbx",
            "pop rbp",
            inout("rax") vmcb_pa => _,
            inout("rsi") host_pa => _,
            inout("rdi") regs_ptr => _,
            out("rcx") _, out("rdx") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
}

/// Writes `value` to the x2APIC ICR on behalf of a guest whose IPI the monitor checked.
pub fn send_x2apic_icr(value: u64) -> Result<(), &'static str> {
    if !crate::apic::x2apic_enabled() {
        return Err("x2APIC mode is off on this core");
    }
    // SAFETY: x2APIC mode is enabled on this core; MSR 0x830 is the ICR. The caller (the
    // monitor's policy) has checked that the destination is a core of the sending sandbox.
    unsafe { Msr::new(0x830).write(value) };
    Ok(())
}
