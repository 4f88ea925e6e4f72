//! Lengths of the instructions the monitor intercepts.
//!
//! QEMU's SVM offers no next-RIP save and no decode assists, so after emulating CPUID,
//! RDMSR/WRMSR or VMMCALL the monitor must find the next instruction itself: it fetches up to
//! 15 bytes at the guest's RIP ([`crate::walk`]) and decodes them here. Only the instructions
//! whose intercepts are enabled are recognised; anything else is reported, never guessed.

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

#[cfg(test)]
mod tests {
    use super::*;

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
