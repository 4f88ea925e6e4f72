//! Property tests: `RegionSet` and `FrameAllocator` against simple models.

use std::collections::BTreeSet;

use kmem::{Error, FrameAllocator, PAGE_SIZE, PhysRange, RegionSet};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// RegionSet against a bitmap of a small address space.

const SPACE: u64 = 512;
const CAP: usize = 6;

#[derive(Clone, Debug)]
enum SetOp {
    Add(PhysRange),
    Remove(PhysRange),
}

fn small_range() -> impl Strategy<Value = PhysRange> {
    (0..SPACE, 0..SPACE).prop_map(|(a, b)| PhysRange::new(a.min(b), a.max(b)))
}

fn set_op() -> impl Strategy<Value = SetOp> {
    prop_oneof![
        small_range().prop_map(SetOp::Add),
        small_range().prop_map(SetOp::Remove),
        // Occasionally a "reversed" (empty) range or one reaching the top of the space.
        (0..SPACE, 0..SPACE).prop_map(|(a, b)| SetOp::Add(PhysRange::new(a.max(b), a.min(b)))),
        (0..SPACE).prop_map(|a| SetOp::Remove(PhysRange::new(a, u64::MAX))),
    ]
}

/// The maximal runs of `true` in the model, as ranges.
fn runs(model: &[bool]) -> Vec<PhysRange> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < model.len() {
        if model[i] {
            let s = i;
            while i < model.len() && model[i] {
                i += 1;
            }
            out.push(PhysRange::new(s as u64, i as u64));
        } else {
            i += 1;
        }
    }
    out
}

fn apply_model(model: &mut [bool], r: PhysRange, value: bool) {
    if r.is_empty() {
        return;
    }
    let end = r.end.min(model.len() as u64);
    for a in r.start..end {
        model[a as usize] = value;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn region_set_matches_model(ops in prop::collection::vec(set_op(), 0..40)) {
        let mut set: RegionSet<CAP> = RegionSet::new();
        let mut model = vec![false; SPACE as usize];
        for op in ops {
            let before = set.clone();
            let mut next = model.clone();
            let res = match op {
                SetOp::Add(r) => { apply_model(&mut next, r, true); set.add(r) }
                SetOp::Remove(r) => { apply_model(&mut next, r, false); set.remove(r) }
            };
            prop_assert_eq!(set.check(), Ok(()));
            match res {
                Ok(()) => model = next,
                Err(e) => {
                    prop_assert_eq!(e, Error::CapacityExceeded);
                    prop_assert_eq!(&set, &before, "failed op changed the set");
                    prop_assert!(runs(&next).len() > CAP, "capacity error although result fits");
                }
            }
            let expect = runs(&model);
            prop_assert_eq!(set.as_slice(), &expect[..]);
            prop_assert_eq!(set.total(), model.iter().filter(|&&b| b).count() as u64);
            for a in (0..SPACE).step_by(7) {
                prop_assert_eq!(set.contains(a), model[a as usize]);
            }
        }
    }

    #[test]
    fn first_fit_is_lowest_fit(
        ops in prop::collection::vec(set_op(), 0..20),
        size in 1u64..64,
        align_log in 0u32..6,
    ) {
        let mut set: RegionSet<CAP> = RegionSet::new();
        for op in ops {
            let _ = match op {
                SetOp::Add(r) => set.add(r),
                SetOp::Remove(r) => set.remove(r),
            };
        }
        let align = 1u64 << align_log;
        let expect = (0..SPACE)
            .step_by(align as usize)
            .map(|s| PhysRange::new(s, s + size))
            .find(|r| set.contains_range(*r));
        prop_assert_eq!(set.first_fit(size, align), expect);
    }
}

// ---------------------------------------------------------------------------------------------
// FrameAllocator against a BTreeSet of free frame numbers.

const FRAMES: u64 = 300; // spans several bitmap words

#[derive(Clone, Debug)]
enum FrameOp {
    Alloc,
    AllocContiguous(usize, usize),
    /// Free the `i % allocated.len()`-th allocated frame (a valid free).
    FreeAllocated(usize),
    /// Free an arbitrary address (usually an error).
    FreeAny(u64),
    FreeContiguous(u64, usize),
    Reserve(PhysRange),
}

fn frame_op() -> impl Strategy<Value = FrameOp> {
    prop_oneof![
        4 => Just(FrameOp::Alloc),
        2 => (1usize..20, 0usize..10).prop_map(|(n, a)| FrameOp::AllocContiguous(n, a)),
        4 => any::<usize>().prop_map(FrameOp::FreeAllocated),
        1 => prop_oneof![
            (0..FRAMES + 10).prop_map(|f| f * PAGE_SIZE),
            (0..(FRAMES + 10) * PAGE_SIZE),
        ].prop_map(FrameOp::FreeAny),
        1 => (0..FRAMES + 10, 0usize..8).prop_map(|(f, n)| FrameOp::FreeContiguous(f * PAGE_SIZE, n)),
        1 => (0..FRAMES * PAGE_SIZE, 0..16 * PAGE_SIZE)
            .prop_map(|(s, l)| FrameOp::Reserve(PhysRange::from_base_len(s, l))),
    ]
}

/// A usable region set: random ranges with unaligned ends over a slightly larger space than
/// the allocator covers, minus some random holes.
fn region_set() -> impl Strategy<Value = RegionSet<16>> {
    let r = (0..(FRAMES + 20) * PAGE_SIZE, 0..64 * PAGE_SIZE)
        .prop_map(|(s, l)| PhysRange::from_base_len(s, l));
    (
        prop::collection::vec(r.clone(), 0..10),
        prop::collection::vec(r, 0..4),
    )
        .prop_map(|(adds, holes)| {
            let mut s = RegionSet::new();
            for a in adds {
                let _ = s.add(a);
            }
            for h in holes {
                let _ = s.remove(h);
            }
            s
        })
}

fn usable_model(set: &RegionSet<16>, max_phys: u64) -> BTreeSet<u64> {
    (0..max_phys / PAGE_SIZE)
        .filter(|f| set.contains_range(PhysRange::from_base_len(f * PAGE_SIZE, PAGE_SIZE)))
        .collect()
}

fn expected_contiguous(free: &BTreeSet<u64>, n: usize, align: usize, frames: u64) -> Option<u64> {
    let align = align.max(1) as u64;
    (0..frames)
        .step_by(align as usize)
        .find(|&s| (s..s + n as u64).all(|f| free.contains(&f)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frame_allocator_matches_model(
        set in region_set(),
        max_frames in 0..FRAMES + 1,
        extra in 0..PAGE_SIZE,
        ops in prop::collection::vec(frame_op(), 0..120),
    ) {
        let max_phys = max_frames * PAGE_SIZE + extra;
        let usable = usable_model(&set, max_phys);
        let mut free = usable.clone();
        let mut allocated: Vec<u64> = Vec::new();

        let words = FrameAllocator::bitmap_words_for(max_phys);
        let mut storage = vec![0xdead_beef_u64; words + 3];
        let mut fa = FrameAllocator::new(&mut storage[..], max_phys, &set).unwrap();
        prop_assert_eq!(fa.total_count(), usable.len());
        prop_assert_eq!(fa.free_count(), usable.len());

        for op in ops {
            match op {
                FrameOp::Alloc => {
                    let got = fa.alloc();
                    let want = free.first().copied();
                    prop_assert_eq!(got, want.map(|f| f * PAGE_SIZE));
                    if let Some(f) = want {
                        free.remove(&f);
                        allocated.push(f * PAGE_SIZE);
                    }
                }
                FrameOp::AllocContiguous(n, align) => {
                    let got = fa.alloc_contiguous(n, align);
                    let want = if n == 0 { None } else { expected_contiguous(&free, n, align, max_frames) };
                    prop_assert_eq!(got, want.map(|f| f * PAGE_SIZE));
                    if let Some(s) = want {
                        prop_assert_eq!(s % align.max(1) as u64, 0);
                        for f in s..s + n as u64 {
                            prop_assert!(usable.contains(&f));
                            free.remove(&f);
                            allocated.push(f * PAGE_SIZE);
                        }
                    }
                }
                FrameOp::FreeAllocated(i) => {
                    if !allocated.is_empty() {
                        let a = allocated.swap_remove(i % allocated.len());
                        prop_assert_eq!(fa.free(a), Ok(()));
                        prop_assert!(free.insert(a / PAGE_SIZE));
                    }
                }
                FrameOp::FreeAny(a) => {
                    let f = a / PAGE_SIZE;
                    let want = if a % PAGE_SIZE != 0 {
                        Err(Error::Misaligned(a))
                    } else if f >= max_frames {
                        Err(Error::OutOfRange(a))
                    } else if !usable.contains(&f) {
                        Err(Error::NotUsable(a))
                    } else if free.contains(&f) {
                        Err(Error::DoubleFree(a))
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(fa.free(a), want);
                    if want.is_ok() {
                        free.insert(f);
                        allocated.retain(|&x| x != a);
                    }
                }
                FrameOp::FreeContiguous(a, n) => {
                    let f0 = a / PAGE_SIZE;
                    let fs = f0..f0 + n as u64;
                    let ok = fs.end <= max_frames
                        && f0 < max_frames
                        && fs.clone().all(|f| usable.contains(&f) && !free.contains(&f));
                    let res = fa.free_contiguous(a, n);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}", res);
                    if ok {
                        for f in fs {
                            free.insert(f);
                            allocated.retain(|&x| x != f * PAGE_SIZE);
                        }
                    }
                }
                FrameOp::Reserve(r) => {
                    let o = r.page_align_outward();
                    let hit: Vec<u64> = free
                        .iter()
                        .copied()
                        .filter(|f| o.contains(f * PAGE_SIZE))
                        .collect();
                    prop_assert_eq!(fa.reserve(r), hit.len());
                    for f in hit {
                        free.remove(&f);
                        allocated.push(f * PAGE_SIZE);
                    }
                }
            }
            prop_assert_eq!(fa.check_invariants(), Ok(()));
            prop_assert_eq!(fa.free_count(), free.len());
            prop_assert_eq!(fa.total_count(), usable.len());
        }
        // Every frame's state agrees with the model, and nothing outside usable memory is free.
        for f in 0..FRAMES + 2 {
            prop_assert_eq!(fa.is_free(f * PAGE_SIZE), free.contains(&f));
            prop_assert_eq!(fa.is_usable(f * PAGE_SIZE), usable.contains(&f));
        }
        // Draining hands out each remaining free frame exactly once, lowest first.
        let mut drained = Vec::new();
        while let Some(a) = fa.alloc() {
            drained.push(a / PAGE_SIZE);
        }
        prop_assert_eq!(drained, free.iter().copied().collect::<Vec<_>>());
        // Words past the needed length are untouched.
        prop_assert!(storage[words..].iter().all(|&w| w == 0xdead_beef));
    }
}
