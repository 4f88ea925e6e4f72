//! From a validated ELF image to a [`LoadPlan`]: relocated segments, page runs with merged
//! protections, per-page copy and zero chunks, TLS, program headers and the program break.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::Error;
use crate::parse::{
    ET_EXEC, PF_R, PF_W, PF_X, PHDR_SIZE, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_PHDR, PT_TLS, Phdr,
    parse_ehdr, parse_phdr,
};

/// The page size the plan is expressed in.
pub const PAGE_SIZE: u64 = 4096;
/// Default exclusive upper bound of user addresses (Linux x86-64 `TASK_SIZE`, 47-bit).
pub const USER_LIMIT: u64 = 0x0000_7fff_ffff_f000;
/// Default lowest address a segment may use (like Linux `mmap_min_addr`): 64 KiB.
pub const DEFAULT_MIN_VADDR: u64 = 0x1_0000;
/// Default base at which a static-pie's lowest segment is placed.
pub const DEFAULT_PIE_BASE: u64 = 0x0000_5555_5555_0000;
/// Default limit on the memory the segments may need: 512 MiB.
pub const DEFAULT_MAX_TOTAL_MEMSZ: u64 = 512 << 20;
/// The most program headers an image may have.
pub const MAX_PHNUM: usize = 64;

/// What the caller allows; [`Default`] gives the values of the `DEFAULT_*` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where to put the lowest page of a static-pie (`ET_DYN`). It is rounded up to the largest
    /// segment alignment (at least a page); the effective bias is [`LoadPlan::load_bias`].
    /// Ignored for `ET_EXEC`.
    pub pie_base: u64,
    /// No segment may start below this address (null-page guard).
    pub min_vaddr: u64,
    /// No segment may end above this address (exclusive).
    pub user_limit: u64,
    /// The pages of all segments together (and the TLS template) may not exceed this many
    /// bytes.
    pub max_total_memsz: u64,
    /// Reject the image if its program headers will not be in memory ([`LoadPlan::phdr_vaddr`]
    /// would be `None`). musl reads them through `AT_PHDR` at start-up (to find `PT_TLS`, and
    /// in a static-pie to find its own base), so a musl program without them would crash.
    pub require_phdr: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pie_base: DEFAULT_PIE_BASE,
            min_vaddr: DEFAULT_MIN_VADDR,
            user_limit: USER_LIMIT,
            max_total_memsz: DEFAULT_MAX_TOTAL_MEMSZ,
            require_phdr: false,
        }
    }
}

/// Memory protection of a segment or page: a set of R, W, X.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No access.
    pub const NONE: Flags = Flags(0);
    /// Readable.
    pub const R: Flags = Flags(4);
    /// Writable.
    pub const W: Flags = Flags(2);
    /// Executable.
    pub const X: Flags = Flags(1);

    /// From ELF `p_flags` (`PF_R | PF_W | PF_X`; other bits ignored).
    pub fn from_p_flags(p_flags: u32) -> Flags {
        let mut f = 0;
        if p_flags & PF_R != 0 {
            f |= Flags::R.0;
        }
        if p_flags & PF_W != 0 {
            f |= Flags::W.0;
        }
        if p_flags & PF_X != 0 {
            f |= Flags::X.0;
        }
        Flags(f)
    }
    /// The union of two sets of permissions.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// Whether every permission in `other` is in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Readable.
    pub const fn readable(self) -> bool {
        self.contains(Flags::R)
    }
    /// Writable.
    pub const fn writable(self) -> bool {
        self.contains(Flags::W)
    }
    /// Executable.
    pub const fn executable(self) -> bool {
        self.contains(Flags::X)
    }
    /// Both writable and executable (a W^X violation the kernel may refuse).
    pub const fn is_wx(self) -> bool {
        self.writable() && self.executable()
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |set: bool, ch: char| if set { ch } else { '-' };
        write!(
            f,
            "{}{}{}",
            c(self.readable(), 'r'),
            c(self.writable(), 'w'),
            c(self.executable(), 'x')
        )
    }
}

/// Which kind of executable the image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: loaded at its link addresses, bias 0.
    Exec,
    /// `ET_DYN` without `PT_INTERP`: loaded at a bias; relocates itself at start-up.
    StaticPie,
}

/// One loadable segment, with its address already relocated by the load bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start address in the process (`p_vaddr + load_bias`); need not be page-aligned.
    pub vaddr: u64,
    /// Bytes in memory (`p_memsz`), `> 0`.
    pub memsz: u64,
    /// Where its bytes start in the file (`p_offset`).
    pub file_offset: u64,
    /// Bytes taken from the file (`p_filesz <= memsz`); the rest is zero (`.bss`).
    pub filesz: u64,
    /// Protection.
    pub flags: Flags,
}

const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

impl Segment {
    /// End address (exclusive): `vaddr + memsz`.
    pub fn end(&self) -> u64 {
        // Saturating: the fields are public, and no helper may panic on a hand-made segment.
        self.vaddr.saturating_add(self.memsz)
    }
    /// The pages to map, `page_start..page_end`, both page-aligned. Pages at either end may
    /// be shared with a neighbouring segment: use [`LoadPlan::page_runs`] to map each page once.
    pub fn page_range(&self) -> Range<u64> {
        // `end() <= user_limit`, and an Ok plan has user_limit far below u64::MAX.
        align_down(self.vaddr, PAGE_SIZE)..align_up(self.end(), PAGE_SIZE).unwrap_or(u64::MAX)
    }
    /// The bytes of the image to copy to `vaddr` (`file_offset..file_offset + filesz`).
    pub fn file_range(&self) -> Range<usize> {
        // Validated: file_offset + filesz <= image.len(), so both fit in usize.
        self.file_offset as usize..self.file_offset.saturating_add(self.filesz) as usize
    }
    /// The zero-filled addresses (`.bss`): `vaddr + filesz .. vaddr + memsz` (maybe empty).
    pub fn bss_range(&self) -> Range<u64> {
        self.vaddr.saturating_add(self.filesz.min(self.memsz))..self.end()
    }
    /// The file bytes to copy, split at page boundaries: each [`Chunk`] lies in one page.
    pub fn copy_chunks(&self) -> CopyChunks {
        CopyChunks {
            vaddr: self.vaddr,
            file_offset: self.file_offset,
            remaining: self.filesz,
        }
    }
    /// The addresses to zero (the `.bss`), split at page boundaries. A loader that maps
    /// freshly zeroed frames and only copies [`copy_chunks`](Self::copy_chunks) need not
    /// zero anything; one that reuses frames must zero these.
    pub fn zero_chunks(&self) -> ZeroChunks {
        let r = self.bss_range();
        ZeroChunks {
            vaddr: r.start,
            remaining: r.end.saturating_sub(r.start),
        }
    }
}

/// A piece of a segment's file bytes lying within one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Destination user address.
    pub vaddr: u64,
    /// Source offset in the image.
    pub file_offset: u64,
    /// Bytes, `1..=PAGE_SIZE`; `vaddr..vaddr + len` does not cross a page boundary.
    pub len: u64,
}

impl Chunk {
    /// The source bytes in the image.
    pub fn file_range(&self) -> Range<usize> {
        self.file_offset as usize..self.file_offset.saturating_add(self.len) as usize
    }
    /// The page containing the destination.
    pub fn page(&self) -> u64 {
        align_down(self.vaddr, PAGE_SIZE)
    }
    /// Offset of the destination within its page.
    pub fn page_offset(&self) -> u64 {
        self.vaddr % PAGE_SIZE
    }
}

/// Iterator over a segment's file bytes, page by page ([`Segment::copy_chunks`]).
#[derive(Clone, Debug)]
pub struct CopyChunks {
    vaddr: u64,
    file_offset: u64,
    remaining: u64,
}

impl Iterator for CopyChunks {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(PAGE_SIZE - self.vaddr % PAGE_SIZE);
        let chunk = Chunk {
            vaddr: self.vaddr,
            file_offset: self.file_offset,
            len,
        };
        self.vaddr = self.vaddr.wrapping_add(len);
        self.file_offset = self.file_offset.wrapping_add(len);
        self.remaining -= len;
        Some(chunk)
    }
}

/// Iterator over a segment's `.bss`, page by page ([`Segment::zero_chunks`]): each item is an
/// address range inside one page.
#[derive(Clone, Debug)]
pub struct ZeroChunks {
    vaddr: u64,
    remaining: u64,
}

impl Iterator for ZeroChunks {
    type Item = Range<u64>;
    fn next(&mut self) -> Option<Range<u64>> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(PAGE_SIZE - self.vaddr % PAGE_SIZE);
        let r = self.vaddr..self.vaddr.saturating_add(len);
        self.vaddr = self.vaddr.wrapping_add(len);
        self.remaining -= len;
        Some(r)
    }
}

/// A run of whole pages to map with one protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// First page (page-aligned).
    pub start: u64,
    /// End (exclusive, page-aligned, `> start`).
    pub end: u64,
    /// Protection: the union of the flags of every segment touching these pages.
    pub flags: Flags,
}

impl PageRun {
    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.end.saturating_sub(self.start) / PAGE_SIZE
    }
}

/// The thread-local storage template (`PT_TLS`), relocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Address of the initialisation image (`.tdata`) in the loaded program.
    pub vaddr: u64,
    /// Bytes of initialised data.
    pub filesz: u64,
    /// Total bytes per thread (`.tdata` + `.tbss`).
    pub memsz: u64,
    /// Alignment (0 or a power of two).
    pub align: u64,
}

/// How to load a program: the result of [`load_plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Static or static-pie.
    pub kind: ElfKind,
    /// Entry point (`e_entry + load_bias`): the initial `rip`; also `AT_ENTRY`.
    pub entry: u64,
    /// Added to every link-time address: 0 for `ET_EXEC`.
    pub load_bias: u64,
    /// The non-empty `PT_LOAD` segments, sorted by address, non-overlapping.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (`AT_PHDR`), if they are loaded.
    pub phdr_vaddr: Option<u64>,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u16,
    /// Size of one program header (`AT_PHENT`), always 56.
    pub phentsize: u16,
    /// The TLS template, if the program has one.
    pub tls: Option<Tls>,
    /// Whether `PT_GNU_STACK` asks for an executable stack (false when it is absent).
    pub stack_exec: bool,
    /// The initial program break: the page-aligned end of the highest segment.
    pub brk_start: u64,
}

impl LoadPlan {
    /// Every page the program occupies, exactly once, sorted: adjacent segments that share a
    /// page (a common musl/ld layout when a segment does not start on a page boundary) give
    /// that page the union of their permissions; neighbouring runs with equal flags are
    /// merged. Map each run, then copy each segment's [`Segment::copy_chunks`].
    pub fn page_runs(&self) -> Vec<PageRun> {
        let mut runs: Vec<PageRun> = Vec::with_capacity(self.segments.len() + 2);
        for seg in &self.segments {
            let Range { start, end } = seg.page_range();
            let Some(last) = runs.last_mut() else {
                push_run(&mut runs, start, end, seg.flags);
                continue;
            };
            if last.end <= start {
                push_run(&mut runs, start, end, seg.flags);
                continue;
            }
            // Sorted, non-overlapping segments share at most the page `start`.
            let shared_end = start.saturating_add(PAGE_SIZE);
            let union = last.flags | seg.flags;
            if union == last.flags {
                push_run(&mut runs, shared_end, end, seg.flags);
            } else {
                last.end = start;
                if last.end == last.start {
                    runs.pop();
                }
                push_run(&mut runs, start, shared_end, union);
                push_run(&mut runs, shared_end, end, seg.flags);
            }
        }
        runs
    }

    /// Pages (page-aligned addresses) that more than one segment touches: the pages whose
    /// protection [`page_runs`](Self::page_runs) merged.
    pub fn shared_pages(&self) -> Vec<u64> {
        let mut shared = Vec::new();
        for pair in self.segments.windows(2) {
            if let [a, b] = pair {
                let page = align_down(b.vaddr, PAGE_SIZE);
                if a.page_range().end > page && shared.last() != Some(&page) {
                    shared.push(page);
                }
            }
        }
        shared
    }

    /// Total bytes of the pages the program occupies.
    pub fn total_mapped(&self) -> u64 {
        self.page_runs().iter().fold(0, |sum, r| {
            sum.saturating_add(r.end.saturating_sub(r.start))
        })
    }

    /// The segment containing `addr`, if any.
    pub fn segment_at(&self, addr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| s.vaddr <= addr && addr < s.end())
    }

    /// Checks the invariants listed in the crate documentation against the options the plan
    /// was made with and the image length; returns the first one violated.
    pub fn check(&self, opts: &LoadOptions, image_len: usize) -> Result<(), &'static str> {
        if self.segments.is_empty() {
            return Err("no segments");
        }
        for s in &self.segments {
            if s.memsz == 0 || s.filesz > s.memsz {
                return Err("segment sizes: need 0 < memsz and filesz <= memsz");
            }
            let end = s.vaddr.checked_add(s.memsz).ok_or("segment wraps")?;
            if s.vaddr < opts.min_vaddr || end > opts.user_limit {
                return Err("segment outside the user range");
            }
            let file_end = s
                .file_offset
                .checked_add(s.filesz)
                .ok_or("file range wraps")?;
            if file_end > image_len as u64 {
                return Err("segment file bytes outside the image");
            }
            if end > self.brk_start {
                return Err("brk_start below a segment end");
            }
        }
        for pair in self.segments.windows(2) {
            if let [a, b] = pair
                && a.end() > b.vaddr
            {
                return Err("segments unsorted or overlapping");
            }
        }
        if !self.brk_start.is_multiple_of(PAGE_SIZE) {
            return Err("brk_start not page-aligned");
        }
        if !self
            .segment_at(self.entry)
            .is_some_and(|s| s.flags.executable())
        {
            return Err("entry not in an executable segment");
        }
        if self.total_mapped() > opts.max_total_memsz {
            return Err("total memory above the limit");
        }
        match self.kind {
            ElfKind::Exec if self.load_bias != 0 => return Err("ET_EXEC with a load bias"),
            ElfKind::StaticPie if !self.load_bias.is_multiple_of(PAGE_SIZE) => {
                return Err("load bias not page-aligned");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Appends `start..end` with `flags`, merging with the last run when contiguous and equal.
fn push_run(runs: &mut Vec<PageRun>, start: u64, end: u64, flags: Flags) {
    if start >= end {
        return;
    }
    if let Some(last) = runs.last_mut()
        && last.end == start
        && last.flags == flags
    {
        last.end = end;
        return;
    }
    runs.push(PageRun { start, end, flags });
}

/// A validated `PT_LOAD` before relocation.
struct Load {
    index: usize,
    ph: Phdr,
}

/// Parses and validates `image` and says how to load it. See the crate documentation for
/// what is accepted; every other input gives an [`Error`], never a panic.
pub fn load_plan(image: &[u8], opts: &LoadOptions) -> Result<LoadPlan, Error> {
    let eh = parse_ehdr(image, MAX_PHNUM)?;
    let mut phdrs = Vec::with_capacity(usize::from(eh.phnum));
    for index in 0..usize::from(eh.phnum) {
        phdrs.push(parse_phdr(image, &eh, index)?);
    }
    if phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        return Err(Error::DynamicallyLinked);
    }
    let image_len = image.len() as u64;

    // 1. Each PT_LOAD on its own: sizes, file bounds, alignment, no wrap-around.
    let mut loads: Vec<Load> = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type != PT_LOAD {
            continue;
        }
        if ph.filesz > ph.memsz {
            return Err(Error::FileszExceedsMemsz { index });
        }
        let file_end = ph
            .offset
            .checked_add(ph.filesz)
            .ok_or(Error::SegmentOutOfFile { index })?;
        if file_end > image_len {
            return Err(Error::SegmentOutOfFile { index });
        }
        if ph.align > 1 {
            if !ph.align.is_power_of_two() {
                return Err(Error::BadAlignment {
                    index,
                    align: ph.align,
                });
            }
            if ph.vaddr % ph.align != ph.offset % ph.align {
                return Err(Error::Misaligned { index });
            }
        }
        ph.vaddr
            .checked_add(ph.memsz)
            .ok_or(Error::AddressOverflow { index })?;
        if ph.memsz > 0 {
            loads.push(Load { index, ph: *ph });
        }
    }
    let first = loads.first().ok_or(Error::NoLoadSegments)?;

    // 2. The load bias.
    let kind = if eh.e_type == ET_EXEC {
        ElfKind::Exec
    } else {
        ElfKind::StaticPie
    };
    let load_bias = match kind {
        ElfKind::Exec => 0,
        ElfKind::StaticPie => {
            let min_vaddr = loads.iter().map(|l| l.ph.vaddr).min().unwrap_or(0);
            let max_align = loads.iter().map(|l| l.ph.align).fold(PAGE_SIZE, u64::max);
            let lowest_page = align_down(min_vaddr, PAGE_SIZE);
            align_up(opts.pie_base.saturating_sub(lowest_page), max_align)
                .ok_or(Error::AddressOverflow { index: first.index })?
        }
    };

    // 3. Relocate, range-check, sort, reject overlaps.
    let mut placed: Vec<(usize, Segment)> = Vec::with_capacity(loads.len());
    for Load { index, ph } in &loads {
        let index = *index;
        let vaddr = ph
            .vaddr
            .checked_add(load_bias)
            .ok_or(Error::AddressOverflow { index })?;
        let end = vaddr
            .checked_add(ph.memsz)
            .ok_or(Error::AddressOverflow { index })?;
        if vaddr < opts.min_vaddr {
            return Err(Error::NullPage { index, vaddr });
        }
        if end > opts.user_limit {
            return Err(Error::KernelAddress { index, end });
        }
        let seg = Segment {
            vaddr,
            memsz: ph.memsz,
            file_offset: ph.offset,
            filesz: ph.filesz,
            flags: Flags::from_p_flags(ph.flags),
        };
        placed.push((index, seg));
    }
    placed.sort_by_key(|(_, s)| s.vaddr);
    for pair in placed.windows(2) {
        if let [(first, a), (second, b)] = pair
            && a.end() > b.vaddr
        {
            return Err(Error::OverlappingSegments {
                first: *first,
                second: *second,
            });
        }
    }
    let segments: Vec<Segment> = placed.into_iter().map(|(_, s)| s).collect();
    let brk_start = segments
        .iter()
        .map(Segment::end)
        .max()
        .and_then(|end| align_up(end, PAGE_SIZE))
        .ok_or(Error::AddressOverflow { index: first.index })?;

    let mut plan = LoadPlan {
        kind,
        entry: 0,
        load_bias,
        segments,
        phdr_vaddr: None,
        phnum: eh.phnum,
        phentsize: eh.phentsize,
        tls: None,
        stack_exec: false,
        brk_start,
    };
    let needed = plan.total_mapped();
    if needed > opts.max_total_memsz {
        return Err(Error::TooLarge {
            needed,
            limit: opts.max_total_memsz,
        });
    }

    // 4. Entry point.
    let entry = eh.entry.wrapping_add(load_bias);
    if eh.entry.checked_add(load_bias).is_none()
        || !plan.segment_at(entry).is_some_and(|s| s.flags.executable())
    {
        return Err(Error::EntryNotExecutable { entry });
    }
    plan.entry = entry;

    // 5. The other program headers.
    let phdr_table_len = u64::from(eh.phnum) * PHDR_SIZE as u64;
    let mut saw_phdr = false;
    for ph in &phdrs {
        match ph.p_type {
            PT_TLS => {
                if plan.tls.is_some() {
                    return Err(Error::MultipleTls);
                }
                plan.tls = Some(check_tls(ph, &plan, image_len, opts)?);
            }
            PT_PHDR => {
                if saw_phdr {
                    return Err(Error::BadPhdrSegment);
                }
                saw_phdr = true;
                let vaddr = ph
                    .vaddr
                    .checked_add(load_bias)
                    .ok_or(Error::BadPhdrSegment)?;
                if !plan.contains_range(vaddr, phdr_table_len) {
                    return Err(Error::BadPhdrSegment);
                }
                plan.phdr_vaddr = Some(vaddr);
            }
            PT_GNU_STACK => plan.stack_exec = ph.flags & PF_X != 0,
            _ => {}
        }
    }
    if plan.phdr_vaddr.is_none() {
        // Like Linux: the PT_LOAD whose file bytes contain the table.
        plan.phdr_vaddr = plan.segments.iter().find_map(|s| {
            let off = eh.phoff.checked_sub(s.file_offset)?;
            (off.checked_add(phdr_table_len)? <= s.filesz).then_some(s.vaddr + off)
        });
    }
    if opts.require_phdr && plan.phdr_vaddr.is_none() {
        return Err(Error::PhdrNotLoaded);
    }
    debug_assert_eq!(plan.check(opts, image.len()), Ok(()));
    Ok(plan)
}

impl LoadPlan {
    /// Whether `start..start + len` lies inside one segment.
    fn contains_range(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.segments
            .iter()
            .any(|s| s.vaddr <= start && end <= s.end())
    }
}

fn check_tls(ph: &Phdr, plan: &LoadPlan, image_len: u64, opts: &LoadOptions) -> Result<Tls, Error> {
    if ph.filesz > ph.memsz || (ph.align > 1 && !ph.align.is_power_of_two()) {
        return Err(Error::BadTls);
    }
    if ph.memsz > opts.max_total_memsz {
        return Err(Error::TooLarge {
            needed: ph.memsz,
            limit: opts.max_total_memsz,
        });
    }
    let file_end = ph.offset.checked_add(ph.filesz).ok_or(Error::BadTls)?;
    if file_end > image_len {
        return Err(Error::BadTls);
    }
    let vaddr = ph.vaddr.checked_add(plan.load_bias).ok_or(Error::BadTls)?;
    if ph.filesz > 0 && !plan.contains_range(vaddr, ph.filesz) {
        return Err(Error::BadTls);
    }
    Ok(Tls {
        vaddr,
        filesz: ph.filesz,
        memsz: ph.memsz,
        align: ph.align,
    })
}
