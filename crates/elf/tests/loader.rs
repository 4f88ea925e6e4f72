//! Load plans: synthetic images, the real musl fixtures, page merging, and the bad-ELF corpus.

mod common;

use common::{ElfBuilder, Ph, STATIC, STATIC_PIE, check_loaded, simulate_load};
use elf::{
    DEFAULT_PIE_BASE, ElfKind, Error, Flags, LoadOptions, LoadPlan, PAGE_SIZE, PF_R, PF_W, PF_X,
    PT_DYNAMIC, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, USER_LIMIT, load_plan,
};

fn plan(image: &[u8]) -> Result<LoadPlan, Error> {
    load_plan(image, &LoadOptions::default())
}

/// Everything a correct plan must satisfy, beyond `LoadPlan::check`: it loads consistently.
fn assert_sane(p: &LoadPlan, image: &[u8], opts: &LoadOptions) {
    assert_eq!(p.check(opts, image.len()), Ok(()));
    let mem = simulate_load(p, image);
    check_loaded(p, image, &mem);
    if let Some(phdr) = p.phdr_vaddr {
        // AT_PHDR must point at the real program headers.
        let phoff = u64::from_le_bytes(image[32..40].try_into().unwrap()) as usize;
        let len = usize::from(p.phnum) * 56;
        assert_eq!(mem.read(phdr, len).unwrap(), &image[phoff..phoff + len]);
    }
}

#[test]
fn synthetic_static_exec() {
    let img = ElfBuilder::exec().build();
    let p = plan(&img).unwrap();
    assert_eq!(p.kind, ElfKind::Exec);
    assert_eq!(p.load_bias, 0);
    assert_eq!(p.entry, common::TEXT + 0x10);
    assert_eq!(p.segments.len(), 3);
    assert_eq!(p.segments[1].flags, Flags::R | Flags::X);
    assert_eq!(
        p.segments[2].bss_range(),
        common::DATA + 0x80..common::DATA + 0x2000
    );
    assert_eq!(p.phdr_vaddr, Some(0x40_0040));
    assert_eq!((p.phnum, p.phentsize), (4, 56));
    assert_eq!(p.brk_start, common::DATA + 0x2000);
    assert!(!p.stack_exec);
    assert_eq!(p.tls, None);
    assert_eq!(
        p.page_runs(),
        vec![
            elf::PageRun {
                start: 0x40_0000,
                end: 0x40_1000,
                flags: Flags::R
            },
            elf::PageRun {
                start: 0x40_1000,
                end: 0x40_2000,
                flags: Flags::R | Flags::X
            },
            elf::PageRun {
                start: 0x40_2000,
                end: 0x40_4000,
                flags: Flags::R | Flags::W
            },
        ]
    );
    assert!(p.shared_pages().is_empty());
    assert_sane(&p, &img, &LoadOptions::default());
}

#[test]
fn synthetic_static_pie_default_and_chosen_base() {
    let img = ElfBuilder::pie().build();
    let p = plan(&img).unwrap();
    assert_eq!(p.kind, ElfKind::StaticPie);
    assert_eq!(p.load_bias, DEFAULT_PIE_BASE);
    assert_eq!(p.entry, DEFAULT_PIE_BASE + 0x1010);
    assert_eq!(p.segments[0].vaddr, DEFAULT_PIE_BASE);
    assert_eq!(p.phdr_vaddr, Some(DEFAULT_PIE_BASE + 64));
    assert_sane(&p, &img, &LoadOptions::default());

    // A caller-chosen base; a misaligned one is rounded up to the page size.
    for (base, bias) in [(0x1000_0000, 0x1000_0000), (0x1000_0123, 0x1000_1000)] {
        let opts = LoadOptions {
            pie_base: base,
            ..LoadOptions::default()
        };
        let p = load_plan(&img, &opts).unwrap();
        assert_eq!(p.load_bias, bias);
        assert_eq!(p.entry, bias + 0x1010);
        assert_sane(&p, &img, &opts);
    }
    // Large segment alignment (2 MiB) is honoured by the bias.
    let mut b = ElfBuilder::pie();
    b.phdrs[1].align = 0x20_0000;
    b.phdrs[1].vaddr = 0x20_1000;
    b.phdrs[1].offset = 0x1000;
    b.entry = 0x20_1010;
    let img = b.build();
    let opts = LoadOptions {
        pie_base: 0x1000_1000,
        ..LoadOptions::default()
    };
    let p = load_plan(&img, &opts).unwrap();
    assert_eq!(p.load_bias % 0x20_0000, 0);
    assert!(p.load_bias >= 0x1000_1000);
    assert_sane(&p, &img, &opts);
}

#[test]
fn shared_page_gets_union_of_permissions() {
    // Text ends mid-page and data starts in the same page (an ld -N / packed layout), and a
    // third tiny segment in the data's last page.
    let mut b = ElfBuilder::exec();
    b.phdrs = vec![
        Ph::load(PF_R | PF_X, 0, 0x40_0000, 0x1800, 0x1800),
        Ph::load(PF_R | PF_W, 0x1800, 0x40_1800, 0x100, 0x1000),
        Ph::load(PF_R, 0x1900, 0x40_2900, 0x10, 0x10),
    ];
    b.entry = 0x40_0100;
    b.file_len = 0x2000;
    let img = b.build();
    let p = plan(&img).unwrap();
    assert_eq!(p.shared_pages(), vec![0x40_1000, 0x40_2000]);
    let runs = p.page_runs();
    assert_eq!(
        runs,
        vec![
            elf::PageRun {
                start: 0x40_0000,
                end: 0x40_1000,
                flags: Flags::R | Flags::X
            },
            elf::PageRun {
                start: 0x40_1000,
                end: 0x40_2000,
                flags: Flags::R | Flags::W | Flags::X
            },
            elf::PageRun {
                start: 0x40_2000,
                end: 0x40_3000,
                flags: Flags::R | Flags::W
            },
        ]
    );
    assert!(runs[1].flags.is_wx());
    assert_eq!(p.total_mapped(), 3 * PAGE_SIZE);
    assert_sane(&p, &img, &LoadOptions::default());
}

#[test]
fn unsorted_segments_are_sorted_and_gnu_stack_exec_is_reported() {
    let mut b = ElfBuilder::exec();
    b.phdrs.swap(0, 2);
    b.phdrs[3].flags = PF_R | PF_W | PF_X;
    let img = b.build();
    let p = plan(&img).unwrap();
    assert!(p.segments.windows(2).all(|w| w[0].end() <= w[1].vaddr));
    assert!(p.stack_exec);
}

#[test]
fn zero_sized_loads_are_ignored_and_pt_phdr_is_used() {
    let b = ElfBuilder::exec()
        .push(Ph::load(PF_R, 0, 0x50_0000, 0, 0))
        .push(Ph::other(PT_PHDR, PF_R, 64, 0x40_0040, 6 * 56, 6 * 56));
    let img = b.build();
    let p = plan(&img).unwrap();
    assert_eq!(p.segments.len(), 3);
    assert_eq!(p.phdr_vaddr, Some(0x40_0040));
    assert_sane(&p, &img, &LoadOptions::default());
}

#[test]
fn phdrs_not_loaded() {
    let mut b = ElfBuilder::exec();
    b.phdrs[0] = Ph::load(PF_R, 0x1000, 0x40_0000, 0x10, 0x10);
    b.phdrs[1].vaddr = 0x40_1000;
    let img = b.build();
    // Overlap? No: the R segment is 0x400000..0x400010. Headers are at file offset 64,
    // which no segment covers.
    let p = plan(&img).unwrap();
    assert_eq!(p.phdr_vaddr, None);
    let strict = LoadOptions {
        require_phdr: true,
        ..LoadOptions::default()
    };
    assert_eq!(load_plan(&img, &strict), Err(Error::PhdrNotLoaded));
}

#[test]
fn tls_is_reported_relocated() {
    let b = ElfBuilder::pie().push(Ph::other(PT_TLS, PF_R, 0x2000, 0x2000, 0x8, 0x20));
    let img = b.build();
    let p = plan(&img).unwrap();
    let tls = p.tls.unwrap();
    assert_eq!(tls.vaddr, DEFAULT_PIE_BASE + 0x2000);
    assert_eq!((tls.filesz, tls.memsz, tls.align), (8, 0x20, 8));
}

// ---------------------------------------------------------------------------------------------
// Real binaries (see testdata/README.md for how they were built).

#[test]
fn musl_static_fixture() {
    let p = plan(STATIC).unwrap();
    assert_eq!(p.kind, ElfKind::Exec);
    assert_eq!(p.load_bias, 0);
    assert_eq!(p.segments.len(), 4, "R, RX, R, RW");
    let flags: Vec<Flags> = p.segments.iter().map(|s| s.flags).collect();
    assert_eq!(
        flags,
        [Flags::R, Flags::R | Flags::X, Flags::R, Flags::R | Flags::W]
    );
    let text = p.segment_at(p.entry).unwrap();
    assert!(text.flags.executable());
    assert_eq!(p.entry, 0x40_107c);
    assert_eq!(p.segments[0].vaddr, 0x40_0000);
    assert_eq!(p.phdr_vaddr, Some(0x40_0040));
    assert_eq!(p.tls.map(|t| (t.filesz, t.memsz)), Some((4, 4)));
    assert!(p.segments[3].memsz > p.segments[3].filesz, "has .bss");
    assert!(!p.stack_exec);
    assert_eq!(p.brk_start, 0x40_9000);
    assert_sane(&p, STATIC, &LoadOptions::default());
}

#[test]
fn musl_static_pie_fixture() {
    let p = plan(STATIC_PIE).unwrap();
    assert_eq!(p.kind, ElfKind::StaticPie);
    assert_eq!(p.load_bias, DEFAULT_PIE_BASE);
    assert_eq!(p.segments.len(), 4);
    assert_eq!(p.entry, DEFAULT_PIE_BASE + 0x109c);
    assert!(p.segment_at(p.entry).unwrap().flags.executable());
    assert_eq!(p.phdr_vaddr, Some(DEFAULT_PIE_BASE + 64));
    assert_eq!(p.tls.map(|t| t.vaddr), Some(DEFAULT_PIE_BASE + 0x6e44));
    assert_eq!(p.brk_start % PAGE_SIZE, 0);
    assert_sane(&p, STATIC_PIE, &LoadOptions::default());
    // The auxv the kernel would pass.
    let auxv = elf::standard_auxv(&p, &elf::AuxvParams::default());
    assert_eq!(
        common::aux(&auxv, elf::AT_PHDR),
        Some(DEFAULT_PIE_BASE + 64)
    );
    assert_eq!(common::aux(&auxv, elf::AT_PHNUM), Some(10));
    assert_eq!(common::aux(&auxv, elf::AT_PHENT), Some(56));
    assert_eq!(common::aux(&auxv, elf::AT_BASE), Some(0));
    assert_eq!(common::aux(&auxv, elf::AT_ENTRY), Some(p.entry));
}

/// Extra binaries from the environment (`ELF_EXTRA_FIXTURES=path:path`), e.g. a Rust `std`
/// hello world too big to commit; skipped when unset.
#[test]
fn extra_fixtures_from_env() {
    let Ok(paths) = std::env::var("ELF_EXTRA_FIXTURES") else {
        return;
    };
    for path in paths.split(':').filter(|s| !s.is_empty()) {
        let image = std::fs::read(path).unwrap();
        let p = plan(&image).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!(
            "{path}: {:?} bias {:#x} entry {:#x} {} segments tls {:?}",
            p.kind,
            p.load_bias,
            p.entry,
            p.segments.len(),
            p.tls
        );
        assert_sane(&p, &image, &LoadOptions::default());
    }
}

// ---------------------------------------------------------------------------------------------
// The bad-ELF corpus.

type Check = fn(&Error) -> bool;

macro_rules! case {
    ($name:expr, $pat:pat, |$b:ident| $body:expr) => {
        (
            $name,
            {
                #[allow(unused_mut)]
                let mut $b = ElfBuilder::exec();
                $body;
                $b.build()
            },
            (|e: &Error| matches!(e, $pat)) as Check,
        )
    };
    (pie $name:expr, $pat:pat, |$b:ident| $body:expr) => {
        (
            $name,
            {
                #[allow(unused_mut)]
                let mut $b = ElfBuilder::pie();
                $body;
                $b.build()
            },
            (|e: &Error| matches!(e, $pat)) as Check,
        )
    };
}

fn set_header(img: &mut [u8], at: usize, bytes: &[u8]) {
    img[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Named mutations of a valid image, each with the error it must give.
fn corpus() -> Vec<(&'static str, Vec<u8>, Check)> {
    const K: u64 = 0xffff_8000_0000_0000;
    let mut v = vec![
        (
            "empty file",
            Vec::new(),
            (|e: &Error| *e == Error::Empty) as Check,
        ),
        case!("bad magic 0", Error::BadMagic, |b| b.magic[0] = 0x7e),
        case!("bad magic 1", Error::BadMagic, |b| b.magic[1] = b'e'),
        case!("bad magic 3", Error::BadMagic, |b| b.magic[3] = b'G'),
        case!("ELFCLASS32", Error::WrongClass(1), |b| b.class = 1),
        case!("ELFCLASSNONE", Error::WrongClass(0), |b| b.class = 0),
        case!("class 3", Error::WrongClass(3), |b| b.class = 3),
        case!("big endian", Error::WrongEndian(2), |b| b.data = 2),
        case!("ELFDATANONE", Error::WrongEndian(0), |b| b.data = 0),
        case!("EI_VERSION 0", Error::WrongVersion(0), |b| b
            .ident_version =
            0),
        case!("EI_VERSION 2", Error::WrongVersion(2), |b| b
            .ident_version =
            2),
        case!("OS ABI FreeBSD", Error::WrongOsAbi(9), |b| b.osabi = 9),
        case!("OS ABI 255", Error::WrongOsAbi(255), |b| b.osabi = 255),
        case!("ET_NONE", Error::WrongType(0), |b| b.e_type = 0),
        case!("ET_REL", Error::WrongType(1), |b| b.e_type = 1),
        case!("ET_CORE", Error::WrongType(4), |b| b.e_type = 4),
        case!("ET_LOOS", Error::WrongType(0xfe00), |b| b.e_type = 0xfe00),
        case!("EM_386", Error::WrongMachine(3), |b| b.machine = 3),
        case!("EM_AARCH64", Error::WrongMachine(183), |b| b.machine = 183),
        case!("EM_NONE", Error::WrongMachine(0), |b| b.machine = 0),
        case!("e_version 0", Error::WrongVersion(0), |b| b.version = 0),
        case!("e_version 2", Error::WrongVersion(2), |b| b.version = 2),
        case!("phentsize 0", Error::BadPhentsize(0), |b| b.phentsize = 0),
        case!("phentsize 32 (ELF32)", Error::BadPhentsize(32), |b| b
            .phentsize =
            32),
        case!("phentsize 55", Error::BadPhentsize(55), |b| b.phentsize =
            55),
        case!("phentsize 57", Error::BadPhentsize(57), |b| b.phentsize =
            57),
        case!("phentsize 64", Error::BadPhentsize(64), |b| b.phentsize =
            64),
        case!("phnum 0", Error::NoProgramHeaders, |b| b.phnum = Some(0)),
        case!("phnum 65", Error::TooManyProgramHeaders(65), |b| b.phnum =
            Some(65)),
        case!("phnum PN_XNUM", Error::TooManyProgramHeaders(0xffff), |b| {
            b.phnum = Some(0xffff)
        }),
        case!("phnum beyond file", Error::ProgramHeadersOutOfFile, |b| {
            b.phnum = Some(64);
            b.file_len = 64 + 10 * 56;
        }),
        case!("phoff beyond file", Error::ProgramHeadersOutOfFile, |b| b
            .phoff =
            0x10_0000),
        case!("phoff wraps", Error::ProgramHeadersOutOfFile, |b| b.phoff =
            u64::MAX - 10),
        case!(
            "phdr table straddles end",
            Error::ProgramHeadersOutOfFile,
            |b| {
                b.phoff = 0x2080 - 100;
                b.file_len = 0x2080;
            }
        ),
        case!("PT_INTERP", Error::DynamicallyLinked, |b| b.phdrs.insert(
            0,
            Ph::other(PT_INTERP, PF_R, 0x1f0, 0x40_01f0, 0x10, 0x10)
        )),
        case!(pie "static-pie with PT_INTERP", Error::DynamicallyLinked, |b| b
            .phdrs
            .push(Ph::other(PT_INTERP, PF_R, 0x1f0, 0x1f0, 0x10, 0x10))),
        case!(
            "filesz > memsz",
            Error::FileszExceedsMemsz { index: 2 },
            |b| b.phdrs[2].filesz = 0x2001
        ),
        case!(
            "segment past end of file",
            Error::SegmentOutOfFile { index: 2 },
            |b| b.phdrs[2].filesz = 0x81
        ),
        case!(
            "p_offset past end of file",
            Error::SegmentOutOfFile { index: 1 },
            |b| b.phdrs[1].offset = 0x10_0000
        ),
        case!(
            "p_offset + p_filesz wraps",
            Error::SegmentOutOfFile { index: 1 },
            |b| {
                b.phdrs[1].offset = u64::MAX - 0x7f;
                b.phdrs[1].align = 0;
            }
        ),
        case!(
            "p_align 3",
            Error::BadAlignment { index: 1, align: 3 },
            |b| b.phdrs[1].align = 3
        ),
        case!(
            "p_align 0x1800",
            Error::BadAlignment { index: 1, .. },
            |b| b.phdrs[1].align = 0x1800
        ),
        case!(
            "vaddr/offset incongruent",
            Error::Misaligned { index: 1 },
            |b| {
                b.phdrs[1].vaddr += 0x10;
                b.entry += 0x10;
            }
        ),
        case!(
            "vaddr + memsz wraps",
            Error::AddressOverflow { index: 2 },
            |b| {
                b.phdrs[2].vaddr = 0xffff_ffff_ffff_f000;
                b.phdrs[2].offset = 0x2000;
                b.phdrs[2].memsz = 0x2000;
            }
        ),
        case!(
            "overlapping segments",
            Error::OverlappingSegments {
                first: 1,
                second: 2
            },
            |b| {
                b.phdrs[2].vaddr = common::TEXT + 0x80;
                b.phdrs[2].align = 1;
            }
        ),
        case!(
            "identical segments",
            Error::OverlappingSegments { .. },
            |b| b.phdrs[2] = b.phdrs[1]
        ),
        case!(
            "segment in kernel space",
            Error::KernelAddress { index: 2, .. },
            |b| {
                b.phdrs[2].vaddr = K + 0x2000;
            }
        ),
        case!(
            "segment crosses user limit",
            Error::KernelAddress { index: 2, .. },
            |b| {
                b.phdrs[2].vaddr = USER_LIMIT - 0x1000;
            }
        ),
        case!(
            "huge memsz",
            Error::KernelAddress { .. } | Error::TooLarge { .. },
            |b| b.phdrs[2].memsz = 1 << 46
        ),
        case!("total memsz above limit", Error::TooLarge { .. }, |b| b
            .phdrs[2]
            .memsz =
            600 << 20),
        case!(
            "segment at 0",
            Error::NullPage { index: 0, vaddr: 0 },
            |b| b.phdrs[0].vaddr = 0
        ),
        case!("segment at 0x1000", Error::NullPage { .. }, |b| b.phdrs
            [0]
        .vaddr =
            0x1000),
        case!("segment at 0xf000", Error::NullPage { .. }, |b| b.phdrs
            [0]
        .vaddr =
            0xf000),
        case!("no PT_LOAD", Error::NoLoadSegments, |b| {
            for ph in &mut b.phdrs {
                if ph.p_type == PT_LOAD {
                    ph.p_type = PT_NOTE;
                }
            }
        }),
        case!("only empty PT_LOADs", Error::NoLoadSegments, |b| {
            for ph in &mut b.phdrs {
                ph.filesz = 0;
                ph.memsz = 0;
            }
        }),
        case!("entry 0", Error::EntryNotExecutable { entry: 0 }, |b| b
            .entry =
            0),
        case!(
            "entry in R segment",
            Error::EntryNotExecutable { .. },
            |b| b.entry = 0x40_0100
        ),
        case!(
            "entry in RW segment",
            Error::EntryNotExecutable { .. },
            |b| b.entry = common::DATA
        ),
        case!(
            "entry just past text",
            Error::EntryNotExecutable { .. },
            |b| b.entry = common::TEXT + 0x100
        ),
        case!("entry in a gap", Error::EntryNotExecutable { .. }, |b| b
            .entry =
            0x50_0000),
        case!("entry u64::MAX", Error::EntryNotExecutable { .. }, |b| b
            .entry =
            u64::MAX),
        case!(
            "text not executable",
            Error::EntryNotExecutable { .. },
            |b| b.phdrs[1].flags = PF_R
        ),
        case!("two PT_TLS", Error::MultipleTls, |b| {
            b.phdrs
                .push(Ph::other(PT_TLS, PF_R, 0x2000, common::DATA, 8, 8));
            b.phdrs
                .push(Ph::other(PT_TLS, PF_R, 0x2000, common::DATA, 8, 8));
        }),
        case!("TLS filesz > memsz", Error::BadTls, |b| b
            .phdrs
            .push(Ph::other(PT_TLS, PF_R, 0x2000, common::DATA, 16, 8))),
        case!("TLS outside segments", Error::BadTls, |b| b
            .phdrs
            .push(Ph::other(PT_TLS, PF_R, 0x2000, 0x60_0000, 8, 8))),
        case!("TLS image past end of file", Error::BadTls, |b| b
            .phdrs
            .push(Ph::other(
                PT_TLS,
                PF_R,
                0x2078,
                common::DATA + 0x78,
                16,
                16
            ))),
        case!("TLS align 6", Error::BadTls, |b| {
            let mut t = Ph::other(PT_TLS, PF_R, 0x2000, common::DATA, 8, 8);
            t.align = 6;
            b.phdrs.push(t);
        }),
        case!("TLS memsz huge", Error::TooLarge { .. }, |b| b.phdrs.push(
            Ph::other(PT_TLS, PF_R, 0x2000, common::DATA, 8, 1 << 40)
        )),
        case!("PT_PHDR outside segments", Error::BadPhdrSegment, |b| b
            .phdrs
            .push(Ph::other(PT_PHDR, PF_R, 64, 0x70_0000, 280, 280))),
        case!(
            "PT_PHDR straddles segment end",
            Error::BadPhdrSegment,
            |b| b
                .phdrs
                .push(Ph::other(PT_PHDR, PF_R, 64, 0x40_01f0, 280, 280))
        ),
        case!("two PT_PHDR", Error::BadPhdrSegment, |b| {
            b.phdrs
                .push(Ph::other(PT_PHDR, PF_R, 64, 0x40_0040, 336, 336));
            b.phdrs
                .push(Ph::other(PT_PHDR, PF_R, 64, 0x40_0040, 336, 336));
        }),
        case!(pie "static-pie huge p_align", Error::KernelAddress { .. } | Error::AddressOverflow { .. }, |b| {
            b.phdrs[1].align = 1 << 62;
            b.phdrs[1].vaddr = 0x1000 + (1 << 62);
            b.entry = b.phdrs[1].vaddr + 0x10;
        }),
        case!(pie "static-pie p_align 2^63", Error::AddressOverflow { .. } | Error::KernelAddress { .. }, |b| {
            b.phdrs[1].align = 1 << 63;
            b.phdrs[1].offset = 0;
            b.phdrs[1].vaddr = 1 << 63;
        }),
        case!(pie "static-pie vaddr near u64::MAX", Error::AddressOverflow { .. } | Error::KernelAddress { .. }, |b| {
            b.phdrs[2].vaddr = u64::MAX - 0x2fff;
            b.phdrs[2].offset = 0x2000;
            b.phdrs[2].memsz = 0x1000;
        }),
        case!(pie "static-pie in kernel space", Error::KernelAddress { .. }, |b| {
            b.phdrs[2].vaddr = K;
        }),
        case!(pie "static-pie entry outside", Error::EntryNotExecutable { .. }, |b| b.entry =
            0x10_0000),
    ];
    // Header bytes overwritten in the image itself (not expressible through the builder).
    let mut img = ElfBuilder::exec().build();
    set_header(&mut img, 0, b"\x7fELF\x01\x01\x01\x00");
    v.push(("ELF32 ident on ELF64 body", img, |e| {
        *e == Error::WrongClass(1)
    }));
    let mut img = ElfBuilder::exec().build();
    img[..64].fill(0);
    v.push(("zeroed header", img, |e| *e == Error::BadMagic));
    let mut img = ElfBuilder::exec().build();
    img.iter_mut().for_each(|b| *b = 0xff);
    v.push(("all 0xff", img, |e| *e == Error::BadMagic));
    v.push(("text file", b"#!/bin/sh\necho hello\n".to_vec(), |e| {
        *e == Error::BadMagic
    }));
    v.push(("just the magic", b"\x7fELF".to_vec(), |e| {
        *e == Error::TruncatedHeader { len: 4 }
    }));
    // Deterministic pseudo-random files (xorshift), some with a valid ELF64 ident.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..16 {
        let mut bytes: Vec<u8> = (0..(64 + i * 97))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 2 == 1 {
            bytes[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        }
        v.push(("random bytes", bytes, |_| true));
    }
    v
}

#[test]
fn bad_elf_corpus_is_rejected() {
    let corpus = corpus();
    println!("bad-ELF corpus: {} named cases", corpus.len());
    assert!(corpus.len() >= 90, "corpus shrank: {}", corpus.len());
    for (name, image, expected) in &corpus {
        match plan(image) {
            Ok(p) => panic!("{name}: accepted: {p:?}"),
            Err(e) => {
                assert!(expected(&e), "{name}: unexpected error {e:?} ({e})");
                assert_eq!(e.errno(), 8, "{name}: ENOEXEC");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    // Cutting a file anywhere before the end of its last segment's file bytes must fail.
    let synth = ElfBuilder::exec().build();
    let mut cases = 0;
    for image in [&synth[..], STATIC, STATIC_PIE] {
        let p = plan(image).unwrap();
        let needed = p
            .segments
            .iter()
            .map(|s| s.file_offset + s.filesz)
            .max()
            .unwrap() as usize;
        for len in 0..needed {
            assert!(plan(&image[..len]).is_err(), "accepted truncation to {len}");
            cases += 1;
        }
        for len in needed..image.len() {
            plan(&image[..len]).unwrap();
        }
    }
    println!("truncations rejected: {cases}");
}

#[test]
fn every_header_byte_flip_is_safe() {
    // Every byte of the ELF header and program headers, set to several values: no panic, and
    // anything accepted is a sane plan.
    let opts = LoadOptions::default();
    for image in [
        &ElfBuilder::exec().build()[..],
        &ElfBuilder::pie().build()[..],
        STATIC_PIE,
    ] {
        let end = 64 + 56 * usize::from(u16::from_le_bytes([image[56], image[57]]));
        let mut img = image.to_vec();
        for i in 0..end {
            let orig = img[i];
            for val in [
                0,
                1,
                0x7f,
                0x80,
                0xff,
                orig.wrapping_add(1),
                orig.wrapping_sub(1),
            ] {
                img[i] = val;
                if let Ok(p) = load_plan(&img, &opts) {
                    assert_eq!(p.check(&opts, img.len()), Ok(()), "byte {i} = {val:#x}");
                }
            }
            img[i] = orig;
        }
    }
}

#[test]
fn options_limits_are_enforced() {
    let img = ElfBuilder::exec().build();
    let tight = LoadOptions {
        max_total_memsz: 3 * PAGE_SIZE,
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_plan(&img, &tight),
        Err(Error::TooLarge { needed: 0x4000, .. })
    ));
    let high_floor = LoadOptions {
        min_vaddr: 0x40_1000,
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_plan(&img, &high_floor),
        Err(Error::NullPage { index: 0, .. })
    ));
    let low_ceiling = LoadOptions {
        user_limit: 0x40_3000,
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_plan(&img, &low_ceiling),
        Err(Error::KernelAddress { index: 2, .. })
    ));
    // A static-pie asked to load at 0 lands in the null page.
    let pie = ElfBuilder::pie().build();
    let zero = LoadOptions {
        pie_base: 0,
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_plan(&pie, &zero),
        Err(Error::NullPage { .. })
    ));
    let top = LoadOptions {
        pie_base: u64::MAX - 0x1000,
        ..LoadOptions::default()
    };
    assert!(load_plan(&pie, &top).is_err());
    // Dynamic section and other types are fine in a static-pie.
    let ok = ElfBuilder::pie().push(Ph::other(PT_DYNAMIC, PF_R, 0, 0x10, 8, 8));
    let ok = ok
        .push(Ph::other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0))
        .build();
    assert!(plan(&ok).is_ok());
}

#[test]
fn error_display_names_the_problem() {
    let cases = [
        (Error::DynamicallyLinked, "dynamically linked"),
        (Error::WrongMachine(3), "x86-64"),
        (
            Error::NullPage { index: 1, vaddr: 0 },
            "minimum user address",
        ),
        (
            Error::KernelAddress { index: 1, end: 1 },
            "user address limit",
        ),
        (
            Error::EntryNotExecutable { entry: 0x10 },
            "entry point 0x10",
        ),
        (
            Error::OverlappingSegments {
                first: 1,
                second: 2,
            },
            "segments 1 and 2 overlap",
        ),
    ];
    for (e, want) in cases {
        assert!(e.to_string().contains(want), "{e}");
    }
}
