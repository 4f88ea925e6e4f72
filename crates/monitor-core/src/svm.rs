//! AMD SVM's virtual machine control block (AMD64 APM vol. 2, appendix B) as a byte image,
//! the guest's initial state (what GRUB leaves for a multiboot2 kernel), and the decoding of
//! #VMEXIT codes into [`crate::policy::Exit`].

use alloc::boxed::Box;

use crate::policy::Exit;

/// Control-area offsets.
pub mod ctl {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_EXC: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const VINTR: usize = 0x060;
    pub const EXITCODE: usize = 0x070;
    pub const EXITINFO1: usize = 0x078;
    pub const EXITINFO2: usize = 0x080;
    pub const EXITINTINFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const NCR3: usize = 0x0b0;
    pub const CLEAN: usize = 0x0c0;
}

/// State-save-area offsets.
pub mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const CR2: usize = 0x640;
    pub const G_PAT: usize = 0x668;
}

// MISC1 intercept bits.
const I_INIT: u32 = 1 << 3;
const I_CPUID: u32 = 1 << 18;
const I_INVLPGA: u32 = 1 << 26;
const I_IOIO: u32 = 1 << 27;
const I_MSR: u32 = 1 << 28;
const I_SHUTDOWN: u32 = 1 << 31;
// MISC2 intercept bits.
const I_VMRUN: u32 = 1 << 0;
const I_VMMCALL: u32 = 1 << 1;
const I_VMLOAD: u32 = 1 << 2;
const I_VMSAVE: u32 = 1 << 3;
const I_STGI: u32 = 1 << 4;
const I_CLGI: u32 = 1 << 5;
const I_SKINIT: u32 = 1 << 6;
const I_ICEBP: u32 = 1 << 8;
const I_MONITOR: u32 = 1 << 10;
const I_MWAIT: u32 = 1 << 11;

/// A VMCB image.
pub struct Vmcb(pub Box<[u8; 4096]>);

impl Default for Vmcb {
    fn default() -> Self {
        Vmcb(Box::new([0; 4096]))
    }
}

impl Vmcb {
    pub fn set(&mut self, off: usize, v: u64, size: usize) {
        self.0[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
    }
    pub fn get(&self, off: usize, size: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&self.0[off..off + size]);
        u64::from_le_bytes(b)
    }
    fn seg(&mut self, off: usize, sel: u16, attrib: u16, limit: u32, base: u64) {
        self.set(off, u64::from(sel), 2);
        self.set(off + 2, u64::from(attrib), 2);
        self.set(off + 4, u64::from(limit), 4);
        self.set(off + 8, base, 8);
    }
}

/// Where the monitor put the sandbox's structures.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub asid: u32,
    pub iopm: u64,
    pub msrpm: u64,
    pub ncr3: u64,
    /// Kernel entry (32-bit, physical).
    pub entry: u32,
    /// Multiboot2 information (guest-physical).
    pub mbi: u32,
}

/// The VMCB for a sandbox's boot processor: intercepts as [`crate::policy`] describes, nested
/// paging on, and the guest in 32-bit protected mode with flat segments, paging off, at the
/// kernel's entry with `eax` = multiboot2 magic (`ebx` = information address is a GPR the
/// monitor sets).
pub fn boot_vmcb(s: &Setup) -> Vmcb {
    let mut v = Vmcb::default();
    v.set(ctl::INTERCEPT_MISC1, u64::from(I_INIT | I_CPUID | I_INVLPGA | I_IOIO | I_MSR | I_SHUTDOWN), 4);
    v.set(
        ctl::INTERCEPT_MISC2,
        u64::from(I_VMRUN | I_VMMCALL | I_VMLOAD | I_VMSAVE | I_STGI | I_CLGI | I_SKINIT | I_ICEBP | I_MONITOR | I_MWAIT),
        4,
    );
    v.set(ctl::IOPM_BASE, s.iopm, 8);
    v.set(ctl::MSRPM_BASE, s.msrpm, 8);
    v.set(ctl::ASID, u64::from(s.asid), 4);
    v.set(ctl::TLB_CONTROL, 1, 1); // flush this ASID on the first VMRUN
    // V_INTR_MASKING off: the guest's RFLAGS.IF masks physical interrupts, which go straight
    // to the guest's IDT (no INTR intercept).
    v.set(ctl::VINTR, 0, 8);
    v.set(ctl::NP_ENABLE, 1, 8);
    v.set(ctl::NCR3, s.ncr3, 8);
    // Flat 4 GiB segments. Attributes: type | S<<4 | DPL<<5 | P<<7 | AVL<<8 | L<<9 | DB<<10 | G<<11.
    const CODE32: u16 = 0xb | (1 << 4) | (1 << 7) | (1 << 10) | (1 << 11);
    const DATA32: u16 = 0x3 | (1 << 4) | (1 << 7) | (1 << 10) | (1 << 11);
    v.seg(save::CS, 0x08, CODE32, 0xffff_ffff, 0);
    for off in [save::DS, save::ES, save::SS, save::FS, save::GS] {
        v.seg(off, 0x10, DATA32, 0xffff_ffff, 0);
    }
    v.seg(save::GDTR, 0, 0, 0, 0);
    v.seg(save::IDTR, 0, 0, 0x3ff, 0);
    v.seg(save::LDTR, 0, 0x82, 0xffff, 0);
    v.seg(save::TR, 0, 0x8b, 0xffff, 0);
    v.set(save::CPL, 0, 1);
    v.set(save::EFER, crate::policy::EFER_SVME, 8);
    v.set(save::CR0, 0x11, 8); // PE | ET
    v.set(save::CR3, 0, 8);
    v.set(save::CR4, 0, 8);
    v.set(save::DR6, 0xffff_0ff0, 8);
    v.set(save::DR7, 0x400, 8);
    v.set(save::RFLAGS, 0x2, 8);
    v.set(save::RIP, u64::from(s.entry), 8);
    v.set(save::RSP, 0, 8);
    v.set(save::RAX, u64::from(crate::guest::MULTIBOOT2_BOOT_MAGIC), 8);
    v.set(save::G_PAT, 0x0007_0406_0007_0406, 8);
    v
}

/// The VMCB for a Linux sandbox's boot processor, entered by the Linux 32-bit boot protocol:
/// as [`boot_vmcb`] (protected mode, paging off, flat 4 GiB segments, interrupts off) but with
/// the protocol's selectors (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18) and `eax` = 0; the
/// monitor puts the zero page's address in `esi` and zeroes `ebx`, `ebp` and `edi`.
pub fn linux_vmcb(s: &Setup) -> Vmcb {
    let mut v = boot_vmcb(s);
    let cs = v.get(save::CS + 2, 2) as u16;
    let ds = v.get(save::DS + 2, 2) as u16;
    v.seg(save::CS, crate::linux::BOOT_CS, cs, 0xffff_ffff, 0);
    for off in [save::DS, save::ES, save::SS, save::FS, save::GS] {
        v.seg(off, crate::linux::BOOT_DS, ds, 0xffff_ffff, 0);
    }
    v.set(save::RAX, 0, 8);
    v
}

/// The VMCB for an application processor of a sandbox started by a STARTUP IPI with `vector`:
/// the state INIT-SIPI leaves a core in — real mode, CS = vector << 8 (base vector * 4096),
/// IP = 0, paging and protection off.
pub fn ap_vmcb(s: &Setup, vector: u8) -> Vmcb {
    let mut v = boot_vmcb(s);
    const CODE16: u16 = 0xb | (1 << 4) | (1 << 7);
    const DATA16: u16 = 0x3 | (1 << 4) | (1 << 7);
    v.seg(save::CS, u16::from(vector) << 8, CODE16, 0xffff, u64::from(vector) << 12);
    for off in [save::DS, save::ES, save::SS, save::FS, save::GS] {
        v.seg(off, 0, DATA16, 0xffff, 0);
    }
    v.seg(save::GDTR, 0, 0, 0xffff, 0);
    v.seg(save::IDTR, 0, 0, 0xffff, 0);
    v.seg(save::TR, 0, 0x83, 0xffff, 0);
    v.set(save::CR0, 0x10, 8); // ET; PE off
    v.set(save::RIP, 0, 8);
    v.set(save::RAX, 0, 8);
    v
}

/// SVM exit codes the monitor handles.
pub mod code {
    pub const INIT: u64 = 0x63;
    pub const CPUID: u64 = 0x72;
    pub const INVLPGA: u64 = 0x7a;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const ICEBP: u64 = 0x88;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const MWAIT_ARMED: u64 = 0x8c;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

/// Decodes a #VMEXIT from the VMCB's exit code and exit information.
pub fn decode_exit(exitcode: u64, info1: u64, info2: u64) -> Exit {
    match exitcode {
        code::CPUID => Exit::Cpuid,
        code::IOIO => Exit::Io {
            port: (info1 >> 16) as u16,
            size: if info1 & (1 << 4) != 0 {
                1
            } else if info1 & (1 << 5) != 0 {
                2
            } else {
                4
            },
            input: info1 & 1 != 0,
            string: info1 & (1 << 2) != 0,
            next_rip: info2,
        },
        code::MSR => {
            if info1 & 1 != 0 {
                Exit::Wrmsr
            } else {
                Exit::Rdmsr
            }
        }
        code::VMMCALL => Exit::Hypercall,
        code::NPF => Exit::NestedFault { gpa: info2, present: info1 & 1 != 0, write: info1 & 2 != 0, exec: info1 & 0x10 != 0 },
        code::SHUTDOWN => Exit::Shutdown,
        code::INIT => Exit::Init,
        code::VMRUN | code::VMLOAD | code::VMSAVE | code::STGI | code::CLGI | code::SKINIT | code::INVLPGA => {
            Exit::Forbidden("an SVM instruction (the sandbox has no virtualization)")
        }
        code::MONITOR | code::MWAIT | code::MWAIT_ARMED => Exit::Forbidden("MONITOR/MWAIT"),
        code::ICEBP => Exit::Forbidden("ICEBP"),
        code::INVALID => Exit::Invalid,
        c => Exit::Unexpected(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_vmcb_fields() {
        let v = boot_vmcb(&Setup { asid: 2, iopm: 0x10_0000, msrpm: 0x20_0000, ncr3: 0x30_0000, entry: 0x10_000c, mbi: 0x50_0000 });
        assert_eq!(v.get(ctl::ASID, 4), 2);
        assert_eq!(v.get(ctl::NCR3, 8), 0x30_0000);
        assert_eq!(v.get(ctl::NP_ENABLE, 8), 1);
        assert_eq!(v.get(ctl::INTERCEPT_MISC2, 4) & 1, 1, "VMRUN must be intercepted");
        assert_eq!(v.get(ctl::INTERCEPT_MISC1, 4) & 1, 0, "no INTR intercept");
        assert_eq!(v.get(save::RIP, 8), 0x10_000c);
        assert_eq!(v.get(save::RAX, 8), 0x36d7_6289);
        assert_eq!(v.get(save::EFER, 8) & (1 << 12), 1 << 12);
        assert_eq!(v.get(save::CS + 2, 2), 0xc9b);
        assert_eq!(v.get(save::CS + 4, 4), 0xffff_ffff);
    }

    #[test]
    fn linux_vmcb_uses_the_boot_protocol_selectors() {
        let v = linux_vmcb(&Setup { asid: 3, iopm: 0, msrpm: 0, ncr3: 0x30_0000, entry: 0x10_0000, mbi: 0 });
        assert_eq!(v.get(save::CS, 2), 0x10);
        assert_eq!(v.get(save::CS + 2, 2), 0xc9b, "32-bit code, present, 4 KiB granular");
        for off in [save::DS, save::ES, save::SS] {
            assert_eq!(v.get(off, 2), 0x18);
            assert_eq!(v.get(off + 4, 4), 0xffff_ffff);
        }
        assert_eq!(v.get(save::RIP, 8), 0x10_0000);
        assert_eq!(v.get(save::RAX, 8), 0);
        assert_eq!(v.get(save::CR0, 8) & (1 << 31 | 1), 1, "protected mode, paging off");
        assert_eq!(v.get(save::RFLAGS, 8) & (1 << 9), 0, "interrupts off");
        assert_eq!(v.get(ctl::NP_ENABLE, 8), 1);
    }

    #[test]
    fn ap_vmcb_is_real_mode_at_the_vector() {
        let v = ap_vmcb(&Setup { asid: 1, iopm: 0, msrpm: 0, ncr3: 0, entry: 0x10_0000, mbi: 0 }, 8);
        assert_eq!(v.get(save::CS, 2), 0x800);
        assert_eq!(v.get(save::CS + 8, 8), 0x8000);
        assert_eq!(v.get(save::RIP, 8), 0);
        assert_eq!(v.get(save::CR0, 8) & 1, 0);
        assert_eq!(v.get(save::EFER, 8), 1 << 12);
    }

    #[test]
    fn exit_decoding() {
        // OUT dx, al to 0xf4: type 0 (out), SZ8.
        assert_eq!(
            decode_exit(code::IOIO, (0xf4 << 16) | (1 << 4), 0x1234),
            Exit::Io { port: 0xf4, size: 1, input: false, string: false, next_rip: 0x1234 }
        );
        assert_eq!(decode_exit(code::MSR, 1, 0), Exit::Wrmsr);
        assert_eq!(decode_exit(code::NPF, 0x6, 0xdead_0000), Exit::NestedFault { gpa: 0xdead_0000, present: false, write: true, exec: false });
        assert_eq!(decode_exit(code::SHUTDOWN, 0, 0), Exit::Shutdown);
        assert!(matches!(decode_exit(code::VMRUN, 0, 0), Exit::Forbidden(_)));
        assert_eq!(decode_exit(0x4242, 0, 0), Exit::Unexpected(0x4242));
        assert_eq!(decode_exit(u64::MAX, 0, 0), Exit::Invalid);
    }
}
