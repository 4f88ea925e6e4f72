//! A process's user memory (issue 22 item 3): the heap (`brk`), `mmap` (anonymous, and
//! private copies of files), `munmap`, `mprotect`, `mremap`, and anonymous memory on demand.
//!
//! Every mapping is an area of the process's [`vmmap::VmMap`]. Anonymous areas (and the main
//! thread's stack, which grows on demand up to RLIMIT_STACK) are *lazy*: no page is made or
//! zeroed when they are created; the page-fault handler ([`fault_in`]) maps a zeroed page at
//! the first touch, and the kernel's own copies to and from user memory do the same first
//! ([`prefault`]). `munmap` takes the range out of the map, so `mmap` reuses it.
//!
//! Shared memory (`MAP_SHARED`, anonymous or of an in-memory file; System V segments): the
//! area names a [`crate::shm::ShmObject`] (`vmmap::Backing`) that the process keeps in
//! [`Mem::objects`] while an area uses it; a first touch maps the object's own page
//! (`AddressSpace::map_shared`), so every process mapping it sees one set of frames, and `fork`
//! keeps them shared (hal's `duplicate` maps the same frames in the child; not-yet-touched pages
//! are found through the child's copy of the areas). `mremap` of a shared area moves the area,
//! not the bytes.
//!
//! `fork` copies nothing: hal's `duplicate` makes every private page copy-on-write in parent and
//! child (read-only for the hardware, the frame counted once per mapping, the page's rights
//! kept in the leaf). A write fault on such a page whose rights include writing, or a kernel
//! copy into it ([`prefault`] with `write`), gets the page its own frame (`AddressSpace::break_cow`; in place when no other
//! mapping is left). If no frame is left for that copy, the writer is killed "out of memory",
//! as at any first touch.
//!
//! Commitment: a new anonymous mapping (or heap growth) is refused with ENOMEM when it is
//! larger than the free memory, or when the process's committed anonymous bytes would exceed
//! the machine's memory or RLIMIT_DATA (Linux's heuristic overcommit, simplified). A page that
//! cannot be had at first touch all the same kills the process ("out of memory").
use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use hal::mm::{PAGE_SIZE, UserAccess, UserMemError};
use linux_raw_sys::errno::*;
use vmmap::{Backing, EXEC, READ, VmMap, WRITE};

use crate::shm::ShmObject;

use crate::process::Process;
use crate::syscall::Errno;

/// Where `mmap` places mappings without an address: top-down from here (far below the stack's
/// largest size, so the stack's guard zone stays free).
pub const MMAP_TOP: u64 = 0x0000_7f00_0000_0000;
/// ... and not below this much above the heap's start (room for `brk`).
const HEAP_ROOM: u64 = 1 << 30;

pub struct Mem {
    pub space: hal::mm::AddressSpace,
    pub brk_start: u64,
    pub brk: u64,
    /// Reserved areas (mappings, the main stack).
    pub vm: VmMap,
    /// Anonymous bytes promised (heap and anonymous mappings).
    pub committed: u64,
    /// The lowest address of the main thread's stack area.
    pub stack_bottom: u64,
    /// The shared memory objects areas use (by id).
    pub objects: BTreeMap<u64, Arc<ShmObject>>,
}

impl Mem {
    pub fn new(space: hal::mm::AddressSpace, brk: u64, stack_bottom: u64, stack_top: u64) -> Mem {
        let mut vm = VmMap::new();
        vm.insert(stack_bottom, stack_top, READ | WRITE, true);
        Mem { space, brk_start: brk, brk, vm, committed: 0, stack_bottom, objects: BTreeMap::new() }
    }

    /// A copy for `fork` (the pages are copied by the caller).
    pub fn fork(&self, space: hal::mm::AddressSpace) -> Mem {
        Mem {
            space,
            brk_start: self.brk_start,
            brk: self.brk,
            vm: self.vm.clone(),
            committed: self.committed,
            stack_bottom: self.stack_bottom,
            objects: self.objects.clone(),
        }
    }
}

fn access(prot: u8) -> UserAccess {
    if prot & (READ | WRITE | EXEC) == 0 { UserAccess::NONE } else { UserAccess::readable(prot & WRITE != 0, prot & EXEC != 0) }
}

/// `PROT_*` bits as area rights.
pub fn prot_bits(prot: u64) -> u8 {
    use linux_raw_sys::general::{PROT_EXEC, PROT_READ, PROT_WRITE};
    let mut b = 0;
    if prot & u64::from(PROT_READ) != 0 {
        b |= READ;
    }
    if prot & u64::from(PROT_WRITE) != 0 {
        b |= WRITE | READ;
    }
    if prot & u64::from(PROT_EXEC) != 0 {
        b |= EXEC | READ;
    }
    b
}

/// Whether `more` anonymous bytes may be promised to a process that has `committed` and the
/// data limit `limit`.
fn can_commit(committed: u64, more: u64, limit: u64) -> bool {
    let (free, total) = hal::mm::frame_counts();
    more <= free as u64 * PAGE_SIZE && committed.saturating_add(more) <= (total as u64 * PAGE_SIZE).min(limit)
}

/// What the page-fault handler did with a user fault.
pub enum Fault {
    /// A page of a lazy area was made: resume the program.
    Mapped,
    /// Not a first touch of memory the program may use: a real fault.
    NotOurs,
    /// There was no memory for the page.
    NoMemory,
}

/// A user page fault at `addr` with error code `err` (x86: bit 0 present, 1 write, 4 fetch).
pub fn fault_in(p: &Process, addr: u64, err: u64) -> Fault {
    let mut m = p.mem.lock();
    let r = touch(&mut m, addr, err & 2 != 0, err & 0x10 != 0, err & 1 != 0);
    // A broken copy-on-write page: other CPUs running this process drop the old entry before
    // the write goes on (waited for without the lock).
    let t = m.space.take_flush();
    drop(m);
    t.wait();
    match r {
        Ok(true) => Fault::Mapped,
        Ok(false) => Fault::NotOurs,
        Err(()) => Fault::NoMemory,
    }
}

/// Maps the page at `addr` if it is the first touch of a lazy area that allows the access.
fn touch(m: &mut Mem, addr: u64, write: bool, exec: bool, present: bool) -> Result<bool, ()> {
    // The page already allows the access: another thread (on another CPU) made it first, or
    // this CPU's TLB held older rights. The fault dropped the stale entry; the access retries.
    if let Some((_, acc)) = m.space.lookup(addr & !(PAGE_SIZE - 1))
        && acc.read
        && (!write || acc.write)
        && (!exec || acc.exec)
    {
        return Ok(true);
    }
    // A write to a page shared copy-on-write since a fork whose rights include writing: the
    // page gets its own frame (hal's `break_cow`; the leaf keeps the rights, which `mprotect`
    // sets, so pages outside any area — the program's segments — work the same).
    if write && present {
        match m.space.break_cow(addr & !(PAGE_SIZE - 1), true) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(UserMemError::NoMemory) => return Err(()),
            Err(UserMemError::Fault) => return Ok(false),
        }
    }
    let Some((start, a)) = m.vm.find(addr) else { return Ok(false) };
    if !a.lazy || present || a.prot & READ == 0 || (write && a.prot & WRITE == 0) || (exec && a.prot & EXEC == 0) {
        return Ok(false);
    }
    let page = addr & !(PAGE_SIZE - 1);
    if m.space.lookup(page).is_some() {
        return Ok(false);
    }
    if let Some(b) = a.backing {
        let Some(obj) = m.objects.get(&b.id) else { return Ok(false) };
        let Ok(sp) = obj.page((b.off + (page - start)) / PAGE_SIZE) else { return Err(()) };
        return match m.space.map_shared(page, &sp, access(a.prot)) {
            Ok(()) => Ok(true),
            Err(UserMemError::NoMemory) => Err(()),
            Err(UserMemError::Fault) => Ok(false),
        };
    }
    match m.space.map_zeroed(page, access(a.prot)) {
        Ok(_) => Ok(true),
        Err(UserMemError::NoMemory) => Err(()),
        Err(UserMemError::Fault) => Ok(false),
    }
}

/// Before the kernel copies to (`write`) or from user memory: makes the not-yet-touched pages
/// of lazy areas in `[addr, addr + len)` (the copy then fails with EFAULT where the program
/// itself would fault).
pub fn prefault(m: &mut Mem, addr: u64, len: u64, write: bool) {
    let Some(end) = addr.checked_add(len) else { return };
    if end > hal::mm::USER_END {
        return; // the copy fails with EFAULT
    }
    let mut page = addr & !(PAGE_SIZE - 1);
    while page < end {
        let r = match m.space.lookup(page) {
            None => touch(m, page, write, false, false),
            // Read-only now, writable by its area: copy-on-write is broken as a fault would.
            Some((_, a)) if write && !a.write => touch(m, page, true, false, true),
            Some(_) => Ok(true),
        };
        if r.is_err() {
            return;
        }
        page += PAGE_SIZE;
    }
}

/// mlock: makes every page of `[addr, addr + len)` present now (ENOMEM if part of it is not
/// mapped or no memory is left). Nothing is ever paged out here, so a present page stays
/// present: locking is populating; munlock has nothing to undo.
pub fn populate(p: &Process, addr: u64, len: u64) -> Result<(), Errno> {
    let start = addr & !(PAGE_SIZE - 1);
    let end = addr.checked_add(len).and_then(|e| e.checked_next_multiple_of(PAGE_SIZE)).ok_or(ENOMEM)?;
    let mut m = p.mem.lock();
    if start == end {
        return Ok(());
    }
    if end > hal::mm::USER_END || !m.vm.covered(start, end) {
        return Err(ENOMEM);
    }
    let mut page = start;
    while page < end {
        if m.space.lookup(page).is_none() && touch(&mut m, page, false, false, false).is_err() {
            return Err(ENOMEM);
        }
        page += PAGE_SIZE;
    }
    Ok(())
}

/// mlockall(MCL_CURRENT): [`populate`]s every mapped area but the main stack's reservation
/// (its used pages are present already; it grows on demand as Linux's locked stack does).
pub fn populate_all(p: &Process) -> Result<(), Errno> {
    let areas: alloc::vec::Vec<(u64, u64)> = {
        let m = p.mem.lock();
        m.vm.iter().filter(|(s, a)| !(a.lazy && *s >= m.stack_bottom && a.end <= crate::process::STACK_TOP)).map(|(s, a)| (s, a.end)).collect()
    };
    for (s, e) in areas {
        populate(p, s, e - s)?;
    }
    Ok(())
}

fn unmap_pages(m: &mut Mem, start: u64, end: u64) {
    let mut va = start;
    while va < end {
        m.space.unmap(va);
        va += PAGE_SIZE;
    }
}

/// Takes `[start, end)` out of the map and the page tables; gives back its commitment.
fn remove_range(m: &mut Mem, start: u64, end: u64) {
    for (s, e, a) in m.vm.remove(start, end) {
        unmap_pages(m, s, e);
        if a.lazy && s >= m.stack_bottom && e <= crate::process::STACK_TOP {
            continue; // the stack area is not counted
        }
        m.committed = m.committed.saturating_sub(e - s);
        if let Some(b) = a.backing
            && !m.vm.uses(b.id)
        {
            m.objects.remove(&b.id);
        }
    }
}

fn check_range(addr: u64, len: u64) -> Result<u64, Errno> {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(EINVAL);
    }
    let end = addr.checked_add(len.checked_next_multiple_of(PAGE_SIZE).ok_or(ENOMEM)?).ok_or(ENOMEM)?;
    if end > hal::mm::USER_END {
        return Err(ENOMEM);
    }
    Ok(end)
}

/// brk: grows or shrinks the heap (eagerly mapped pages); returns the new break (the old one
/// when refused).
pub fn brk(p: &Process, new: u64) -> u64 {
    let r = brk_locked(p, new);
    flushed(p);
    r
}

fn brk_locked(p: &Process, new: u64) -> u64 {
    let limit = p.data_limit.load(core::sync::atomic::Ordering::Relaxed);
    let mut m = p.mem.lock();
    if new == 0 || new < m.brk_start {
        return m.brk;
    }
    let old_end = m.brk.next_multiple_of(PAGE_SIZE);
    let Some(new_end) = new.checked_next_multiple_of(PAGE_SIZE) else { return m.brk };
    if new_end > old_end {
        let more = new_end - old_end;
        if m.vm.overlaps(old_end, new_end) || new_end > MMAP_TOP || !can_commit(m.committed, more, limit) {
            return m.brk;
        }
        let mut va = old_end;
        while va < new_end {
            if m.space.map_zeroed(va, UserAccess::readable(true, false)).is_err() {
                unmap_pages(&mut m, old_end, va);
                return m.brk;
            }
            va += PAGE_SIZE;
        }
        m.committed += more;
    } else {
        unmap_pages(&mut m, new_end, old_end);
        m.committed = m.committed.saturating_sub(old_end - new_end);
    }
    m.brk = new;
    m.brk
}

/// What a new mapping holds.
pub enum Source<'a> {
    /// Zeroes (private, or shared across fork with MAP_SHARED).
    Anonymous,
    /// A private copy of these bytes of a file (zeroes beyond).
    Copy(&'a [u8]),
    /// Shared memory: the object's bytes from this offset.
    Shared(Arc<ShmObject>, u64),
}

/// mmap: anonymous memory (on demand; MAP_SHARED makes a shared object the children of a
/// fork share), a private copy of a file's bytes, or a shared mapping of an object.
pub fn mmap(p: &Process, addr: u64, len: u64, prot: u64, flags: u32, src: Source<'_>) -> Result<u64, Errno> {
    use linux_raw_sys::general::{MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE};
    if len == 0 {
        return Err(EINVAL);
    }
    // The mapping type is the two low bits (MAP_SHARED_VALIDATE is both).
    let shared = match flags & 3 {
        MAP_PRIVATE => false,
        MAP_SHARED | MAP_SHARED_VALIDATE => true,
        _ => return Err(EINVAL),
    };
    let bits = prot_bits(prot);
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(ENOMEM)?;
    let src = match src {
        Source::Anonymous if shared && flags & MAP_ANONYMOUS != 0 => Source::Shared(ShmObject::new(false, len), 0),
        s => s,
    };
    let limit = p.data_limit.load(core::sync::atomic::Ordering::Relaxed);
    let mut m = p.mem.lock();
    let base = place(&m, addr, len, flags & (MAP_FIXED | MAP_FIXED_NOREPLACE), flags & MAP_FIXED_NOREPLACE != 0)?;
    if !can_commit(m.committed, len, limit) {
        return Err(ENOMEM);
    }
    remove_range(&mut m, base, base + len);
    let backing = match &src {
        Source::Shared(obj, off) => {
            m.objects.insert(obj.id, obj.clone());
            Some(Backing { id: obj.id, off: *off })
        }
        _ => None,
    };
    m.vm.insert_backed(base, base + len, bits, true, backing);
    m.committed += len;
    if let Source::Copy(data) = src {
        // A private copy: the pages holding file bytes now, the rest (to the end of the last
        // page and beyond the file) zero on demand.
        let n = (data.len() as u64).min(len);
        let mut va = base;
        while va < base + n {
            let r = m.space.map_zeroed(va, UserAccess::readable(true, false)).and_then(|_| {
                let off = (va - base) as usize;
                m.space.fill(va, &data[off..(off + PAGE_SIZE as usize).min(n as usize)])
            });
            let r = r.and_then(|_| m.space.protect(va, access(bits)));
            if r.is_err() {
                remove_range(&mut m, base, base + len);
                return Err(ENOMEM);
            }
            va += PAGE_SIZE;
        }
    }
    Ok(base)
}

/// Where a new mapping of `len` bytes goes: `addr` itself when `fixed` (EEXIST if taken and
/// `noreplace`), else the hint if free, else the highest gap.
pub fn place(m: &Mem, addr: u64, len: u64, fixed: u32, noreplace: bool) -> Result<u64, Errno> {
    if fixed != 0 {
        let end = check_range(addr, len)?;
        if noreplace && m.vm.overlaps(addr, end) {
            return Err(EEXIST);
        }
        return Ok(addr);
    }
    let hint = addr & !(PAGE_SIZE - 1);
    let lowest = m.brk_start.saturating_add(HEAP_ROOM);
    match hint.checked_add(len) {
        Some(e) if hint >= lowest && e <= MMAP_TOP && !m.vm.overlaps(hint, e) => Ok(hint),
        _ => m.vm.find_gap(len, lowest, MMAP_TOP).ok_or(ENOMEM),
    }
}

/// msync: the range must be mapped (ENOMEM) and page aligned (EINVAL). Shared mappings are
/// the object's own pages, so there is nothing to write back.
pub fn msync(p: &Process, addr: u64, len: u64, flags: u64) -> Result<(), Errno> {
    const MS_ASYNC: u64 = 1;
    const MS_INVALIDATE: u64 = 2;
    const MS_SYNC: u64 = 4;
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 || flags & (MS_ASYNC | MS_SYNC) == (MS_ASYNC | MS_SYNC) {
        return Err(EINVAL);
    }
    let end = check_range(addr, len)?;
    let m = p.mem.lock();
    if m.vm.covered(addr, end) { Ok(()) } else { Err(ENOMEM) }
}

/// Removes the whole area that starts at `addr` if it is backed by shared memory (shmdt):
/// returns the object it used.
pub fn unmap_object_at(p: &Process, addr: u64) -> Option<Arc<ShmObject>> {
    let mut m = p.mem.lock();
    let (start, a) = m.vm.find(addr)?;
    let b = a.backing?;
    if start != addr || b.off != 0 {
        return None;
    }
    let obj = m.objects.get(&b.id)?.clone();
    // The segment's whole length (areas of it split by mprotect go too).
    let end = addr + obj.len().next_multiple_of(PAGE_SIZE);
    let mut at = addr;
    while let Some((s, a2)) = m.vm.find(at) {
        if at >= end || a2.backing.is_none_or(|x| x.id != b.id || x.off != at - addr) {
            break;
        }
        let e = a2.end;
        remove_range(&mut m, s, e);
        at = e;
    }
    Some(obj)
}

pub fn munmap(p: &Process, addr: u64, len: u64) -> Result<(), Errno> {
    if len == 0 {
        return Err(EINVAL);
    }
    let end = check_range(addr, len).map_err(|_| EINVAL)?;
    remove_range(&mut p.mem.lock(), addr, end);
    flushed(p);
    Ok(())
}

/// Waits until every other CPU running the process's threads has dropped the translations the
/// call removed or narrowed (without the lock: a CPU spinning on it could not answer), so no
/// thread can reach an unmapped page once the call returns.
fn flushed(p: &Process) {
    let t = p.mem.lock().space.take_flush();
    t.wait();
}

pub fn mprotect(p: &Process, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let r = mprotect_locked(p, addr, len, prot);
    flushed(p);
    r
}

fn mprotect_locked(p: &Process, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let end = check_range(addr, len).map_err(|e| if e == ENOMEM { ENOMEM } else { EINVAL })?;
    let bits = prot_bits(prot);
    let mut m = p.mem.lock();
    let in_areas = m.vm.covered(addr, end);
    if in_areas {
        m.vm.protect(addr, end, bits);
    }
    // Pages made already (areas' touched pages, the program's own segments, the heap).
    let mut va = addr;
    let mut any = false;
    while va < end {
        if m.space.lookup(va).is_some() {
            any = true;
            m.space.protect(va, access(bits)).map_err(|_| ENOMEM)?;
        }
        va += PAGE_SIZE;
    }
    if in_areas || any { Ok(()) } else { Err(ENOMEM) }
}

/// mremap: shrinks, grows in place, or (MREMAP_MAYMOVE) moves a mapping, copying the pages it
/// has made. MREMAP_FIXED and MREMAP_DONTUNMAP are not supported yet (EINVAL).
pub fn mremap(p: &Process, old: u64, old_len: u64, new_len: u64, flags: u64) -> Result<u64, Errno> {
    let r = mremap_locked(p, old, old_len, new_len, flags);
    flushed(p);
    r
}

fn mremap_locked(p: &Process, old: u64, old_len: u64, new_len: u64, flags: u64) -> Result<u64, Errno> {
    const MAYMOVE: u64 = 1;
    if flags & !MAYMOVE != 0 || new_len == 0 {
        return Err(EINVAL);
    }
    let old_end = check_range(old, old_len.max(1))?;
    let new_len = new_len.checked_next_multiple_of(PAGE_SIZE).ok_or(ENOMEM)?;
    let limit = p.data_limit.load(core::sync::atomic::Ordering::Relaxed);
    let mut m = p.mem.lock();
    let Some((_, area)) = m.vm.find(old) else { return Err(EFAULT) };
    if !m.vm.covered(old, old_end) {
        return Err(EFAULT);
    }
    let old_len = old_end - old;
    if new_len <= old_len {
        remove_range(&mut m, old + new_len, old_end);
        return Ok(old);
    }
    let more = new_len - old_len;
    if !can_commit(m.committed, more, limit) {
        return Err(ENOMEM);
    }
    if let Some(e) = old.checked_add(new_len)
        && e <= MMAP_TOP
        && !m.vm.overlaps(old_end, e)
    {
        let (start, _) = m.vm.find(old).ok_or(EFAULT)?;
        m.vm.insert_backed(old_end, e, area.prot, true, area.from(start, old_end).backing);
        m.committed += more;
        return Ok(old);
    }
    if flags & MAYMOVE == 0 {
        return Err(ENOMEM);
    }
    let lowest = m.brk_start.saturating_add(HEAP_ROOM);
    let new = m.vm.find_gap(new_len, lowest, MMAP_TOP).ok_or(ENOMEM)?;
    let (start, _) = m.vm.find(old).ok_or(EFAULT)?;
    let backing = area.from(start, old).backing;
    m.vm.insert_backed(new, new + new_len, area.prot, true, backing);
    m.committed += new_len;
    if backing.is_some() {
        // Shared memory: the new area finds the object's pages on first touch.
        remove_range(&mut m, old, old_end);
        return Ok(new);
    }
    let mut buf = alloc::vec![0u8; PAGE_SIZE as usize];
    let mut off = 0;
    while off < old_len {
        if let Some((_, acc)) = m.space.lookup(old + off) {
            // Made pages move with their bytes (read through the kernel whatever their rights).
            if m.space.protect(old + off, UserAccess::readable(false, false)).is_ok()
                && m.space.copy_from_user(old + off, &mut buf).is_ok()
                && m.space.map_zeroed(new + off, UserAccess::readable(true, false)).is_ok()
            {
                let _ = m.space.fill(new + off, &buf);
                let _ = m.space.protect(new + off, acc);
            }
        }
        off += PAGE_SIZE;
    }
    remove_range(&mut m, old, old_end);
    Ok(new)
}
