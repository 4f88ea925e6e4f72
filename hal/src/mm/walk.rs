//! The one page-table walker: every read of a 4-level x86-64 table hierarchy after boot goes
//! through [`translate`] (one address, top to bottom) or [`for_each`] (every present entry under
//! a range of top-level slots, children before their parent). Address translation of the active
//! tables, user-page look-ups, the list of a process's pages and the freeing of a dying address
//! space are all built on these two.
//!
//! Hand-written rather than the `x86_64` crate's `OffsetPageTable` walks because those need a
//! `&mut PageTable` to the whole hierarchy (aliasing the tables another CPU may be walking for
//! `translate`), do not report the flags of intermediate entries (the user check needs them) and
//! have no traversal of all entries.
use core::ops::Range;

use super::phys_to_virt;

/// Bits 12..52 of an entry: the physical address of the next table or of the page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// One page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry(pub u64);

impl Entry {
    pub(crate) fn present(self) -> bool {
        self.0 & 1 != 0
    }
    pub(crate) fn writable(self) -> bool {
        self.0 & 2 != 0
    }
    pub(crate) fn user(self) -> bool {
        self.0 & 4 != 0
    }
    /// A 2 MiB or 1 GiB page (only meaningful above the last level).
    pub(crate) fn huge(self) -> bool {
        self.0 & (1 << 7) != 0
    }
    pub(crate) fn no_execute(self) -> bool {
        self.0 & (1 << 63) != 0
    }
    /// Physical address of the next table or of the page.
    pub(crate) fn addr(self) -> u64 {
        self.0 & ADDR_MASK
    }
}

/// Levels are numbered as the tables: 4 = PML4, 3 = PDPT, 2 = page directory, 1 = page table.
/// An entry of level `l` covers `1 << (12 + 9 * (l - 1))` bytes.
pub(crate) const fn entry_span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 0x1ff
}

/// Entry `i` (< 512) of the table in frame `table`.
///
/// # Safety
/// `table` is a page-table frame: read from CR3, an address space's root, or a present
/// non-leaf entry of such a hierarchy (RAM, which the direct map covers).
pub(super) unsafe fn read(table: u64, i: u64) -> Entry {
    debug_assert!(i < 512 && table % 4096 == 0);
    // SAFETY: `table` is a page-table frame (the contract), reachable through the direct map (it
    // maps all RAM, in the boot tables and in the kernel's); `i < 512` keeps the aligned u64
    // inside it. Volatile: the hardware (accessed/dirty bits) or another CPU may write it.
    Entry(unsafe { core::ptr::read_volatile((phys_to_virt(table) as *const u64).add(i as usize)) })
}

/// Writes entry `i` of the table in frame `table`.
///
/// # Safety
/// As for `read`, and the caller owns the hierarchy (no other software writer races the store)
/// and keeps it valid: the entry written is not-present or points to a table or page it owns.
pub(super) unsafe fn write(table: u64, i: u64, e: Entry) {
    debug_assert!(i < 512 && table % 4096 == 0);
    // SAFETY: as in `read`; exclusive by the contract.
    unsafe { core::ptr::write_volatile((phys_to_virt(table) as *mut u64).add(i as usize), e.0) }
}

/// The bitwise or of entries `i..i + 8` of the table in frame `table` (bit 0 set: one of them
/// is present).
///
/// # Safety
/// As for `read`, with `i + 8 <= 512`.
pub(super) unsafe fn read8(table: u64, i: u64) -> u64 {
    debug_assert!(i + 8 <= 512 && table % 4096 == 0);
    let p = (phys_to_virt(table) as *const u64).wrapping_add(i as usize);
    let mut any = 0;
    for k in 0..8 {
        // SAFETY: as in `read`: inside the table by the contract; volatile for the same reason.
        any |= unsafe { core::ptr::read_volatile(p.add(k)) };
    }
    any
}

/// Where a walk for one address ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    /// Level of the mapping entry: 1 for a 4 KiB page, 2 for 2 MiB, 3 for 1 GiB.
    pub level: u32,
    pub entry: Entry,
}

impl Leaf {
    /// Physical address `va` maps to.
    pub(crate) fn phys(&self, va: u64) -> u64 {
        let span = entry_span(self.level);
        (self.entry.addr() & !(span - 1)) + (va & (span - 1))
    }
}

/// Walks the hierarchy under `root` for `va`. `parent_ok` sees every present entry above the
/// mapping one; a `false` ends the walk with `None`, as does a not-present entry.
///
/// # Safety
/// `root` is the frame of a live top-level table (CR3's, the kernel's, an address space's).
pub(crate) unsafe fn translate(root: u64, va: u64, parent_ok: impl Fn(Entry) -> bool) -> Option<Leaf> {
    let mut table = root;
    for level in (1..=4).rev() {
        // SAFETY: `root` is a top-level table (the contract); below it, `table` comes from a
        // present non-leaf entry of that hierarchy.
        let e = unsafe { read(table, index(va, level)) };
        if !e.present() {
            return None;
        }
        if level == 1 || (level <= 3 && e.huge()) {
            return Some(Leaf { level, entry: e });
        }
        if !parent_ok(e) {
            return None;
        }
        table = e.addr();
    }
    None
}

/// Calls `f(va, level, entry)` for every present entry with an index in `idx` of the level-`level`
/// table `table` (whose first entry maps `base`) and, recursively, of the tables below it, in
/// address order, the entries of a table before the entry that points to it. A non-leaf entry's
/// table is visited when `descend(entry)` says so (never for huge pages). Virtual addresses are
/// not sign-extended: meant for the lower (user) half.
///
/// # Safety
/// `table` is a live page-table frame of that level; `f` may free the frame an entry points to
/// (it is called after that entry's table was visited) but must not change the tables.
pub(crate) unsafe fn for_each(
    table: u64,
    level: u32,
    base: u64,
    idx: Range<u64>,
    descend: &dyn Fn(Entry) -> bool,
    f: &mut dyn FnMut(u64, u32, Entry),
) {
    let end = idx.end.min(512);
    let mut i = idx.start.min(512);
    while i < end {
        // Eight empty entries at a time are skipped with one test (tables are mostly empty:
        // this is most of a walk's cost).
        if i % 8 == 0 && i + 8 <= end {
            // SAFETY: `table` is a live table (the contract), `i + 8 <= 512`.
            let any = unsafe { read8(table, i) };
            if any & 1 == 0 {
                i += 8;
                continue;
            }
        }
        // SAFETY: `table` is a live table (the contract).
        let e = unsafe { read(table, i) };
        i += 1;
        if !e.present() {
            continue;
        }
        let i = i - 1;
        let va = base | (i * entry_span(level));
        if level > 1 && !e.huge() && descend(e) {
            // SAFETY: a present non-leaf entry of a live table points to a live table one level
            // down; `f` has not freed it (it runs after this visit).
            unsafe { for_each(e.addr(), level - 1, va, 0..512, descend, f) };
        }
        f(va, level, e);
    }
}

// The span arithmetic, checked at compile time (hal is built only for the kernel target).
const _: () = assert!(entry_span(1) == 4096 && entry_span(2) == 2 << 20 && entry_span(3) == 1 << 30);
