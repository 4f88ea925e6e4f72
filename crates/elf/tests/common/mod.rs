//! Test support: a small ELF64 image builder, a simulated loader that follows a `LoadPlan`
//! into sparse memory, and a parser for initial stacks.
#![allow(dead_code)]

use std::collections::BTreeMap;

use elf::{LoadPlan, PAGE_SIZE, PF_R, PF_W, PF_X, PT_GNU_STACK, PT_LOAD};

pub const STATIC: &[u8] = include_bytes!("../../testdata/hello-static");
pub const STATIC_PIE: &[u8] = include_bytes!("../../testdata/hello-static-pie");

/// One program header as the builder writes it.
#[derive(Clone, Copy, Debug)]
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Ph {
    pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: PAGE_SIZE,
        }
    }
    pub fn other(p_type: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: 8,
        }
    }
}

/// An ELF64 image under construction; every header field can be set to anything.
#[derive(Clone, Debug)]
pub struct ElfBuilder {
    pub magic: [u8; 4],
    pub class: u8,
    pub data: u8,
    pub ident_version: u8,
    pub osabi: u8,
    pub e_type: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub phentsize: u16,
    /// `None`: the number of `phdrs`.
    pub phnum: Option<u16>,
    pub phdrs: Vec<Ph>,
    /// File length; the builder pads (or truncates) to it.
    pub file_len: usize,
}

pub const TEXT: u64 = 0x40_1000;
pub const DATA: u64 = 0x40_2000;

impl ElfBuilder {
    /// A valid static executable: headers in an R segment at 0x400000, 0x100 bytes of text
    /// (RX) at 0x401000 holding the entry point, data+bss (RW) at 0x402000, PT_GNU_STACK.
    pub fn exec() -> ElfBuilder {
        ElfBuilder {
            magic: *b"\x7fELF",
            class: 2,
            data: 1,
            ident_version: 1,
            osabi: 0,
            e_type: elf::ET_EXEC,
            machine: elf::EM_X86_64,
            version: 1,
            entry: TEXT + 0x10,
            phoff: 64,
            phentsize: 56,
            phnum: None,
            phdrs: vec![
                Ph::load(PF_R, 0, 0x40_0000, 0x200, 0x200),
                Ph::load(PF_R | PF_X, 0x1000, TEXT, 0x100, 0x100),
                Ph::load(PF_R | PF_W, 0x2000, DATA, 0x80, 0x2000),
                Ph::other(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0),
            ],
            file_len: 0x2080,
        }
    }

    /// The same layout as a static-pie linked at 0.
    pub fn pie() -> ElfBuilder {
        let mut b = ElfBuilder::exec();
        b.e_type = elf::ET_DYN;
        b.entry -= 0x40_0000;
        for ph in &mut b.phdrs {
            if ph.p_type == PT_LOAD {
                ph.vaddr -= 0x40_0000;
            }
        }
        b.phdrs.push(Ph::other(
            elf::PT_DYNAMIC,
            PF_R | PF_W,
            0x2000,
            0x2000,
            0x40,
            0x40,
        ));
        b
    }

    pub fn push(mut self, ph: Ph) -> Self {
        self.phdrs.push(ph);
        self
    }

    /// The image bytes. Non-header bytes hold a position-dependent pattern so copies can be
    /// checked.
    pub fn build(&self) -> Vec<u8> {
        // A wild phoff (a corpus case) gets no table written.
        let table_end = if self.phoff < 1 << 20 {
            self.phoff as usize + self.phdrs.len() * 56
        } else {
            0
        };
        let mut out: Vec<u8> = (0..self.file_len.max(table_end))
            .map(|i| (i as u8) ^ ((i >> 8) as u8) ^ 0x5a)
            .collect();
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&self.magic);
        h[4] = self.class;
        h[5] = self.data;
        h[6] = self.ident_version;
        h[7] = self.osabi;
        h[8..16].fill(0);
        h[16..18].copy_from_slice(&self.e_type.to_le_bytes());
        h[18..20].copy_from_slice(&self.machine.to_le_bytes());
        h[20..24].copy_from_slice(&self.version.to_le_bytes());
        h[24..32].copy_from_slice(&self.entry.to_le_bytes());
        h[32..40].copy_from_slice(&self.phoff.to_le_bytes());
        h[40..48].copy_from_slice(&0u64.to_le_bytes()); // no section headers
        h[48..52].copy_from_slice(&0u32.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes());
        h[54..56].copy_from_slice(&self.phentsize.to_le_bytes());
        let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
        h[56..58].copy_from_slice(&phnum.to_le_bytes());
        h[58..64].fill(0);
        let hl = out.len().min(64);
        out[..hl].copy_from_slice(&h[..hl]);
        for (i, ph) in self.phdrs.iter().enumerate() {
            let mut p = [0u8; 56];
            p[0..4].copy_from_slice(&ph.p_type.to_le_bytes());
            p[4..8].copy_from_slice(&ph.flags.to_le_bytes());
            p[8..16].copy_from_slice(&ph.offset.to_le_bytes());
            p[16..24].copy_from_slice(&ph.vaddr.to_le_bytes());
            p[24..32].copy_from_slice(&ph.vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&ph.filesz.to_le_bytes());
            p[40..48].copy_from_slice(&ph.memsz.to_le_bytes());
            p[48..56].copy_from_slice(&ph.align.to_le_bytes());
            if table_end != 0 {
                let at = self.phoff as usize + i * 56;
                out[at..at + 56].copy_from_slice(&p);
            }
        }
        out.truncate(self.file_len);
        out
    }
}

/// Sparse user memory after following a plan: page address → (bytes, flags).
pub struct Memory {
    pub pages: BTreeMap<u64, (Box<[u8; 4096]>, elf::Flags)>,
}

impl Memory {
    pub fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        (0..len as u64)
            .map(|i| {
                let a = addr + i;
                let (page, _) = self.pages.get(&(a & !(PAGE_SIZE - 1)))?;
                Some(page[(a % PAGE_SIZE) as usize])
            })
            .collect()
    }
}

/// Loads `image` the way the kernel will: map every page run once (zeroed), then copy each
/// segment's chunks. Panics if the plan asks for anything inconsistent (mapping a page twice,
/// copying outside a mapped page or a chunk crossing a page).
pub fn simulate_load(plan: &LoadPlan, image: &[u8]) -> Memory {
    let mut pages = BTreeMap::new();
    for run in plan.page_runs() {
        assert!(run.start < run.end && run.start % PAGE_SIZE == 0 && run.end % PAGE_SIZE == 0);
        let mut p = run.start;
        while p < run.end {
            let old = pages.insert(p, (Box::new([0u8; 4096]), run.flags));
            assert!(old.is_none(), "page {p:#x} mapped twice");
            p += PAGE_SIZE;
        }
    }
    for seg in &plan.segments {
        let mut total = 0;
        for c in seg.copy_chunks() {
            assert!(c.len >= 1 && c.page_offset() + c.len <= PAGE_SIZE, "{c:?}");
            let (page, flags) = pages.get_mut(&c.page()).expect("chunk in an unmapped page");
            assert!(flags.contains(seg.flags));
            let off = c.page_offset() as usize;
            page[off..off + c.len as usize].copy_from_slice(&image[c.file_range()]);
            total += c.len;
        }
        assert_eq!(total, seg.filesz);
        let mut zeroed = 0;
        for r in seg.zero_chunks() {
            assert!(
                r.start < r.end && (r.start & !(PAGE_SIZE - 1)) == ((r.end - 1) & !(PAGE_SIZE - 1))
            );
            assert!(pages.contains_key(&(r.start & !(PAGE_SIZE - 1))));
            zeroed += r.end - r.start;
        }
        assert_eq!(zeroed, seg.memsz - seg.filesz);
    }
    Memory { pages }
}

/// Checks that memory holds each segment's file bytes followed by zeros.
pub fn check_loaded(plan: &LoadPlan, image: &[u8], mem: &Memory) {
    for seg in &plan.segments {
        let got = mem
            .read(seg.vaddr, seg.memsz as usize)
            .expect("segment mapped");
        let (file, bss) = got.split_at(seg.filesz as usize);
        assert_eq!(file, &image[seg.file_range()]);
        assert!(bss.iter().all(|&b| b == 0));
    }
}

/// The initial stack, read back.
#[derive(Debug)]
pub struct ParsedStack {
    pub argc: u64,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub auxv: Vec<(u64, u64)>,
    /// Address just past the AT_NULL pair.
    pub vectors_end: u64,
}

pub struct StackView<'a> {
    pub bytes: &'a [u8],
    pub rsp: u64,
}

impl StackView<'_> {
    pub fn word(&self, addr: u64) -> u64 {
        let off = (addr - self.rsp) as usize;
        u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
    }
    pub fn cstr(&self, addr: u64) -> Vec<u8> {
        let off = (addr - self.rsp) as usize;
        let rest = &self.bytes[off..];
        let n = rest.iter().position(|&b| b == 0).expect("NUL-terminated");
        rest[..n].to_vec()
    }
    pub fn slice(&self, addr: u64, len: usize) -> &[u8] {
        let off = (addr - self.rsp) as usize;
        &self.bytes[off..off + len]
    }
    pub fn parse(&self) -> ParsedStack {
        let mut at = self.rsp;
        let argc = self.word(at);
        at += 8;
        let mut argv = Vec::new();
        for _ in 0..argc {
            argv.push(self.cstr(self.word(at)));
            at += 8;
        }
        assert_eq!(self.word(at), 0, "argv not NULL-terminated");
        at += 8;
        let mut envp = Vec::new();
        loop {
            let p = self.word(at);
            at += 8;
            if p == 0 {
                break;
            }
            envp.push(self.cstr(p));
        }
        let mut auxv = Vec::new();
        loop {
            let (k, v) = (self.word(at), self.word(at + 8));
            at += 16;
            if k == elf::AT_NULL {
                assert_eq!(v, 0);
                break;
            }
            auxv.push((k, v));
        }
        ParsedStack {
            argc,
            argv,
            envp,
            auxv,
            vectors_end: at,
        }
    }
}

pub fn aux(auxv: &[(u64, u64)], key: u64) -> Option<u64> {
    auxv.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}
