//! Lengths of the instructions the monitor intercepts.
//!
//! QEMU's SVM offers no next-RIP save and no decode assists, so after emulating CPUID,
//! RDMSR/WRMSR or VMMCALL the monitor must find the next instruction itself: it fetches up to
//! 15 bytes at the guest's RIP ([`crate::walk`]) and decodes them here. Only the instructions
//! whose intercepts are enabled are recognised; anything else is reported, never guessed.
//!
//! [`decode_mov`] decodes the other kind of instruction the monitor emulates: a `MOV` between
//! a register (or an immediate) and memory, which is how a kernel touches an MMIO register the
//! monitor emulates (the virtual IOAPIC of a Linux sandbox, `crate::vioapic`): a nested page
//! fault gives the guest-physical address and the direction, not the register or the length.
//! Hand-written rather than taken from a general x86 decoder crate because it needs only these
//! few opcodes, must never panic on hostile bytes, and must say exactly what it refuses.

/// An intercepted instruction that was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `cpuid` (0F A2).
    Cpuid,
    /// `rdmsr` (0F 32).
    Rdmsr,
    /// `wrmsr` (0F 30).
    Wrmsr,
    /// `vmmcall` (0F 01 D9).
    Vmmcall,
    /// `vmrun`, `vmload`, `vmsave`, `stgi`, `clgi`, `skinit` (0F 01 D8, DA..DE).
    SvmInsn,
    /// `monitor` / `mwait` (0F 01 C8 / C9).
    MonitorMwait,
    /// `icebp` (F1).
    Icebp,
}

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More than 15 bytes, or the bytes ran out.
    TooLong,
    /// Not one of the instructions above.
    Unknown([u8; 4]),
}

/// Decodes the instruction at the start of `bytes` (in 64-bit mode when `long_mode`, where
/// 0x40..0x4F are REX prefixes; in 32-bit mode they are instructions). Returns it and its
/// length including prefixes.
pub fn decode(bytes: &[u8], long_mode: bool) -> Result<(Insn, usize), DecodeError> {
    let mut i = 0;
    // Legacy prefixes (any order, any number up to the 15-byte limit).
    while let Some(&b) = bytes.get(i) {
        match b {
            0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => i += 1,
            _ => break,
        }
    }
    // One REX prefix, in 64-bit mode, directly before the opcode.
    if long_mode && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        i += 1;
    }
    let op = |k: usize| bytes.get(i + k).copied();
    let unknown = || {
        let mut w = [0u8; 4];
        for (k, v) in w.iter_mut().enumerate() {
            *v = bytes.get(i + k).copied().unwrap_or(0);
        }
        DecodeError::Unknown(w)
    };
    let (insn, n) = match (op(0), op(1), op(2)) {
        (Some(0xf1), _, _) => (Insn::Icebp, 1),
        (Some(0x0f), Some(0xa2), _) => (Insn::Cpuid, 2),
        (Some(0x0f), Some(0x32), _) => (Insn::Rdmsr, 2),
        (Some(0x0f), Some(0x30), _) => (Insn::Wrmsr, 2),
        (Some(0x0f), Some(0x01), Some(0xd9)) => (Insn::Vmmcall, 3),
        (Some(0x0f), Some(0x01), Some(0xd8 | 0xda..=0xde)) => (Insn::SvmInsn, 3),
        (Some(0x0f), Some(0x01), Some(0xc8 | 0xc9)) => (Insn::MonitorMwait, 3),
        (None, _, _) | (Some(0x0f), None, _) | (Some(0x0f), Some(0x01), None) => return Err(DecodeError::TooLong),
        _ => return Err(unknown()),
    };
    let len = i + n;
    if len > 15 {
        return Err(DecodeError::TooLong);
    }
    Ok((insn, len))
}

/// A general-purpose register operand of a decoded `MOV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// Register number 0..16 (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), accessed at
    /// the operand size (the low byte, word, dword or all of it).
    Gpr(u8),
    /// AH, CH, DH or BH (bits 8..16 of register 0..4): 8-bit operands 4..8 without a REX prefix.
    HighByte(u8),
}

/// What a memory `MOV` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovKind {
    /// Memory to register (`8A`, `8B`).
    Load(Reg),
    /// Register to memory (`88`, `89`).
    Store(Reg),
    /// Immediate to memory (`C6 /0`, `C7 /0`; the immediate already sign-extended and
    /// truncated to the operand size).
    StoreImm(u64),
}

/// A decoded memory `MOV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mov {
    pub kind: MovKind,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Instruction length including prefixes.
    pub len: usize,
}

impl Mov {
    /// Whether it writes memory.
    pub fn writes(&self) -> bool {
        !matches!(self.kind, MovKind::Load(_))
    }
}

/// Why a memory `MOV` could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovError {
    /// More than 15 bytes, or the bytes ran out.
    TooLong,
    /// Not a `MOV` to or from memory (first opcode bytes).
    NotMov([u8; 4]),
    /// A `MOV` between two registers (ModRM mod = 3): it cannot have faulted on memory.
    RegisterOperand,
    /// 16-bit addressing (an address-size prefix outside long mode): not supported.
    Addr16,
}

/// Decodes a `MOV` between a register or immediate and memory at the start of `bytes` (in
/// 64-bit mode when `long_mode`): opcodes 88, 89, 8A, 8B, C6 /0 and C7 /0 with any legacy
/// prefixes, a REX prefix in long mode, and any ModRM/SIB/displacement form (RIP-relative
/// included). The memory address itself is not computed: the exit names it.
pub fn decode_mov(bytes: &[u8], long_mode: bool) -> Result<Mov, MovError> {
    let mut i = 0;
    let (mut opsize16, mut addr16) = (false, false);
    while let Some(&b) = bytes.get(i) {
        match b {
            0x66 => opsize16 = true,
            0x67 => addr16 = !long_mode,
            0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
        if i >= 15 {
            return Err(MovError::TooLong);
        }
    }
    let mut rex = 0u8;
    if long_mode && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        rex = bytes[i];
        i += 1;
    }
    let at = |k: usize| bytes.get(k).copied().ok_or(MovError::TooLong);
    let op = at(i)?;
    let not_mov = || {
        let mut w = [0u8; 4];
        for (k, v) in w.iter_mut().enumerate() {
            *v = bytes.get(i + k).copied().unwrap_or(0);
        }
        MovError::NotMov(w)
    };
    if !matches!(op, 0x88 | 0x89 | 0x8a | 0x8b | 0xc6 | 0xc7) {
        return Err(not_mov());
    }
    let modrm = at(i + 1)?;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return Err(MovError::RegisterOperand);
    }
    if addr16 {
        return Err(MovError::Addr16);
    }
    if matches!(op, 0xc6 | 0xc7) && reg != 0 {
        return Err(not_mov());
    }
    let mut n = i + 2;
    let mut disp_len = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = at(n)?;
        n += 1;
        if md == 0 && sib & 7 == 5 {
            disp_len = 4;
        }
    } else if md == 0 && rm == 5 {
        disp_len = 4; // RIP-relative in long mode, an absolute disp32 otherwise
    }
    n += disp_len;
    let byte_op = matches!(op, 0x88 | 0x8a | 0xc6);
    let size: u8 = if byte_op {
        1
    } else if rex & 8 != 0 {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let r = reg | ((rex & 4) << 1);
    let register = if byte_op && rex == 0 && (4..8).contains(&r) { Reg::HighByte(r - 4) } else { Reg::Gpr(r) };
    let kind = match op {
        0x88 | 0x89 => MovKind::Store(register),
        0x8a | 0x8b => MovKind::Load(register),
        _ => {
            let imm_len = usize::from(size.min(4));
            let mut imm = 0u64;
            for k in 0..imm_len {
                imm |= u64::from(at(n + k)?) << (8 * k);
            }
            n += imm_len;
            // An imm32 of a 64-bit store is sign-extended.
            if size == 8 && imm & 0x8000_0000 != 0 {
                imm |= 0xffff_ffff_0000_0000;
            }
            MovKind::StoreImm(imm)
        }
    };
    if n > 15 {
        return Err(MovError::TooLong);
    }
    if n > bytes.len() {
        return Err(MovError::TooLong);
    }
    Ok(Mov { kind, size, len: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mov(kind: MovKind, size: u8, len: usize) -> Result<Mov, MovError> {
        Ok(Mov { kind, size, len })
    }

    #[test]
    fn memory_movs_as_linux_compiles_mmio_accessors() {
        use MovKind::*;
        use Reg::*;
        // mov %eax,(%rdx); mov 0x10(%rax),%eax; mov %r12d,(%rax)
        assert_eq!(decode_mov(&[0x89, 0x02], true), mov(Store(Gpr(0)), 4, 2));
        assert_eq!(decode_mov(&[0x8b, 0x40, 0x10], true), mov(Load(Gpr(0)), 4, 3));
        assert_eq!(decode_mov(&[0x44, 0x89, 0x20], true), mov(Store(Gpr(12)), 4, 3));
        // mov 0xfec00000,%rax (SIB without base, disp32); mov 0x8(%rsp),%eax; disp32 form
        assert_eq!(decode_mov(&[0x48, 0x8b, 0x04, 0x25, 0, 0, 0xc0, 0xfe], true), mov(Load(Gpr(0)), 8, 8));
        assert_eq!(decode_mov(&[0x8b, 0x44, 0x24, 0x08], true), mov(Load(Gpr(0)), 4, 4));
        assert_eq!(decode_mov(&[0x8b, 0x80, 0, 1, 0, 0], true), mov(Load(Gpr(0)), 4, 6));
        // RIP-relative load; SIB with disp8 and r15 index (REX.X) into r9 (REX.R)
        assert_eq!(decode_mov(&[0x8b, 0x05, 1, 2, 3, 4], true), mov(Load(Gpr(0)), 4, 6));
        assert_eq!(decode_mov(&[0x46, 0x8b, 0x4c, 0x38, 0x10], true), mov(Load(Gpr(9)), 4, 5));
        // movl $1,(%rax); movw $0x1234,(%rax); movb $0xff,(%rax); movq $-1,(%rax)
        assert_eq!(decode_mov(&[0xc7, 0x00, 1, 0, 0, 0], true), mov(StoreImm(1), 4, 6));
        assert_eq!(decode_mov(&[0x66, 0xc7, 0x00, 0x34, 0x12], true), mov(StoreImm(0x1234), 2, 5));
        assert_eq!(decode_mov(&[0xc6, 0x00, 0xff], true), mov(StoreImm(0xff), 1, 3));
        assert_eq!(decode_mov(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], true), mov(StoreImm(u64::MAX), 8, 7));
        // byte registers: %ah without REX, %spl with it; a segment prefix
        assert_eq!(decode_mov(&[0x88, 0x60, 0x01], true), mov(Store(HighByte(0)), 1, 3));
        assert_eq!(decode_mov(&[0x40, 0x88, 0x60, 0x01], true), mov(Store(Gpr(4)), 1, 4));
        assert_eq!(decode_mov(&[0x65, 0x8b, 0x00], true), mov(Load(Gpr(0)), 4, 3));
        // 32-bit mode: 0x48 is not REX; mod 0 rm 5 is an absolute disp32
        assert_eq!(decode_mov(&[0x8b, 0x05, 0, 0, 0xc0, 0xfe], false), mov(Load(Gpr(0)), 4, 6));
        assert!(matches!(decode_mov(&[0x48, 0x8b, 0x00], false), Err(MovError::NotMov(_))));
    }

    #[test]
    fn refuses_what_is_not_a_memory_mov() {
        assert_eq!(decode_mov(&[0x89, 0xc0], true), Err(MovError::RegisterOperand));
        assert!(matches!(decode_mov(&[0x90], true), Err(MovError::NotMov(_))));
        assert!(matches!(decode_mov(&[0xc7, 0x08, 0, 0, 0, 0], true), Err(MovError::NotMov(_))), "C7 /1 is not MOV");
        assert_eq!(decode_mov(&[0x67, 0x8b, 0x00], false), Err(MovError::Addr16));
        assert_eq!(decode_mov(&[0x8b, 0x80, 0, 1], true), Err(MovError::TooLong), "displacement cut short");
        assert_eq!(decode_mov(&[0xc7, 0x00, 1, 0], true), Err(MovError::TooLong), "immediate cut short");
        assert_eq!(decode_mov(&[], true), Err(MovError::TooLong));
        let mut long = [0x66u8; 16];
        long[13] = 0x8b;
        long[14] = 0x80;
        assert_eq!(decode_mov(&long, true), Err(MovError::TooLong));
    }

    #[test]
    fn mov_decoding_never_panics_and_stays_in_bounds() {
        let mut x: u32 = 0x1234_5678;
        let mut buf = [0u8; 15];
        for _ in 0..200_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = [0x66, 0x48, 0x44, 0x88, 0x89, 0x8b, 0xc7, 0x04, 0x05, 0x25, 0x80, (x >> 8) as u8][(x % 12) as usize];
            }
            let n = (x >> 24) as usize % 16;
            for lm in [true, false] {
                if let Ok(m) = decode_mov(&buf[..n], lm) {
                    assert!(m.len <= n && m.len <= 15);
                    assert!([1, 2, 4, 8].contains(&m.size));
                }
            }
        }
    }

    #[test]
    fn plain_and_prefixed() {
        assert_eq!(decode(&[0x0f, 0xa2, 0x90], true), Ok((Insn::Cpuid, 2)));
        assert_eq!(decode(&[0x0f, 0x30], false), Ok((Insn::Wrmsr, 2)));
        assert_eq!(decode(&[0x0f, 0x32], true), Ok((Insn::Rdmsr, 2)));
        assert_eq!(decode(&[0x0f, 0x01, 0xd9], true), Ok((Insn::Vmmcall, 3)));
        assert_eq!(decode(&[0x0f, 0x01, 0xd8], true), Ok((Insn::SvmInsn, 3)));
        assert_eq!(decode(&[0x66, 0x48, 0x0f, 0xa2], true), Ok((Insn::Cpuid, 4)));
        assert_eq!(decode(&[0x2e, 0x3e, 0x0f, 0x01, 0xd9], true), Ok((Insn::Vmmcall, 5)));
        assert_eq!(decode(&[0xf1], true), Ok((Insn::Icebp, 1)));
    }

    #[test]
    fn rex_is_an_instruction_outside_long_mode() {
        // 0x48 is `dec eax` in 32-bit mode: not an intercepted instruction.
        assert_eq!(decode(&[0x48, 0x0f, 0xa2], false), Err(DecodeError::Unknown([0x48, 0x0f, 0xa2, 0])));
    }

    #[test]
    fn refuses_unknown_and_overlong() {
        assert!(matches!(decode(&[0x90], true), Err(DecodeError::Unknown(_))));
        assert_eq!(decode(&[0x0f], true), Err(DecodeError::TooLong));
        assert_eq!(decode(&[], true), Err(DecodeError::TooLong));
        let mut long = [0x66u8; 16];
        long[14] = 0x0f;
        long[15] = 0xa2;
        assert_eq!(decode(&long, true), Err(DecodeError::TooLong));
    }

    #[test]
    fn never_panics_on_any_short_input() {
        for a in 0..=255u8 {
            for b in [0x0f, 0x01, 0xa2, 0x66, 0x48, 0xd9] {
                let _ = decode(&[a, b], true);
                let _ = decode(&[b, a, 0x01], false);
            }
        }
    }
}
