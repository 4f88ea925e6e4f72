//! User address spaces and page-table roots.
//!
//! An [`AddressSpace`] owns a top-level table whose upper half is the kernel's and every table
//! and page of its lower half. User addresses are plain numbers here, never dereferenced: each
//! operation checks them against [`USER_END`] and goes through the page tables and the direct
//! map, so a bad address is an error, never a kernel fault. CR3 is loaded only from a
//! [`PageTableRoot`], which keeps the top-level table it names alive.
use alloc::sync::Arc;

use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use spin::Mutex;

use super::frames::{Frame, Frames, with_frames};
use super::shared::{self, SHARED_BIT, SharedPage};
use crate::percpu::MAX_CPUS;
use super::walk::{self, Entry};
use super::{DIRECT_MAP_BASE, PAGE_SIZE, kernel_pml4, nx_supported, phys_to_virt};

/// Highest user address + 1 (the lower canonical half, minus the last page).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Rights of a user page. A page without `read` (PROT_NONE) is mapped but not accessible
/// to the program at all (a supervisor page: any user access faults); x86 cannot make a page
/// writable or executable without also making it readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UserAccess {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl UserAccess {
    /// Readable, plus `write` and `exec` as given.
    pub const fn readable(write: bool, exec: bool) -> UserAccess {
        UserAccess { read: true, write, exec }
    }
    /// No access at all (PROT_NONE).
    pub const NONE: UserAccess = UserAccess { read: false, write: false, exec: false };

    fn of_entry(e: Entry) -> UserAccess {
        if !e.user() {
            return UserAccess::NONE;
        }
        UserAccess { read: true, write: e.writable(), exec: !e.no_execute() }
    }
}

/// Why a user-memory operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserMemError {
    /// Not a user address, or not mapped with the needed rights (EFAULT).
    Fault,
    /// No memory left (ENOMEM).
    NoMemory,
}

/// A page-table hierarchy CR3 may hold: the kernel's, or the top-level table of an
/// [`AddressSpace`] (shared with it, so the table outlives every handle; when the address space
/// is dropped its user half is emptied, leaving the kernel half). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct PageTableRoot(Option<Arc<Frame>>);

impl PageTableRoot {
    fn phys(&self) -> u64 {
        match &self.0 {
            None => kernel_pml4(),
            Some(f) => f.phys(),
        }
    }
    /// Whether this is the kernel's own hierarchy.
    pub fn is_kernel(&self) -> bool {
        self.0.is_none()
    }
}

/// The kernel's page tables (what kernel threads run on).
pub fn kernel_root() -> PageTableRoot {
    PageTableRoot(None)
}

/// The address-space table each CPU has in CR3 (`None`: the kernel's): a top-level table stays
/// allocated while any CPU has it loaded, whatever happens to the handles.
static ACTIVE: [Mutex<Option<Arc<Frame>>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// Loads `root` into CR3 if it is not active already.
pub fn activate_root(root: &PageTableRoot) {
    let pml4 = root.phys();
    let previous = crate::cpu::without_interrupts(|| {
        if Cr3::read().0.start_address().as_u64() == pml4 {
            return None;
        }
        let me = crate::percpu::cpu_index();
        let mut slot = ACTIVE[me].lock();
        // Loading CR3 flushes every non-global entry: it answers the flush requests made so far.
        let asked = FLUSH_ASKED[me].load(Ordering::SeqCst);
        // SAFETY: `pml4` is the kernel's table or a live address space's top-level table, whose
        // upper half is the kernel's, so the running code, stack and data stay mapped; this
        // CPU's slot keeps it allocated while it is loaded.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4)), Cr3Flags::empty()) };
        FLUSH_DONE[me].fetch_max(asked, Ordering::SeqCst);
        core::mem::replace(&mut *slot, root.0.clone())
    });
    // May free the previous table: no CPU has it loaded any more (each holds its own slot).
    drop(previous);
    if GRAVE_LEN.load(Ordering::Relaxed) != 0 {
        reap_grave();
    }
}

// TLB shootdown.
//
// Threads of one process may run on several CPUs at once, each with the same top-level table in
// CR3 (its `ACTIVE` slot names it). A CPU caches translations, so after a page is unmapped or its
// rights are reduced, every other CPU with that table loaded must flush before the change is
// complete — and before the unmapped frame may be reused, or a thread there could still reach it.
//
// The rule: a change to an address space that is loaded on another CPU (its slot, read under the
// slot's lock after the page-table write, names the same table) asks each such CPU for a flush
// (a per-CPU request counter and an IPI) and gets a `FlushTicket` — the counter values. A CPU
// answers by flushing: the IPI handler, or any CR3 load (which flushes everything non-global),
// raises its `FLUSH_DONE` to the requests it has seen. A CPU that loads the table after the
// write reads the new entries (the slot lock orders its CR3 load after our read of the slot).
// Frames unmapped meanwhile wait in a graveyard with their ticket and are freed only once every
// CPU in it has answered; nothing ever waits for another CPU, so a CPU spinning with interrupts
// off on a lock the requester holds cannot deadlock with it. `FlushTicket::wait` (reduced
// rights: mprotect) does wait, and must be called without locks held.

/// The vector of the flush IPI.
pub const TLB_FLUSH_VECTOR: u8 = 0xf3;

static FLUSH_ASKED: [core::sync::atomic::AtomicU64; MAX_CPUS] = [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];
static FLUSH_DONE: [core::sync::atomic::AtomicU64; MAX_CPUS] = [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];
// Copy-on-write (fork).
//
// `duplicate` gives the child the parent's private frames instead of copies: each such leaf, in
// both address spaces, becomes read-only for the hardware and carries `COW_BIT`, and the frame
// gets a count in `shared`'s table, one per entry (so unmapping and dropping give counts back
// exactly as for shared pages, and the last one frees the frame). The leaf remembers whether the
// page may be written (`COW_WRITE_BIT`, which `protect` sets from the rights it is given while
// keeping the hardware bit clear). On a write fault the kernel calls `break_cow`, which, if the
// page may be written, gives the entry a private copy (or, when its count is the only one
// left, takes the frame back as private) and makes it writable. Kernel writes to user memory go
// through `copy_to_user` (refused on a read-only leaf: the kernel breaks first) or `fill`
// (which breaks first itself), so no write reaches a frame another address space still maps.
// Turning a writable leaf copy-on-write narrows it: other CPUs running the parent are asked to
// flush (`take_flush`), and the old frame of a broken leaf waits for their flushes (`bury`).

/// Software page-table bit 10: a private page shared copy-on-write since a fork.
const COW_BIT: u64 = 1 << 10;
/// Software page-table bit 11, on a copy-on-write leaf: the page's rights include writing (the
/// hardware bit stays clear until the leaf is broken).
const COW_WRITE_BIT: u64 = 1 << 11;

/// What an unmap gives back once no CPU may cache it: a frame the tables owned, or one count of
/// a shared page (dropping either gives it back).
enum Remains {
    Frame(#[allow(dead_code)] Frame),
    Shared(#[allow(dead_code)] SharedPage),
}

/// Frames unmapped while other CPUs may still cache them, with the flushes they wait for.
static GRAVE: Mutex<alloc::vec::Vec<(FlushTicket, alloc::vec::Vec<Remains>)>> = Mutex::new(alloc::vec::Vec::new());
static GRAVE_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

use core::sync::atomic::Ordering;

/// Flushes this CPU's TLB and records the requests it answers.
fn answer_flush() {
    let me = crate::percpu::cpu_index();
    let asked = FLUSH_ASKED[me].load(Ordering::SeqCst);
    x86_64::instructions::tlb::flush_all();
    FLUSH_DONE[me].fetch_max(asked, Ordering::SeqCst);
}

/// Installs the flush IPI's handler (once, on the boot CPU, before other CPUs run user code).
pub fn init_tlb_shootdown() {
    crate::trap::set_handler(TLB_FLUSH_VECTOR, |_| answer_flush());
}

/// The flushes a change waits for: (CPU, request number) pairs.
#[derive(Clone, Debug, Default)]
#[must_use = "a ticket is how the change's completion is known"]
pub struct FlushTicket(alloc::vec::Vec<(usize, u64)>);

impl FlushTicket {
    /// Whether every CPU asked has flushed.
    pub fn done(&self) -> bool {
        self.0.iter().all(|&(cpu, n)| FLUSH_DONE[cpu].load(Ordering::SeqCst) >= n)
    }

    /// Waits until every CPU asked has flushed. Call it without locks held: a CPU spinning on
    /// one with interrupts off would never answer. (Requests made to this CPU meanwhile are
    /// answered here, so two CPUs waiting for each other both progress.)
    pub fn wait(self) {
        while !self.done() {
            let me = crate::percpu::cpu_index();
            if FLUSH_DONE[me].load(Ordering::SeqCst) < FLUSH_ASKED[me].load(Ordering::SeqCst) {
                answer_flush();
            }
            core::hint::spin_loop();
        }
    }

    fn merge(&mut self, other: FlushTicket) {
        for (cpu, n) in other.0 {
            match self.0.iter_mut().find(|e| e.0 == cpu) {
                Some(e) => e.1 = e.1.max(n),
                None => self.0.push((cpu, n)),
            }
        }
    }
}

/// Asks every other CPU that has `pml4` loaded to flush; called after the page-table change.
fn request_flush(pml4: &Arc<Frame>) -> FlushTicket {
    let me = crate::percpu::cpu_index();
    let mut t = FlushTicket::default();
    for cpu in 0..crate::percpu::online() {
        if cpu == me {
            continue;
        }
        let loaded = crate::cpu::without_interrupts(|| ACTIVE[cpu].lock().as_ref().is_some_and(|a| Arc::ptr_eq(a, pml4)));
        if loaded {
            let n = FLUSH_ASKED[cpu].fetch_add(1, Ordering::SeqCst) + 1;
            crate::apic::send_ipi(crate::percpu::apic_id_of(cpu), TLB_FLUSH_VECTOR);
            t.0.push((cpu, n));
        }
    }
    t
}

/// Frees the graveyard's frames whose flushes are done.
fn reap_grave() {
    let freed = crate::cpu::without_interrupts(|| {
        let Some(mut g) = GRAVE.try_lock() else { return alloc::vec::Vec::new() };
        let mut out = alloc::vec::Vec::new();
        g.retain_mut(|(t, frames)| {
            if t.done() {
                out.append(frames);
                false
            } else {
                true
            }
        });
        GRAVE_LEN.store(g.len(), Ordering::Relaxed);
        out
    });
    drop(freed);
}

/// Frees `frames` once `ticket` is done (at once if it is).
fn bury(ticket: FlushTicket, frames: alloc::vec::Vec<Remains>) {
    if GRAVE_LEN.load(Ordering::Relaxed) != 0 {
        reap_grave();
    }
    if ticket.done() || frames.is_empty() {
        drop(frames);
        return;
    }
    crate::cpu::without_interrupts(|| {
        let mut g = GRAVE.lock();
        g.push((ticket, frames));
        GRAVE_LEN.store(g.len(), Ordering::Relaxed);
    });
}

/// A user address space: its own top-level table whose upper half is the kernel's.
///
/// The owner serialises access (a process keeps it behind a lock).
#[derive(Debug)]
pub struct AddressSpace {
    /// `None`: a placeholder owning nothing ([`AddressSpace::new_empty`]).
    pml4: Option<Arc<Frame>>,
    pages: usize,
    /// Flushes other CPUs were asked for by rights reductions not yet waited for
    /// ([`AddressSpace::take_flush`]).
    pending: FlushTicket,
    /// Where leaves may be ([`Used`]): `duplicate` and the drop visit only these entries.
    used: Used,
}

/// The parts of a user half that may hold a mapping: per 2 MiB region (one page table), sorted
/// by address, a mask of its groups of eight leaf entries (32 KiB) in which a page has been
/// mapped. A superset, never missing one: every leaf is made by `map_zeroed` or `map_shared`
/// (both record its group) or by `duplicate` (whose child takes its parent's record), and every
/// table lies on the path to a leaf made by them (the mapper makes tables only to map a page;
/// `duplicate` only on the way to a present leaf). Unmapping clears nothing: a table the
/// mapper leaves behind must still be found and freed. So `duplicate` and the drop read only
/// the path to each region and its recorded groups, instead of every entry of every table
/// (issue 21: reading the empty entries of ~8 tables twice per fork was ~40 % of the kernel's
/// fork + exit).
#[derive(Clone, Debug, Default)]
struct Used(alloc::vec::Vec<(u64, u64)>);

impl Used {
    /// Records the group of the page at `va`.
    fn add(&mut self, va: u64) {
        let region = va >> 21;
        let bit = 1u64 << ((va >> 15) & 63);
        match self.0.binary_search_by_key(&region, |&(r, _)| r) {
            Ok(i) => self.0[i].1 |= bit,
            Err(i) => self.0.insert(i, (region, bit)),
        }
    }
}

fn user_flags(a: UserAccess) -> F {
    if !(a.read || a.write || a.exec) {
        // PROT_NONE: present (the frame stays this address space's) but not user-accessible.
        return F::PRESENT | if nx_supported() { F::NO_EXECUTE } else { F::empty() };
    }
    let mut f = F::PRESENT | F::USER_ACCESSIBLE;
    if a.write {
        f |= F::WRITABLE;
    }
    if !a.exec && nx_supported() {
        f |= F::NO_EXECUTE;
    }
    f
}

/// A page-aligned user address, or `Fault`.
fn user_page(va: u64) -> Result<u64, UserMemError> {
    if va % PAGE_SIZE != 0 || va >= USER_END {
        return Err(UserMemError::Fault);
    }
    Ok(va)
}

impl AddressSpace {
    /// An empty user half over the kernel's upper half.
    pub fn new() -> Result<AddressSpace, UserMemError> {
        let f = Frame::alloc().ok_or(UserMemError::NoMemory)?;
        // SAFETY: both are page-table frames reachable through the direct map; `f` is fresh
        // (ours alone). Copying the upper 256 entries shares the kernel's lower-level tables,
        // which is how every address space sees the same kernel (they are pre-created).
        unsafe {
            core::ptr::copy_nonoverlapping(
                (phys_to_virt(kernel_pml4()) as *const u64).add(256),
                (phys_to_virt(f.phys()) as *mut u64).add(256),
                256,
            );
        }
        Ok(AddressSpace { pml4: Some(Arc::new(f)), pages: 0, pending: FlushTicket::default(), used: Used::default() })
    }

    /// A placeholder that owns nothing (what a dead process keeps until it is reaped); its root
    /// is the kernel's.
    pub fn new_empty() -> AddressSpace {
        AddressSpace { pml4: None, pages: 0, pending: FlushTicket::default(), used: Used::default() }
    }

    /// Its page-table root, for CR3 (keeps the top-level table alive).
    pub fn root(&self) -> PageTableRoot {
        PageTableRoot(self.pml4.clone())
    }

    /// Makes this the active address space of this CPU.
    pub fn activate(&self) {
        activate_root(&PageTableRoot(self.pml4.clone()));
    }

    /// Pages mapped.
    pub fn pages(&self) -> usize {
        self.pages
    }

    fn with_mapper<R>(
        &mut self,
        f: impl FnOnce(&mut OffsetPageTable<'_>, &mut kmem::FrameAllocator<'static>) -> R,
    ) -> Result<R, UserMemError> {
        let pml4 = self.pml4.as_ref().ok_or(UserMemError::Fault)?.phys();
        with_frames(|frames| {
            // SAFETY: `pml4` is this address space's table, reachable through the direct map;
            // `&mut self` makes this the only software access to it while the mapper lives.
            let table = unsafe { &mut *(phys_to_virt(pml4) as *mut PageTable) };
            // SAFETY: the direct map covers every page-table frame.
            let mut m = unsafe { OffsetPageTable::new(table, VirtAddr::new(DIRECT_MAP_BASE)) };
            f(&mut m, frames)
        })
        .ok_or(UserMemError::NoMemory)
    }

    /// Maps a zeroed page at `va` (page aligned, user half) with `access`; if one is mapped
    /// already its rights are widened to include `access`. Returns its physical address.
    pub fn map_zeroed(&mut self, va: u64, access: UserAccess) -> Result<u64, UserMemError> {
        let va = user_page(va)?;
        if let Some((pa, old)) = self.lookup(va) {
            let merged =
                UserAccess { read: old.read || access.read, write: old.write || access.write, exec: old.exec || access.exec };
            if merged != old {
                self.protect(va, merged)?;
            }
            return Ok(pa);
        }
        let frame = Frame::alloc().ok_or(UserMemError::NoMemory)?;
        let pa = frame.phys();
        let flags = user_flags(access);
        // Before the mapper can make a table on the way to it.
        self.used.add(va);
        let r = self.with_mapper(|m, frames| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            let parents = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
            // SAFETY: maps a fresh, zeroed frame into the user half of this address space;
            // nothing else refers to that frame.
            unsafe {
                m.map_to_with_table_flags(page, PhysFrame::containing_address(PhysAddr::new(pa)), flags, parents, &mut Frames(frames))
            }
            .map(|f| f.flush())
            .map_err(|_| UserMemError::NoMemory)
        })?;
        r?;
        // The page tables own the frame now (given back by `unmap` or the drop).
        let _ = frame.into_raw();
        self.pages += 1;
        Ok(pa)
    }

    /// Changes the rights of the page at `va` (page aligned, user half, mapped).
    pub fn protect(&mut self, va: u64, access: UserAccess) -> Result<(), UserMemError> {
        let va = user_page(va)?;
        let old = self.lookup(va).map(|(_, a)| a);
        let mut flags = user_flags(access);
        let leaf = self.leaf(va).map_or(0, |e| e.0);
        if leaf & SHARED_BIT != 0 {
            flags |= F::BIT_9;
        }
        if leaf & COW_BIT != 0 {
            // Still shared with another address space: writable only once broken.
            flags.remove(F::WRITABLE);
            flags |= F::BIT_10;
            if access.write {
                flags |= F::BIT_11;
            }
        }
        self.with_mapper(|m, _| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            // SAFETY: changes the rights of a user page of this address space only (the shared
            // mark is kept, so the page is still released as shared).
            unsafe { m.update_flags(page, flags) }.map(|f| f.flush()).map_err(|_| UserMemError::Fault)
        })??;
        // Other CPUs running this address space may cache the old rights (a widening needs no
        // flush: a stale narrower entry faults, and a fault drops it).
        let widened = old.is_some_and(|o| (!o.read || access.read) && (!o.write || access.write) && (!o.exec || access.exec));
        if let Some(root) = &self.pml4
            && !widened
        {
            let t = request_flush(root);
            self.pending.merge(t);
        }
        Ok(())
    }

    /// The flushes unmaps and rights reductions asked other CPUs for, to wait for (without
    /// locks held) before telling the program the change is done.
    pub fn take_flush(&mut self) -> FlushTicket {
        core::mem::take(&mut self.pending)
    }

    /// The level-1 entry mapping `va`, if any.
    fn leaf(&self, va: u64) -> Option<Entry> {
        if va >= USER_END {
            return None;
        }
        let root = self.pml4.as_ref()?.phys();
        // SAFETY: `root` is this address space's live top-level table.
        let leaf = unsafe { walk::translate(root, va, |e| e.user()) }?;
        (leaf.level == 1).then_some(leaf.entry)
    }

    /// Whether the page at `va` is a shared page (mapped with [`AddressSpace::map_shared`]).
    pub fn is_shared(&self, va: u64) -> bool {
        self.leaf(va & !(PAGE_SIZE - 1)).is_some_and(|e| e.0 & SHARED_BIT != 0)
    }

    /// The frame of the page containing `va` and whether it is a shared page (one walk for
    /// [`lookup`](Self::lookup) and [`is_shared`](Self::is_shared) together: a futex's key).
    pub fn frame_and_shared(&self, va: u64) -> Option<(u64, bool)> {
        self.leaf(va & !(PAGE_SIZE - 1)).map(|e| (e.addr(), e.0 & SHARED_BIT != 0))
    }

    /// Maps shared page `page` at `va` (page aligned, user half, nothing mapped there) with
    /// `access`; the mapping holds its own count of the page until unmapped.
    pub fn map_shared(&mut self, va: u64, page: &SharedPage, access: UserAccess) -> Result<(), UserMemError> {
        let va = user_page(va)?;
        if self.lookup(va).is_some() {
            return Err(UserMemError::Fault);
        }
        let pa = page.phys();
        let flags = user_flags(access) | F::BIT_9;
        self.used.add(va);
        let r = self.with_mapper(|m, frames| {
            let p = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            let parents = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
            // SAFETY: maps a frame kept alive by its count (taken below, before anything can
            // unmap it) into the user half of this address space; only user pages point to it.
            unsafe { m.map_to_with_table_flags(p, PhysFrame::containing_address(PhysAddr::new(pa)), flags, parents, &mut Frames(frames)) }
                .map(|f| f.flush())
                .map_err(|_| UserMemError::NoMemory)
        })?;
        r?;
        shared::get(pa);
        self.pages += 1;
        Ok(())
    }

    /// Unmaps the page at `va` and frees its frame (no-op if nothing is mapped there, or if
    /// `va` is not a page-aligned user address).
    pub fn unmap(&mut self, va: u64) {
        let Ok(va) = user_page(va) else { return };
        let was_shared = self.leaf(va).is_some_and(|e| e.0 & (SHARED_BIT | COW_BIT) != 0);
        let freed = self.with_mapper(|m, _| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            m.unmap(page).ok().map(|(frame, flush)| {
                flush.flush();
                frame.start_address().as_u64()
            })
        });
        if let Ok(Some(pa)) = freed {
            self.pages -= 1;
            let remains = if was_shared {
                // SAFETY: the entry (one count of the shared or copy-on-write frame) is gone and
                // flushed on this CPU; the count moves to the handle.
                Remains::Shared(unsafe { shared::adopt(pa) })
            } else {
                // SAFETY: the frame was this user page's (given up in `map_zeroed`), now
                // unmapped and its TLB entry flushed on this CPU.
                Remains::Frame(unsafe { Frame::from_raw(pa) })
            };
            // Other CPUs that may cache it are asked to flush, and the frame (or the count of
            // a shared one) is given back only when they have (`bury`).
            let t = self.pml4.as_ref().map(request_flush).unwrap_or_default();
            self.pending.merge(t.clone());
            bury(t, alloc::vec![remains]);
        }
    }

    /// The frame and rights of the user page containing `va`.
    pub fn lookup(&self, va: u64) -> Option<(u64, UserAccess)> {
        if va >= USER_END {
            return None;
        }
        let root = self.pml4.as_ref()?.phys();
        // Tables above the leaf are always user-accessible; a leaf without the user bit is a
        // PROT_NONE page; user huge pages are never made.
        // SAFETY: `root` is this address space's live top-level table.
        let leaf = unsafe { walk::translate(root, va, |e| e.user()) }?;
        (leaf.level == 1).then(|| (leaf.entry.addr(), UserAccess::of_entry(leaf.entry)))
    }

    fn copy(&self, va: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize)) -> Result<(), UserMemError> {
        let end = va.checked_add(len as u64).ok_or(UserMemError::Fault)?;
        if end > USER_END {
            return Err(UserMemError::Fault);
        }
        // Within one page (most system-call arguments): one look-up checks and translates.
        if len > 0 && va & !(PAGE_SIZE - 1) == (end - 1) & !(PAGE_SIZE - 1) {
            return match self.lookup(va) {
                Some((pa, a)) if a.read && (a.write || !write) => {
                    f(pa + va % PAGE_SIZE, 0, len);
                    Ok(())
                }
                _ => Err(UserMemError::Fault),
            };
        }
        // Check everything first, so a failed copy changes nothing.
        let mut p = va & !(PAGE_SIZE - 1);
        while p < end {
            match self.lookup(p) {
                Some((_, a)) if a.read && (a.write || !write) => {}
                _ => return Err(UserMemError::Fault),
            }
            p += PAGE_SIZE;
        }
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let (pa, _) = self.lookup(cur).ok_or(UserMemError::Fault)?;
            let off = (cur % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(len - done);
            f(pa + off as u64, done, n);
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to user address `va` (the pages must be mapped writable).
    pub fn copy_to_user(&self, va: u64, data: &[u8]) -> Result<(), UserMemError> {
        self.copy(va, data.len(), true, |pa, at, n| {
            // SAFETY: `pa..pa+n` lies in one user frame of this address space (looked up just
            // now), reachable through the direct map; `data[at..at+n]` is in bounds.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(at), phys_to_virt(pa) as *mut u8, n) }
        })
    }

    /// Writes user memory regardless of the page's rights (the loader filling read-only code);
    /// a copy-on-write page gets its own copy first.
    pub fn fill(&mut self, va: u64, data: &[u8]) -> Result<(), UserMemError> {
        let end = va.checked_add(data.len() as u64).ok_or(UserMemError::Fault)?;
        let mut p = va & !(PAGE_SIZE - 1);
        while p < end && p < USER_END {
            self.break_cow(p, false)?;
            p += PAGE_SIZE;
        }
        self.copy(va, data.len(), false, |pa, at, n| {
            // SAFETY: as in `copy_to_user`.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(at), phys_to_virt(pa) as *mut u8, n) }
        })
    }

    /// Copies user memory at `va` into `buf`.
    pub fn copy_from_user(&self, va: u64, buf: &mut [u8]) -> Result<(), UserMemError> {
        let len = buf.len();
        let ptr = buf.as_mut_ptr();
        self.copy(va, len, false, |pa, at, n| {
            // SAFETY: as in `copy_to_user`, reading; `ptr[at..at+n]` is within `buf`.
            unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(pa) as *const u8, ptr.add(at), n) }
        })
    }

    /// Reads a u32 of user memory (futex words).
    pub fn read_u32(&self, va: u64) -> Result<u32, UserMemError> {
        let mut b = [0u8; 4];
        if va % 4 != 0 {
            return Err(UserMemError::Fault);
        }
        self.copy_from_user(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Atomically compares the u32 at user address `va` (4-byte aligned, in a page mapped
    /// readable and writable) with `old` and stores `new` if they are equal; returns the value
    /// found (PI futex words, which user threads on other CPUs change with atomic operations).
    pub fn cmpxchg_u32(&self, va: u64, old: u32, new: u32) -> Result<u32, UserMemError> {
        if va % 4 != 0 {
            return Err(UserMemError::Fault);
        }
        match self.lookup(va) {
            Some((pa, a)) if a.read && a.write => {
                let ptr = phys_to_virt(pa + va % PAGE_SIZE) as *mut u32;
                // SAFETY: `pa` is a user frame of this address space (looked up just now; the
                // owner serialises unmapping against this call), reachable through the direct map;
                // `ptr` is 4-byte aligned inside it. User code and the kernel access futex words
                // only with atomic operations or plain word-sized copies, which x86 keeps
                // coherent with this locked compare-exchange.
                let word = unsafe { core::sync::atomic::AtomicU32::from_ptr(ptr) };
                let order = core::sync::atomic::Ordering::SeqCst;
                Ok(match word.compare_exchange(old, new, order, order) {
                    Ok(v) | Err(v) => v,
                })
            }
            _ => Err(UserMemError::Fault),
        }
    }

    /// Every mapped user page: (virtual address, physical address, rights), in address order.
    pub fn pages_iter(&self) -> alloc::vec::Vec<(u64, u64, UserAccess)> {
        let mut out = alloc::vec::Vec::new();
        if let Some(f) = &self.pml4 {
            // SAFETY: this address space's live top-level table; the visitor only collects.
            unsafe {
                walk::for_each(f.phys(), 4, 0, 0..256, &|e| e.user(), &mut |va, level, e| {
                    if level == 1 {
                        out.push((va, e.addr(), UserAccess::of_entry(e)));
                    }
                })
            };
        }
        out
    }

    /// A copy of this address space for `fork`: shared pages stay shared, private pages become
    /// copy-on-write in both (see "Copy-on-write" above). Other CPUs running this address space
    /// may still cache writable entries: wait for [`take_flush`](Self::take_flush) before the
    /// fork is done.
    pub fn duplicate(&mut self) -> Result<AddressSpace, UserMemError> {
        let mut child = AddressSpace::new()?;
        let (Some(src), Some(dst)) = (self.pml4.as_ref().map(|f| f.phys()), child.pml4.as_ref().map(|f| f.phys())) else {
            return Ok(child);
        };
        let mut narrowed = false;
        // Every table the child gets lies on the way to one of our recorded groups.
        child.used = self.used.clone();
        // SAFETY: `src` is our live top-level table (`&mut self`: nothing else changes it),
        // `dst` the child's fresh one (its user half empty, ours alone).
        let r = unsafe { dup_used(src, dst, &self.used, &mut child.pages, &mut narrowed) };
        debug_assert!(r.is_err() || child.pages == self.pages, "a mapped page outside the used record");
        if narrowed {
            // Writable leaves turned read-only: this CPU and the others drop their entries.
            if Cr3::read().0.start_address().as_u64() == src {
                x86_64::instructions::tlb::flush_all();
            }
            if let Some(root) = &self.pml4 {
                let t = request_flush(root);
                self.pending.merge(t);
            }
        }
        r.map(|()| child)
    }

    /// Gives the copy-on-write page at `va` (page aligned, user half) its own frame, writable
    /// if its rights include writing; returns whether it did. `for_write`: only if the page may
    /// be written (a write fault; otherwise the fault is real). Other CPUs may cache the old
    /// entry: wait for [`take_flush`](Self::take_flush) before the program goes on.
    pub fn break_cow(&mut self, va: u64, for_write: bool) -> Result<bool, UserMemError> {
        let va = user_page(va)?;
        let Some(e) = self.leaf(va) else { return Ok(false) };
        let writable = e.0 & COW_WRITE_BIT != 0;
        if e.0 & COW_BIT == 0 || (for_write && !writable) {
            return Ok(false);
        }
        let mut flags = F::from_bits_truncate(e.0);
        flags.remove(F::BIT_10 | F::BIT_11);
        if writable {
            flags |= F::WRITABLE;
        }
        let old = e.addr();
        if shared::uncount_if_sole(old) {
            // Nobody else maps it: the frame is this entry's again (no CPU caches more rights
            // than before, so no flush).
            self.set_leaf_flags(va, flags)?;
            return Ok(true);
        }
        let new = Frame::alloc_unzeroed().ok_or(UserMemError::NoMemory)?;
        // SAFETY: `old` is a counted frame this entry maps (alive while counted), `new` is ours
        // alone; both are reachable through the direct map, and `new` is overwritten whole
        // before it is mapped.
        unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(old) as *const u8, phys_to_virt(new.phys()) as *mut u8, PAGE_SIZE as usize) };
        let npa = new.phys();
        let r = self.with_mapper(|m, frames| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            let parents = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
            let (_, flush) = m.unmap(page).map_err(|_| UserMemError::Fault)?;
            flush.flush();
            // SAFETY: maps the fresh frame, now holding the page's bytes, in place of the
            // shared one in the user half of this address space; nothing else refers to it.
            unsafe { m.map_to_with_table_flags(page, PhysFrame::containing_address(PhysAddr::new(npa)), flags, parents, &mut Frames(frames)) }
                .map(|f| f.flush())
                .map_err(|_| UserMemError::NoMemory)
        })?;
        // The table owned no fresh table frame for this (the page's table exists), so the map
        // cannot fail after the unmap; if it did, the page would be gone (a later fault).
        r?;
        let _ = new.into_raw();
        // SAFETY: the entry that held one count of `old` is gone and flushed on this CPU.
        let remains = Remains::Shared(unsafe { shared::adopt(old) });
        let t = self.pml4.as_ref().map(request_flush).unwrap_or_default();
        self.pending.merge(t.clone());
        bury(t, alloc::vec![remains]);
        Ok(true)
    }

    /// Sets the flags of the present leaf at `va` (the frame stays).
    fn set_leaf_flags(&mut self, va: u64, flags: F) -> Result<(), UserMemError> {
        self.with_mapper(|m, _| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            // SAFETY: changes the flags of a user page of this address space only; callers keep
            // the shared and copy-on-write marks consistent with the frame's count.
            unsafe { m.update_flags(page, flags) }.map(|f| f.flush()).map_err(|_| UserMemError::Fault)
        })?
    }
}

/// Bits 12..52 of an entry: the frame it points to.
const ENTRY_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Entry `i` of the child's table `dst`, the counterpart of the parent's present non-leaf entry
/// `e`: the table it points to, made (zeroed, with `e`'s flags) if it is not there yet.
///
/// # Safety
/// `dst` is a live table of the child's fresh hierarchy, which the caller owns.
unsafe fn child_table(dst: u64, i: u64, e: Entry) -> Result<u64, UserMemError> {
    // SAFETY: `dst` is a live table (the contract).
    let d = unsafe { walk::read(dst, i) };
    if d.present() {
        return Ok(d.addr());
    }
    let t = Frame::alloc().ok_or(UserMemError::NoMemory)?.into_raw();
    // SAFETY: the child's table (the contract); the entry now owns the fresh, zeroed table
    // `t`, linked before it is filled so a failure later leaves every frame reachable from the
    // child's root (its drop frees them).
    unsafe { walk::write(dst, i, Entry((e.0 & !ENTRY_ADDR) | t)) };
    Ok(t)
}

/// The parent's page table of 2 MiB region `region` (`va >> 21`) and the entries on the way to
/// it, if all are present tables: (PML4 entry, PDPT entry, PD entry).
///
/// # Safety
/// `root` is a live top-level table whose hierarchy the caller owns.
unsafe fn region_path(root: u64, region: u64) -> Option<[Entry; 3]> {
    let (i4, i3, i2) = ((region >> 18) & 511, (region >> 9) & 511, region & 511);
    // SAFETY: `root` is live (the contract); each next table comes from a present non-huge
    // entry of the one above.
    let e4 = unsafe { walk::read(root, i4) };
    if !e4.present() {
        return None;
    }
    // SAFETY: as above.
    let e3 = unsafe { walk::read(e4.addr(), i3) };
    if !e3.present() || e3.huge() {
        return None;
    }
    // SAFETY: as above.
    let e2 = unsafe { walk::read(e3.addr(), i2) };
    if !e2.present() || e2.huge() {
        return None;
    }
    Some([e4, e3, e2])
}

/// `duplicate` of the recorded parts of a user half ([`Used`]): the tables on the way to each
/// region are made for the child (each once), and the leaves of each recorded group are
/// shared ([`dup_leaves`]).
///
/// # Safety
/// `src` is a live top-level table in a hierarchy the caller owns exclusively, whose leaves all
/// lie in `used`; `dst` is the top-level table of a fresh hierarchy the caller owns, its user
/// half empty.
unsafe fn dup_used(src: u64, dst: u64, used: &Used, pages: &mut usize, narrowed: &mut bool) -> Result<(), UserMemError> {
    for &(region, mask) in &used.0 {
        // SAFETY: `src` as the contract says.
        let Some([e4, e3, e2]) = (unsafe { region_path(src, region) }) else { continue };
        let (i4, i3, i2) = ((region >> 18) & 511, (region >> 9) & 511, region & 511);
        // SAFETY: `dst` and the tables below it are the child's (the contract), made here.
        let pt = unsafe {
            let pdpt = child_table(dst, i4, e4)?;
            let pd = child_table(pdpt, i3, e3)?;
            child_table(pd, i2, e2)?
        };
        let mut m = mask;
        while m != 0 {
            let g = u64::from(m.trailing_zeros());
            m &= m - 1;
            // SAFETY: `e2` points to the parent's live page table, `pt` is the child's.
            unsafe { dup_leaves(e2.addr(), pt, g * 8..g * 8 + 8, pages, narrowed) };
        }
    }
    Ok(())
}

/// `duplicate` of entries `idx` of a page table: each leaf is copied to `dst` and turned
/// copy-on-write in both (private ones: read-only with the rights kept in `COW_WRITE_BIT`,
/// counted twice; shared and copy-on-write ones: one more count).
///
/// # Safety
/// `src` is a live page table of a hierarchy the caller owns exclusively, `dst` the child's
/// (fresh, the caller's), empty in `idx`; `idx` within 0..512.
unsafe fn dup_leaves(src: u64, dst: u64, idx: core::ops::Range<u64>, pages: &mut usize, narrowed: &mut bool) {
    for i in idx {
        // SAFETY: `src` is a live page table (the contract), `i < 512`.
        let e = unsafe { walk::read(src, i) };
        if e.present() {
            let mut v = e.0;
            if v & (SHARED_BIT | COW_BIT) == 0 {
                let w = e.writable();
                v = (v & !F::WRITABLE.bits()) | COW_BIT | if w { COW_WRITE_BIT } else { 0 };
                // SAFETY: the parent's leaf keeps its frame; only its rights narrow (the caller
                // flushes), and the frame is counted just below.
                unsafe { walk::write(src, i, Entry(v)) };
                *narrowed |= w;
                // Not counted before (no mark): the parent's entry and the child's.
                shared::count(e.addr()).store(2, core::sync::atomic::Ordering::Release);
            } else {
                shared::get(e.addr());
            }
            // SAFETY: the child's fresh table; the leaf holds the count taken above.
            unsafe { walk::write(dst, i, Entry(v)) };
            *pages += 1;
        }
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        let Some(root) = self.pml4.take() else { return };
        let pml4 = root.phys();
        // Leave it first if it is active on this CPU.
        if Cr3::read().0.start_address().as_u64() == pml4 {
            activate_root(&kernel_root());
        }
        // Only the user half (entries 0..256) belongs to this address space, and only the paths
        // to the recorded regions ([`Used`]) hold tables. The top-level entries are read, then
        // cleared first, so a `PageTableRoot` that outlives us names a hierarchy without them.
        let mut top = [Entry(0); 256];
        let mut last = None;
        for &(region, _) in &self.used.0 {
            let i4 = (region >> 18) & 511;
            if last != Some(i4) {
                last = Some(i4);
                // SAFETY: `pml4` is our live top-level table; we own its user half (`&mut self`).
                unsafe {
                    top[i4 as usize] = walk::read(pml4, i4);
                    walk::write(pml4, i4, Entry(0));
                }
            }
        }
        if cfg!(debug_assertions) {
            // SAFETY: as above (reads only).
            debug_assert!((0..256).all(|i| !unsafe { walk::read(pml4, i) }.present()), "a user table outside the used record");
        }
        // Other CPUs that still have it loaded may cache translations (and table entries)
        // into what is freed below: those frames wait for their flushes.
        let ticket = request_flush(&root);
        let mut frames = alloc::vec::Vec::with_capacity(self.pages + 8);
        let mut leaves = 0;
        // The tables freed last: a PDPT or PD is freed when the walk leaves it (the regions
        // are in address order, so every region under one table comes in one run).
        let (mut pdpt, mut pd) = (None::<(u64, u64)>, None::<(u64, u64)>);
        for &(region, mask) in &self.used.0 {
            let (i4, i3) = ((region >> 18) & 511, (region >> 9) & 511);
            let e4 = top[i4 as usize];
            if !e4.present() {
                continue;
            }
            // SAFETY: every frame read and given back below was given to the tables by
            // `map_zeroed`, the mapper or `duplicate` (from the allocator), is now unreachable
            // from any root (the top-level entries are cleared) and is referenced by nothing
            // else; each table is on the path to exactly the regions under it and each region
            // is recorded once, so each is taken back exactly once — except leaves marked
            // shared (`map_shared`) or copy-on-write (`duplicate`), each of which holds one
            // count of its frame, given back exactly once here. Both wait for the flushes of
            // CPUs that may cache them (`bury`).
            unsafe {
                if pdpt.is_some_and(|(i, _)| i != i4) {
                    if let Some((_, t)) = pd.take() {
                        frames.push(Remains::Frame(Frame::from_raw(t)));
                    }
                    if let Some((_, t)) = pdpt.take() {
                        frames.push(Remains::Frame(Frame::from_raw(t)));
                    }
                }
                pdpt = Some((i4, e4.addr()));
                let e3 = walk::read(e4.addr(), i3);
                if !e3.present() || e3.huge() {
                    continue;
                }
                let pd_key = (i4 << 9) | i3;
                if pd.is_some_and(|(k, _)| k != pd_key)
                    && let Some((_, t)) = pd.take()
                {
                    frames.push(Remains::Frame(Frame::from_raw(t)));
                }
                pd = Some((pd_key, e3.addr()));
                let e2 = walk::read(e3.addr(), region & 511);
                if !e2.present() || e2.huge() {
                    continue;
                }
                let pt = e2.addr();
                let mut m = mask;
                while m != 0 {
                    let g = u64::from(m.trailing_zeros());
                    m &= m - 1;
                    for i in g * 8..g * 8 + 8 {
                        let e = walk::read(pt, i);
                        if !e.present() {
                            continue;
                        }
                        leaves += 1;
                        if e.0 & (SHARED_BIT | COW_BIT) != 0 {
                            // A shared or copy-on-write page: this entry's count goes (the
                            // frame may live on).
                            frames.push(Remains::Shared(shared::adopt(e.addr())));
                        } else {
                            frames.push(Remains::Frame(Frame::from_raw(e.addr())));
                        }
                    }
                }
                frames.push(Remains::Frame(Frame::from_raw(pt)));
            }
        }
        // SAFETY: as above: the last PD and PDPT, each taken back once.
        unsafe {
            if let Some((_, t)) = pd {
                frames.push(Remains::Frame(Frame::from_raw(t)));
            }
            if let Some((_, t)) = pdpt {
                frames.push(Remains::Frame(Frame::from_raw(t)));
            }
        }
        debug_assert_eq!(leaves, self.pages, "a mapped page outside the used record");
        bury(ticket, frames);
        // `root` (the top-level frame) is freed when the last `PageTableRoot` goes.
        drop(root);
    }
}
