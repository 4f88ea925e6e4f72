//! Guest virtual-to-physical translation, as the CPU would do it for the guest's current
//! paging mode: none, 32-bit, PAE, or 4-level long mode. The monitor uses it to fetch the
//! instruction at the guest's RIP.

/// The guest registers that select and locate the paging structures.
#[derive(Clone, Copy, Debug, Default)]
pub struct PagingRegs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A paging-structure entry is not present.
    NotPresent,
    /// A paging structure lies outside the guest's memory.
    Unreadable(u64),
    /// 5-level paging (the Quest kernel never uses it).
    Unsupported,
}

impl PagingRegs {
    /// Whether the guest runs 64-bit code (long mode active).
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }
}

/// Translates guest-virtual `va`. `read(gpa, size)` reads a little-endian value of `size`
/// bytes (4 or 8) from guest-physical memory, or `None` outside the guest's RAM.
pub fn translate(regs: &PagingRegs, va: u64, mut read: impl FnMut(u64, usize) -> Option<u64>) -> Result<u64, WalkError> {
    if regs.cr0 & CR0_PG == 0 {
        return Ok(va & 0xffff_ffff);
    }
    let mut rd = |a: u64, n: usize| read(a, n).ok_or(WalkError::Unreadable(a));
    if regs.efer & EFER_LMA != 0 {
        if regs.cr4 & CR4_LA57 != 0 {
            return Err(WalkError::Unsupported);
        }
        let mut table = regs.cr3 & ADDR;
        for level in (0..4u32).rev() {
            let shift = 12 + 9 * level;
            let e = rd(table + ((va >> shift) & 0x1ff) * 8, 8)?;
            if e & 1 == 0 {
                return Err(WalkError::NotPresent);
            }
            if level == 0 || (level <= 2 && e & (1 << 7) != 0) {
                let size = 1u64 << shift;
                return Ok((e & ADDR & !(size - 1)) | (va & (size - 1)));
            }
            table = e & ADDR;
        }
        unreachable!()
    } else if regs.cr4 & CR4_PAE != 0 {
        let va = va & 0xffff_ffff;
        let pdpte = rd((regs.cr3 & 0xffff_ffe0) + ((va >> 30) & 3) * 8, 8)?;
        if pdpte & 1 == 0 {
            return Err(WalkError::NotPresent);
        }
        let pde = rd((pdpte & ADDR) + ((va >> 21) & 0x1ff) * 8, 8)?;
        if pde & 1 == 0 {
            return Err(WalkError::NotPresent);
        }
        if pde & (1 << 7) != 0 {
            return Ok((pde & ADDR & !0x1f_ffff) | (va & 0x1f_ffff));
        }
        let pte = rd((pde & ADDR) + ((va >> 12) & 0x1ff) * 8, 8)?;
        if pte & 1 == 0 {
            return Err(WalkError::NotPresent);
        }
        Ok((pte & ADDR) | (va & 0xfff))
    } else {
        let va = va & 0xffff_ffff;
        let pde = rd((regs.cr3 & 0xffff_f000) + ((va >> 22) & 0x3ff) * 4, 4)?;
        if pde & 1 == 0 {
            return Err(WalkError::NotPresent);
        }
        if pde & (1 << 7) != 0 && regs.cr4 & CR4_PSE != 0 {
            return Ok((pde & 0xffc0_0000) | (va & 0x3f_ffff));
        }
        let pte = rd((pde & 0xffff_f000) + ((va >> 12) & 0x3ff) * 4, 4)?;
        if pte & 1 == 0 {
            return Err(WalkError::NotPresent);
        }
        Ok((pte & 0xffff_f000) | (va & 0xfff))
    }
}

/// Fetches up to `buf.len()` bytes of guest-virtual memory at `va`, page by page; returns how
/// many bytes were read (fewer when a page is not mapped).
pub fn fetch(regs: &PagingRegs, va: u64, buf: &mut [u8], mut read_byte: impl FnMut(u64) -> Option<u8>) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let v = va.wrapping_add(n as u64);
        let Ok(pa) = translate(regs, v, |a, size| {
            let mut x = 0u64;
            for k in 0..size {
                x |= u64::from(read_byte(a + k as u64)?) << (8 * k);
            }
            Some(x)
        }) else {
            break;
        };
        let in_page = (0x1000 - (v & 0xfff)) as usize;
        for k in 0..in_page.min(buf.len() - n) {
            match read_byte(pa + k as u64) {
                Some(b) => buf[n + k] = b,
                None => return n + k,
            }
        }
        n += in_page.min(buf.len() - n);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    struct Mem(Vec<u8>);
    impl Mem {
        fn put(&mut self, a: u64, v: u64) {
            self.0[a as usize..a as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn put32(&mut self, a: u64, v: u32) {
            self.0[a as usize..a as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn read(&self, a: u64, n: usize) -> Option<u64> {
            let s = self.0.get(a as usize..a as usize + n)?;
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(s);
            Some(u64::from_le_bytes(b))
        }
    }

    #[test]
    fn no_paging_is_identity() {
        let r = PagingRegs::default();
        assert_eq!(translate(&r, 0x10_0123, |_, _| None), Ok(0x10_0123));
    }

    #[test]
    fn long_mode_4k_and_2m() {
        let mut m = Mem(vec![0; 0x20_0000]);
        // PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
        let va: u64 = 0xffff_ffff_8010_2345;
        m.put(0x1000 + ((va >> 39) & 0x1ff) * 8, 0x2003);
        m.put(0x2000 + ((va >> 30) & 0x1ff) * 8, 0x3003);
        m.put(0x3000 + ((va >> 21) & 0x1ff) * 8, 0x4003);
        m.put(0x4000 + ((va >> 12) & 0x1ff) * 8, 0x9_9003);
        let r = PagingRegs { cr0: CR0_PG | 1, cr3: 0x1000, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8) };
        assert_eq!(translate(&r, va, |a, n| m.read(a, n)), Ok(0x9_9345));
        // A 2 MiB page for the next PD slot.
        let va2 = va + 0x20_0000;
        m.put(0x3000 + ((va2 >> 21) & 0x1ff) * 8, 0x60_0083);
        assert_eq!(translate(&r, va2, |a, n| m.read(a, n)), Ok(0x60_0000 | (va2 & 0x1f_ffff)));
        assert_eq!(translate(&r, 0x1234, |a, n| m.read(a, n)), Err(WalkError::NotPresent));
        let mut buf = [0u8; 4];
        m.0[0x9_9345..0x9_9349].copy_from_slice(&[0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(fetch(&r, va, &mut buf, |a| m.0.get(a as usize).copied()), 4);
        assert_eq!(buf, [0x0f, 0x01, 0xd9, 0xc3]);
    }

    #[test]
    fn legacy_32_bit_with_pse() {
        let mut m = Mem(vec![0; 0x10000]);
        m.put32(0x1000 + (0x0040_0000 >> 22) * 4, 0x0080_0083);
        let r = PagingRegs { cr0: CR0_PG | 1, cr3: 0x1000, cr4: CR4_PSE, efer: 0 };
        assert_eq!(translate(&r, 0x0041_2345, |a, n| m.read(a, n)), Ok(0x0081_2345));
        assert_eq!(translate(&r, 0x1000, |a, n| m.read(a, n)), Err(WalkError::NotPresent));
        let bad = PagingRegs { cr3: 0x10_0000, ..r };
        assert_eq!(translate(&bad, 0, |a, n| m.read(a, n)), Err(WalkError::Unreadable(0x10_0000)));
    }

    #[test]
    fn fetch_stops_at_unmapped_page() {
        let r = PagingRegs::default();
        let mem = vec![0xaau8; 0x2000];
        let mut buf = [0u8; 15];
        assert_eq!(fetch(&r, 0x1ff8, &mut buf, |a| mem.get(a as usize).copied()), 8);
    }
}
