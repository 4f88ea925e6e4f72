//! Property tests: hostile input never panics; accepted plans keep their invariants; the
//! page runs and chunks describe exactly the segments; stacks round-trip.

mod common;

use common::{ElfBuilder, Ph, STATIC, STATIC_PIE, StackView, aux, check_loaded, simulate_load};
use elf::{
    AT_RANDOM, Flags, LoadOptions, LoadPlan, PAGE_SIZE, PF_R, PF_W, PF_X, StackParams,
    build_initial_stack, load_plan,
};
use proptest::prelude::*;

/// The invariants every `Ok` plan must satisfy, spelled out independently of `check`.
fn assert_invariants(p: &LoadPlan, image_len: usize, opts: &LoadOptions) {
    assert_eq!(p.check(opts, image_len), Ok(()));
    for s in &p.segments {
        assert!(s.filesz <= s.memsz && s.memsz > 0);
        let end = s.vaddr.checked_add(s.memsz).unwrap();
        assert!(s.vaddr >= opts.min_vaddr && end <= opts.user_limit);
        assert!(s.file_offset + s.filesz <= image_len as u64);
    }
    for w in p.segments.windows(2) {
        assert!(w[0].end() <= w[1].vaddr, "overlap");
    }
    assert!(
        p.segments
            .iter()
            .any(|s| s.flags.executable() && s.vaddr <= p.entry && p.entry < s.end())
    );
    // Page runs: sorted, disjoint, aligned; each page's flags = union over segments touching it.
    let runs = p.page_runs();
    for w in runs.windows(2) {
        assert!(w[0].end <= w[1].start);
        assert!(
            !(w[0].end == w[1].start && w[0].flags == w[1].flags),
            "not coalesced"
        );
    }
    for r in &runs {
        assert!(r.start % PAGE_SIZE == 0 && r.end % PAGE_SIZE == 0 && r.start < r.end);
        let mut page = r.start;
        while page < r.end {
            let union = p
                .segments
                .iter()
                .filter(|s| s.vaddr < page + PAGE_SIZE && page < s.end())
                .fold(Flags::NONE, |f, s| f | s.flags);
            assert_eq!(union, r.flags, "page {page:#x}");
            page += PAGE_SIZE;
            if page - r.start > 64 * PAGE_SIZE {
                break; // enough sampled for huge runs
            }
        }
    }
    for s in &p.segments {
        let pr = s.page_range();
        assert!(runs.iter().any(|r| r.start <= pr.start && pr.start < r.end));
        assert!(runs.iter().any(|r| r.start < pr.end && pr.end <= r.end));
    }
}

fn opts_strategy() -> impl Strategy<Value = LoadOptions> {
    (
        prop_oneof![
            Just(elf::DEFAULT_PIE_BASE),
            any::<u64>(),
            0u64..0x1_0000_0000
        ],
        prop_oneof![Just(elf::DEFAULT_MIN_VADDR), 0u64..0x50_0000],
        prop_oneof![Just(elf::USER_LIMIT), any::<u64>()],
        prop_oneof![Just(elf::DEFAULT_MAX_TOTAL_MEMSZ), 0u64..0x10_0000],
        any::<bool>(),
    )
        .prop_map(
            |(pie_base, min_vaddr, user_limit, max_total_memsz, require_phdr)| LoadOptions {
                pie_base,
                min_vaddr,
                user_limit: user_limit & !(PAGE_SIZE - 1),
                max_total_memsz,
                require_phdr,
            },
        )
}

/// A mutation of a byte string: overwrite bytes in the headers, anywhere, or truncate.
#[derive(Clone, Debug)]
enum Mutation {
    SetHeaderByte(usize, u8),
    SetWord(usize, u64),
    SetAnyByte(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0usize..700, any::<u8>()).prop_map(|(i, b)| Mutation::SetHeaderByte(i, b)),
        3 => (0usize..700, prop_oneof![any::<u64>(), 0u64..0x10_0000, Just(u64::MAX)])
            .prop_map(|(i, w)| Mutation::SetWord(i, w)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetAnyByte(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(img: &mut Vec<u8>, m: &Mutation) {
    let n = img.len();
    match *m {
        Mutation::SetHeaderByte(i, b) if i < n => img[i] = b,
        Mutation::SetWord(i, w) if i + 8 <= n => img[i..i + 8].copy_from_slice(&w.to_le_bytes()),
        Mutation::SetAnyByte(i, b) if n > 0 => img[i % n] = b,
        Mutation::Truncate(len) if n > 0 => img.truncate(len % n),
        _ => {}
    }
}

/// Random well-formed-ish static executables: 1-6 loads with random sizes, flags, gaps
/// (including shared pages) and alignment, one executable segment holding the entry.
fn random_exec() -> impl Strategy<Value = (ElfBuilder, bool)> {
    (
        prop::collection::vec(
            (
                1u64..0x3000,
                0u64..0x3000,
                0u64..0x2000,
                0u32..8,
                any::<bool>(),
            ),
            1..6,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, pie, tls)| {
            let mut b = if pie {
                ElfBuilder::pie()
            } else {
                ElfBuilder::exec()
            };
            let base = if pie { 0 } else { 0x40_0000 };
            b.phdrs.clear();
            // Headers at file offset 64 in the first (R) segment, as linkers do.
            let head_len = 0x200;
            b.phdrs.push(Ph::load(PF_R, 0, base, head_len, head_len));
            let mut vaddr = base + head_len;
            let mut offset = head_len;
            let mut entry = None;
            for (i, (memsz, gap, filesz, flags, page_align)) in segs.into_iter().enumerate() {
                vaddr += gap;
                if page_align {
                    vaddr = (vaddr + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
                }
                let filesz = filesz.min(memsz);
                let flags = if i == 0 { flags | PF_X | PF_R } else { flags };
                let mut ph = Ph::load(flags, offset, vaddr, filesz, memsz);
                ph.align = 1; // no congruence constraint: the offsets are packed
                if flags & PF_X != 0 && entry.is_none() {
                    entry = Some(vaddr + memsz / 2);
                }
                b.phdrs.push(ph);
                vaddr += memsz;
                offset += filesz;
            }
            if tls {
                let data = b.phdrs[1];
                b.phdrs.push(Ph::other(
                    elf::PT_TLS,
                    PF_R,
                    data.offset,
                    data.vaddr,
                    data.filesz,
                    data.memsz,
                ));
            }
            b.entry = entry.unwrap();
            b.file_len = offset as usize;
            (b, pie)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048),
                                opts in opts_strategy()) {
        if let Ok(p) = load_plan(&bytes, &opts) {
            assert_invariants(&p, bytes.len(), &opts);
        }
    }

    #[test]
    fn random_program_headers_never_panic(
        phdrs in prop::collection::vec(any::<[u8; 56]>(), 1..8),
        entry in any::<u64>(),
        opts in opts_strategy(),
    ) {
        // A valid ELF header followed by random program headers: reaches the deep checks.
        let mut img = ElfBuilder::exec().build();
        img.truncate(64);
        img[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        img[24..32].copy_from_slice(&entry.to_le_bytes());
        for p in &phdrs {
            img.extend_from_slice(p);
        }
        img.resize(img.len() + 0x3000, 0xcc);
        if let Ok(p) = load_plan(&img, &opts) {
            assert_invariants(&p, img.len(), &opts);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..4,
        muts in prop::collection::vec(mutation(), 1..6),
        opts in opts_strategy(),
    ) {
        let mut img = match which {
            0 => STATIC.to_vec(),
            1 => STATIC_PIE.to_vec(),
            2 => ElfBuilder::exec().build(),
            _ => ElfBuilder::pie().build(),
        };
        for m in &muts {
            apply(&mut img, m);
        }
        if let Ok(p) = load_plan(&img, &opts) {
            assert_invariants(&p, img.len(), &opts);
            if p.total_mapped() <= 1 << 20 {
                let mem = simulate_load(&p, &img);
                check_loaded(&p, &img, &mem);
            }
        }
    }

    #[test]
    fn generated_executables_load_exactly((b, _pie) in random_exec()) {
        let img = b.build();
        let opts = LoadOptions::default();
        let p = load_plan(&img, &opts).unwrap();
        assert_invariants(&p, img.len(), &opts);
        assert_eq!(p.segments.len(), b.phdrs.iter().filter(|ph| ph.p_type == elf::PT_LOAD).count());
        let mem = simulate_load(&p, &img);
        check_loaded(&p, &img, &mem);
        assert_eq!(p.phdr_vaddr.map(|a| a - p.load_bias), Some(b.phdrs[0].vaddr + 64));
    }

    #[test]
    fn helpers_never_panic_on_hand_made_plans(
        segs in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), 0u32..8), 0..6),
        entry in any::<u64>(),
    ) {
        // The fields are public: a kernel bug could build any plan. Helpers must not panic.
        let segments: Vec<elf::Segment> = segs
            .into_iter()
            .map(|(vaddr, memsz, file_offset, filesz, f)| elf::Segment {
                vaddr, memsz, file_offset, filesz, flags: Flags::from_p_flags(f),
            })
            .collect();
        let p = LoadPlan {
            kind: elf::ElfKind::Exec, entry, load_bias: 0, segments, phdr_vaddr: None,
            phnum: 1, phentsize: 56, tls: None, stack_exec: false, brk_start: 0,
        };
        let _ = p.page_runs();
        let _ = p.shared_pages();
        let _ = p.total_mapped();
        let _ = p.check(&LoadOptions::default(), 100);
        let _ = elf::standard_auxv(&p, &elf::AuxvParams::default());
        for s in &p.segments {
            let _ = (s.page_range(), s.file_range(), s.bss_range());
            for c in s.copy_chunks().take(3) {
                let _ = (c.file_range(), c.page(), c.page_offset());
            }
            let _ = s.zero_chunks().take(3).count();
        }
    }

    #[test]
    fn stacks_round_trip(
        argv in prop::collection::vec(prop::collection::vec(1u8..=255, 0..40), 0..20),
        envp in prop::collection::vec(prop::collection::vec(1u8..=255, 0..40), 0..20),
        auxv in prop::collection::vec((30u64..60, any::<u64>()), 0..20),
        random in any::<[u8; 16]>(),
        platform in prop::collection::vec(1u8..=255, 0..10),
        top in 0x1_0000u64..0x7fff_ffff_f000,
    ) {
        let argv_s: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let envp_s: Vec<&[u8]> = envp.iter().map(Vec::as_slice).collect();
        let (bytes, rsp) = build_initial_stack(top, &argv_s, &envp_s, &auxv, random, &platform).unwrap();
        prop_assert_eq!(rsp % 16, 0);
        prop_assert_eq!(rsp + bytes.len() as u64, top);
        let view = StackView { bytes: &bytes, rsp };
        let s = view.parse();
        prop_assert_eq!(s.argc as usize, argv.len());
        prop_assert_eq!(&s.argv, &argv);
        prop_assert_eq!(&s.envp, &envp);
        let kept: Vec<(u64, u64)> = auxv.iter().copied().filter(|(k, _)| ![0, 15, 25, 31].contains(k)).collect();
        prop_assert_eq!(&s.auxv[..kept.len()], &kept[..]);
        prop_assert_eq!(view.slice(aux(&s.auxv, AT_RANDOM).unwrap(), 16), &random[..]);
        // Nothing the vectors point to overlaps the vectors themselves.
        prop_assert!(s.vectors_end <= aux(&s.auxv, AT_RANDOM).unwrap());
    }

    #[test]
    fn stack_builder_never_panics(
        // (length, fill byte) pairs: cheap to generate, and a 0 fill byte means a NUL inside.
        argv in prop::collection::vec((0usize..6000, prop_oneof![9 => Just(b'a'), 1 => Just(0u8)]), 0..60),
        auxv in prop::collection::vec((any::<u64>(), any::<u64>()), 0..80),
        top in prop_oneof![any::<u64>(), 0u64..0x1_0000],
        execfn in prop::option::of(prop::collection::vec(any::<u8>(), 0..50)),
    ) {
        let argv: Vec<Vec<u8>> = argv.into_iter().map(|(n, b)| vec![b; n]).collect();
        let argv_s: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let p = StackParams { argv: &argv_s, envp: &argv_s, auxv: &auxv, random: [0; 16], platform: b"x86_64", execfn: execfn.as_deref() };
        if let Ok((bytes, rsp)) = p.build(top) {
            prop_assert_eq!(rsp % 16, 0);
            prop_assert_eq!(rsp.checked_add(bytes.len() as u64), Some(top));
        }
    }
}

#[test]
fn flags_helpers() {
    assert_eq!(
        Flags::from_p_flags(PF_R | PF_W | PF_X | 0xf000_0000),
        Flags::R | Flags::W | Flags::X
    );
    assert_eq!(format!("{:?}", Flags::R | Flags::X), "r-x");
    assert!(!(Flags::R | Flags::W).is_wx());
}
