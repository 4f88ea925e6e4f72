//! Kernel symbol map.
//!
//! The build (xtask) extracts the function symbols of the kernel ELF, demangles them and writes
//! one line per symbol, sorted by address:
//!
//! ```text
//! ffffffff80101230 1a4 kernel::console::run
//! ```
//!
//! (address and size in lower-case hex, then the name up to the end of the line). GRUB loads the
//! file as the module `kernel.sym`; the kernel looks return addresses up in it when it prints a
//! fault report. The map is read in place, without allocation, and a malformed line is skipped
//! rather than trusted: the reader never panics on any input.
#![no_std]
#![forbid(unsafe_code)]

/// One symbol: `[addr, addr + size)` is the function's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub addr: u64,
    pub size: u64,
    pub name: &'a str,
}

/// A symbol map held in memory (the module's bytes).
#[derive(Clone, Copy, Debug)]
pub struct SymbolMap<'a> {
    text: &'a [u8],
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// Parses one line; `None` for a malformed one.
pub fn parse_line(line: &[u8]) -> Option<Symbol<'_>> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let addr = parse_hex(parts.next()?)?;
    let size = parse_hex(parts.next()?)?;
    let name = core::str::from_utf8(parts.next()?).ok()?;
    let name = name.trim_end_matches('\r');
    if name.is_empty() {
        return None;
    }
    Some(Symbol { addr, size, name })
}

impl<'a> SymbolMap<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        SymbolMap { text }
    }

    /// Every well-formed symbol, in file order.
    pub fn iter(&self) -> impl Iterator<Item = Symbol<'a>> + 'a {
        self.text.split(|&b| b == b'\n').filter_map(parse_line)
    }

    /// Number of well-formed symbols.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The symbol containing `addr`, and the offset of `addr` in it. Sizes of zero are treated
    /// as "up to the next symbol". Linear in the map size: used only on the fault path.
    pub fn lookup(&self, addr: u64) -> Option<(Symbol<'a>, u64)> {
        let mut best: Option<Symbol<'a>> = None;
        for s in self.iter() {
            if s.addr <= addr && best.is_none_or(|b| s.addr >= b.addr) {
                best = Some(s);
            }
        }
        let s = best?;
        let off = addr - s.addr;
        if s.size != 0 && off >= s.size {
            return None;
        }
        Some((s, off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAP: &[u8] = b"ffffffff80100000 100 kernel::main\nffffffff80100100 20 hal::trap::report\nbad line\nffffffff80100200 0 tail\n";

    #[test]
    fn lookup_inside_and_outside() {
        let m = SymbolMap::new(MAP);
        assert_eq!(m.len(), 3);
        let (s, off) = m.lookup(0xffffffff80100010).unwrap();
        assert_eq!((s.name, off), ("kernel::main", 0x10));
        let (s, off) = m.lookup(0xffffffff8010011f).unwrap();
        assert_eq!((s.name, off), ("hal::trap::report", 0x1f));
        // Past the end of a sized symbol, before the next one: unknown.
        assert!(m.lookup(0xffffffff80100150).is_none());
        // Zero size: everything after belongs to it.
        assert_eq!(m.lookup(0xffffffff80109999).unwrap().0.name, "tail");
        assert!(m.lookup(0x1000).is_none());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for l in [&b""[..], b"zz 10 a", b"10 10", b"10 10 ", b"11111111111111111 1 a", b"10 zz a"] {
            assert!(parse_line(l).is_none(), "{:?}", core::str::from_utf8(l));
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), addr in any::<u64>()) {
            let m = SymbolMap::new(&bytes);
            let _ = m.len();
            let _ = m.lookup(addr);
        }
    }
}
