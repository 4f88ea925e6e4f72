//! ELF64 program loading for Quest-RS: the pure logic the kernel's `exec` uses to run static
//! Linux x86-64 executables (static musl C programs, and Rust `std` programs built for
//! `x86_64-unknown-linux-musl`, which are static-pie by default).
//!
//! The crate knows nothing of hardware. The kernel hands it the file's bytes and gets back a
//! [`LoadPlan`]: where each segment goes (already relocated by the load bias), which bytes of
//! the file to copy where, which bytes are zero-filled (`.bss`), the protection of every page
//! (with pages shared by two segments given the union of their permissions), the TLS template,
//! the initial program break and what the auxiliary vector needs. It then builds the System V
//! initial stack with [`build_initial_stack`] and [`standard_auxv`].
//!
//! ```
//! use elf::{load_plan, standard_auxv, build_initial_stack, AuxvParams, LoadOptions, PAGE_SIZE};
//!
//! let image = include_bytes!("../testdata/hello-static-pie");
//! let plan = load_plan(image, &LoadOptions::default()).unwrap();
//! for run in plan.page_runs() {
//!     // allocate zeroed frames for run.start..run.end and map them with run.flags
//!     assert_eq!(run.start % PAGE_SIZE, 0);
//! }
//! for seg in &plan.segments {
//!     for chunk in seg.copy_chunks() {
//!         // copy image[chunk.file_range()] to user address chunk.vaddr (within one page)
//!         assert!(chunk.len <= PAGE_SIZE);
//!     }
//! }
//! let auxv = standard_auxv(&plan, &AuxvParams::default());
//! let (bytes, rsp) =
//!     build_initial_stack(0x7fff_ffff_e000, &[b"hello"], &[b"HOME=/"], &auxv, [7; 16], b"x86_64")
//!         .unwrap();
//! assert_eq!(rsp % 16, 0);
//! assert_eq!(rsp + bytes.len() as u64, 0x7fff_ffff_e000);
//! ```
//!
//! # What is accepted
//!
//! ELF64, little-endian, `EV_CURRENT`, OS/ABI System V or GNU, `EM_X86_64`, `ET_EXEC` (static)
//! or `ET_DYN` **without** `PT_INTERP` (static-pie). A `PT_INTERP` (a dynamically linked
//! program) is rejected with [`Error::DynamicallyLinked`]. Everything else that is wrong gives
//! an [`Error`] naming the problem; every variant is `ENOEXEC`-class (see [`Error::errno`])
//! except the stack builder's argument-size errors (`E2BIG`). Section headers are never read:
//! loading needs only the ELF header and the program headers.
//!
//! `p_vaddr` and `p_offset` must be congruent modulo `p_align` when `p_align > 1` (as the ELF
//! spec requires); they need not be congruent modulo the page size when `p_align <= 1`,
//! because the kernel copies file bytes into fresh frames rather than mapping file pages.
//!
//! # Why a hand-written parser
//!
//! The loader parses untrusted bytes in the kernel, where a panic is a kernel crash. The two
//! usual crates were considered: `xmas-elf` has had out-of-bounds panics on truncated input
//! (nrc/xmas-elf#50 is still open) and an out-of-bounds read advisory in `unsafe` code
//! (RUSTSEC-2025-0018); `goblin` is good but large, and fuzzing still found panics in 2025
//! (m4b/goblin#459). Loading needs exactly two fixed-layout structures (the 64-byte ELF header
//! and 56-byte program headers), so this crate reads them by hand — every read goes through a
//! checked `slice::get`, every sum of untrusted numbers is a `checked_add` — in under 200
//! lines (`src/parse.rs`), with no dependency and `#![forbid(unsafe_code)]`. Property tests
//! feed it random bytes and random mutations of real binaries.
//!
//! # Static-pie and self-relocation (what was verified)
//!
//! A static-pie has `R_X86_64_RELATIVE` relocations that must be applied for the load bias.
//! **The kernel does not apply them**: both kinds of static-pie binary relocate themselves in
//! user space before touching any relocated data. This was checked with `readelf -lrd` and
//! `objdump -d` (details in `testdata/README.md`):
//!
//! * musl C, linked with musl's `rcrt1.o` (`-static-pie`): the entry point is musl's `_start`,
//!   which calls `_start_c` from `ldso/dlstart.c`. It takes `AT_BASE` from the auxiliary
//!   vector; when that is 0 (as Linux passes for a program without an interpreter) it finds the
//!   base by walking the program headers at `AT_PHDR` (`AT_PHNUM` entries of `AT_PHENT` bytes)
//!   for `PT_DYNAMIC` and subtracting its `p_vaddr` from the run-time address of `_DYNAMIC`,
//!   then applies every `R_X86_64_RELATIVE` in `DT_REL`, `DT_RELA` and `DT_RELR`. The fixture
//!   has 11 relocations, all `R_X86_64_RELATIVE`, no `PT_INTERP`, no `DT_NEEDED`.
//! * Rust `std` for `x86_64-unknown-linux-musl` (rustc 1.95): links the same self-contained
//!   musl `rcrt1.o` (`_start` → `_start_c`, disassembly identical in shape); a hello world has
//!   648 relocations, all `R_X86_64_RELATIVE`, `FLAGS_1 = NOW PIE`, plus a `PT_TLS`.
//!
//! So the loader must (1) map the segments at `p_vaddr + load_bias`, (2) pass `AT_PHDR`,
//! `AT_PHENT`, `AT_PHNUM` (relocated; musl also needs them to find `PT_TLS` in a non-PIE static
//! binary) and `AT_ENTRY`, and (3) pass `AT_BASE` = 0 like Linux ([`standard_auxv`] does; the
//! musl code would also accept `AT_BASE` = the load bias). Pitfall found on the way: Debian's
//! `musl-gcc -static-pie` ignores `-static-pie` and emits a *dynamically linked* PIE
//! (`PT_INTERP /lib/ld-musl-x86_64.so.1`, `DT_NEEDED libc.so`), which this crate rejects; link
//! with `rcrt1.o` by hand as `testdata/README.md` shows.
//!
//! # Invariants of an `Ok` plan
//!
//! Checked by [`LoadPlan::check`] (called with `debug_assert!` by [`load_plan`] and by the
//! property tests):
//! 1. Every segment has `0 < memsz`, `filesz <= memsz`, `min_vaddr <= vaddr` and
//!    `vaddr + memsz <= user_limit` (no wrap-around).
//! 2. Segments are sorted by `vaddr` and do not overlap (they may share a page).
//! 3. `file_offset + filesz <= image.len()` for every segment.
//! 4. `entry` lies inside a segment with [`Flags::X`].
//! 5. `brk_start` is page-aligned and at or above the end of every segment.
//! 6. The sum of the page-rounded segment sizes is at most `max_total_memsz`.
//! 7. `load_bias` is 0 for `ET_EXEC` and a multiple of the page size for `ET_DYN`.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod error;
mod parse;
mod plan;
mod stack;

pub use error::Error;
pub use parse::{
    EM_X86_64, ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, PHDR_SIZE, PT_DYNAMIC, PT_GNU_RELRO,
    PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL, PT_PHDR, PT_TLS,
};
pub use plan::{
    Chunk, CopyChunks, DEFAULT_MAX_TOTAL_MEMSZ, DEFAULT_MIN_VADDR, DEFAULT_PIE_BASE, ElfKind,
    Flags, LoadOptions, LoadPlan, MAX_PHNUM, PAGE_SIZE, PageRun, Segment, Tls, USER_LIMIT,
    ZeroChunks, load_plan,
};
pub use stack::{
    ARG_MAX, AT_BASE, AT_CLKTCK, AT_EGID, AT_ENTRY, AT_EUID, AT_EXECFN, AT_FLAGS, AT_GID, AT_HWCAP,
    AT_HWCAP2, AT_NULL, AT_PAGESZ, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PLATFORM, AT_RANDOM, AT_SECURE,
    AT_UID, AuxvParams, MAX_AUXV, StackParams, build_initial_stack, standard_auxv,
};
