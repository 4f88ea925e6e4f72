//! The kernel heap: one contiguous run of frames, used through the direct map by a TLSF
//! allocator (crate `rlsf`: two-level segregated fit, constant-time allocate and free).
//!
//! The heap is taken with interrupts off (the scheduler allocates in its timer handler), so an
//! allocation's cost is interrupt latency. The linked-list first-fit allocator used before
//! searched a free list that grew with fragmentation; TLSF finds a fitting free block with two
//! bitmap scans whatever the heap's age (measured: `ktest heap`, docs/ARCHITECTURE.md).
//! `realloc` is GlobalAlloc's default (allocate, copy, free): the copy then runs with
//! interrupts on, where `rlsf`'s own `reallocate` would copy under the lock.
use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use rlsf::Tlsf;
use spin::Mutex;

/// First level: 24 size classes of powers of two above the 32-byte granularity (blocks up to
/// 512 MiB, beyond any heap this kernel makes); second level: 32 classes within each.
type Pool = Tlsf<'static, u32, u32, 24, 32>;

struct Heap {
    tlsf: Pool,
    /// Bytes handed out (requested sizes), and the pool's size.
    used: usize,
    size: usize,
}

/// The global allocator: the TLSF pool behind a spin lock, every call with interrupts off
/// (otherwise an interrupt arriving while a thread holds the heap lock would deadlock its CPU).
struct IrqSafeHeap(Mutex<Heap>);

// SAFETY: `alloc` returns blocks from the pool that are at least `layout.size()` bytes, aligned
// to `layout.align()` (rlsf's `allocate` contract), and never hands one out twice; `dealloc`
// returns to the pool only pointers it produced with the same alignment (GlobalAlloc's caller
// contract). The lock serialises every access to the pool.
unsafe impl GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        crate::cpu::without_interrupts(|| {
            let mut h = self.0.lock();
            match h.tlsf.allocate(layout) {
                Some(p) => {
                    h.used += layout.size();
                    p.as_ptr()
                }
                None => core::ptr::null_mut(),
            }
        })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        crate::cpu::without_interrupts(|| {
            let mut h = self.0.lock();
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` on this allocator (the
            // only pool) with this `layout`, hence this alignment, and is freed once.
            unsafe { h.tlsf.deallocate(p, layout.align()) };
            h.used -= layout.size();
        })
    }
}

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(Mutex::new(Heap { tlsf: Tlsf::new(), used: 0, size: 0 }));

/// Gives the heap its memory: `bytes` bytes at physical `start`.
///
/// # Safety
/// `[start, start + bytes)` is RAM inside the direct map that the caller hands over for good
/// (taken from the frame allocator, never freed, referenced by nothing else); called once.
pub(super) unsafe fn init(start: u64, bytes: usize) {
    // SAFETY: by the contract the memory is ours for the rest of the run ('static) and nothing
    // else refers to it; MaybeUninit<u8> needs no initialisation.
    let pool: &'static mut [MaybeUninit<u8>] =
        unsafe { core::slice::from_raw_parts_mut(super::phys_to_virt(start) as *mut MaybeUninit<u8>, bytes) };
    crate::cpu::without_interrupts(|| {
        let mut h = HEAP.0.lock();
        h.tlsf.insert_free_block(pool);
        h.size = bytes;
    });
}

/// (used, free) bytes of the kernel heap (used: the sizes asked for; free: the rest of the pool,
/// block headers included).
pub fn heap_usage() -> (usize, usize) {
    crate::cpu::without_interrupts(|| {
        let h = HEAP.0.lock();
        (h.used, h.size - h.used)
    })
}
