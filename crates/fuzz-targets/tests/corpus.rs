//! Replays every input checked in under `fuzz/corpus/TARGET/` (seeds, and what fuzzing runs
//! added) and `fuzz/regressions/TARGET/` (inputs that once crashed a target) through the same
//! target functions the fuzzer runs. CI runs this; it needs neither cargo-fuzz nor a nightly
//! toolchain.
//!
//! `QUEST_WRITE_SEEDS=1 cargo test -p fuzz-targets --test corpus` (re)writes the generated seeds
//! (`seeds()` below) into `fuzz/corpus/`.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn checked_in_corpora_and_regressions_pass_every_target() {
    if std::env::var_os("QUEST_WRITE_SEEDS").is_some() {
        write_seeds();
    }
    for (name, target) in fuzz_targets::TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        assert!(!corpus.is_empty(), "no seed corpus for target {name} in fuzz/corpus/{name}");
        for (path, bytes) in corpus.iter().chain(&regressions) {
            let r = std::panic::catch_unwind(|| target(bytes));
            assert!(r.is_ok(), "target {name} panicked on {}", path.display());
        }
        println!("{name}: {} corpus inputs, {} regressions", corpus.len(), regressions.len());
    }
}

/// The generated seeds also pass (whether or not they are written out).
#[test]
fn generated_seeds_pass_every_target() {
    for (name, seeds) in seeds() {
        let target = fuzz_targets::TARGETS.iter().find(|(n, _)| *n == name).unwrap().1;
        for (_, bytes) in seeds {
            target(&bytes);
        }
    }
}

/// The seeds are well-formed inputs (the fuzzer mutates from inside each parser's accepting
/// path, not only from its first check).
#[test]
fn seeds_are_accepted_by_their_parsers() {
    let plan = elf::load_plan(&tiny_elf(), &elf::LoadOptions { require_phdr: true, ..Default::default() }).unwrap();
    assert_eq!(plan.entry, 0x400000 + 64 + 112);
    assert_eq!(cpio::Archive::new(&tiny_cpio()).validate().unwrap(), 3);
    for efi in [false, true] {
        let info = fuzz_targets::boot_info(&tiny_mbi(efi)).expect("a valid block");
        assert_eq!(info.cmdline(), "console=kernel");
        assert_eq!(info.loader_name(), "GRUB 2.06");
        assert_eq!(info.module("initrd").map(|m| m.range.len()), Some(0x80000));
        assert_eq!(info.memory_regions().len(), if efi { 2 } else { 3 });
        assert_eq!(info.firmware, if efi { bootinfo::Firmware::Uefi } else { bootinfo::Firmware::Bios });
    }
    let u = usb_seeds();
    assert!(usb::DeviceDescriptor::parse(&u[0].1).is_ok());
    assert!(usb::Configuration::parse(&u[1].1).is_ok());
    assert!(usb::desc::lang_ids(&u[2].1).is_ok());
    assert_eq!(usb::desc::string(&u[3].1).unwrap(), "QEMU USB Keyboard");
    assert!(usb::HubDescriptor::parse(&u[4].1).is_ok());
    let img = tiny_fat12();
    let mut dev = FatRam(&img);
    let mut v = fat::Volume::open(&mut dev).expect("the FAT seed mounts");
    let f = v.lookup(&mut dev, "sub/data.bin").unwrap();
    assert_eq!(v.read(&mut dev, &f, 0, 100).unwrap(), b"hello, fuzzer\n");
    for op in 0..4u8 {
        let r = channel_region(op);
        let words: Vec<AtomicU64> = r[1..].chunks(8).map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap()))).collect();
        assert!(channels::probe(&words).is_ok(), "region {op}");
    }
}

/// What QEMU's usb-kbd answers: device descriptor, configuration (with its HID descriptor),
/// language ids, product string; and usb-hub's hub descriptor.
fn usb_seeds() -> Vec<(String, Vec<u8>)> {
    let device = vec![18, 1, 0x00, 0x02, 0, 0, 0, 8, 0x27, 0x06, 0x01, 0x00, 0x00, 0x00, 1, 4, 11, 1];
    let config = vec![
        9, 2, 34, 0, 1, 1, 7, 0xa0, 50, 9, 4, 0, 0, 1, 3, 1, 1, 0, 9, 0x21, 0x11, 0x01, 0, 1, 0x22, 63, 0, 7, 5, 0x81, 3, 8, 0, 7,
    ];
    let mut product = vec![0, 3];
    for u in "QEMU USB Keyboard".encode_utf16() {
        product.extend_from_slice(&u.to_le_bytes());
    }
    product[0] = product.len() as u8;
    vec![
        ("kbd_device".into(), device),
        ("kbd_config".into(), config),
        ("langids".into(), vec![4, 3, 0x09, 0x04]),
        ("kbd_product".into(), product),
        ("hub".into(), vec![9, 0x29, 8, 0x0a, 0, 1, 0, 0, 0xff]),
    ]
}

/// A 32 KiB FAT12 volume: one FAT, a root directory of 16 entries, /SUB/DATA.BIN.
fn tiny_fat12() -> Vec<u8> {
    let mut b = vec![0u8; 64 * 512];
    b[..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 1; // sectors per cluster
    b[14] = 1; // reserved
    b[16] = 1; // FATs
    b[17] = 16; // root entries
    b[19..21].copy_from_slice(&64u16.to_le_bytes());
    b[21] = 0xf8;
    b[22] = 1; // FAT sectors
    b[510] = 0x55;
    b[511] = 0xaa;
    // FAT12: entries 0, 1 reserved; clusters 2 (SUB) and 3 (DATA.BIN) end their chains.
    b[512..518].copy_from_slice(&[0xf8, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let entry = |b: &mut Vec<u8>, at: usize, name: &[u8; 11], attr: u8, cluster: u16, size: u32| {
        b[at..at + 11].copy_from_slice(name);
        b[at + 11] = attr;
        b[at + 26..at + 28].copy_from_slice(&cluster.to_le_bytes());
        b[at + 28..at + 32].copy_from_slice(&size.to_le_bytes());
    };
    entry(&mut b, 2 * 512, b"SUB        ", 0x10, 2, 0); // root directory at sector 2
    entry(&mut b, 3 * 512, b"DATA    BIN", 0x20, 3, 14); // cluster 2 = sector 3
    b[4 * 512..4 * 512 + 14].copy_from_slice(b"hello, fuzzer\n");
    b
}

struct FatRam<'a>(&'a [u8]);

impl fat::BlockDevice for FatRam<'_> {
    fn block_size(&self) -> usize {
        512
    }
    fn blocks(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let at = lba as usize * 512;
        buf.copy_from_slice(self.0.get(at..at + buf.len()).ok_or("past the end")?);
        Ok(())
    }
}

fn write_seeds() {
    let dir = fuzz_dir().join("regressions/multiboot2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("huge_memory_map_inverted_module.mbi"), huge_mbi()).unwrap();
    for (name, seeds) in seeds() {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in seeds {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
    }
}

/// A minimal static ELF64 executable: ELF header, PT_PHDR and one PT_LOAD (RX) mapping the
/// whole file at 0x400000, entry just after the headers.
fn tiny_elf() -> Vec<u8> {
    let mut b = vec![0u8; 64 + 2 * 56 + 16];
    let total = b.len() as u64;
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1;
    let put16 = |b: &mut Vec<u8>, o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut Vec<u8>, o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut Vec<u8>, o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut b, 16, 2); // ET_EXEC
    put16(&mut b, 18, 62); // x86-64
    put32(&mut b, 20, 1);
    put64(&mut b, 24, 0x400000 + 64 + 2 * 56); // entry
    put64(&mut b, 32, 64); // phoff
    put16(&mut b, 52, 64);
    put16(&mut b, 54, 56);
    put16(&mut b, 56, 2); // phnum
    // PT_PHDR
    let p = 64;
    put32(&mut b, p, 6);
    put32(&mut b, p + 4, 4);
    put64(&mut b, p + 8, 64);
    put64(&mut b, p + 16, 0x400040);
    put64(&mut b, p + 24, 0x400040);
    put64(&mut b, p + 32, 112);
    put64(&mut b, p + 40, 112);
    put64(&mut b, p + 48, 8);
    // PT_LOAD
    let p = 64 + 56;
    put32(&mut b, p, 1);
    put32(&mut b, p + 4, 5);
    put64(&mut b, p + 8, 0);
    put64(&mut b, p + 16, 0x400000);
    put64(&mut b, p + 24, 0x400000);
    put64(&mut b, p + 32, total);
    put64(&mut b, p + 40, total + 0x2000); // bss
    put64(&mut b, p + 48, 0x1000);
    // code: mov eax, 60; xor edi, edi; syscall
    let code = [0xb8, 60, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    b[64 + 112..64 + 112 + code.len()].copy_from_slice(&code);
    b
}

fn cpio_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let fields = [1u32, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn tiny_cpio() -> Vec<u8> {
    let mut a = Vec::new();
    cpio_entry(&mut a, ".", 0o040755, b"");
    cpio_entry(&mut a, "init.conf", 0o100644, b"hello_world\n");
    cpio_entry(&mut a, "link", 0o120777, b"init.conf");
    cpio_entry(&mut a, "TRAILER!!!", 0, b"");
    a
}

fn mbi_tag(out: &mut Vec<u8>, typ: u32, body: &[u8]) {
    out.extend_from_slice(&typ.to_le_bytes());
    out.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

/// A multiboot2 information block like GRUB's: command line, loader name, a module, a memory
/// map, an RSDP v1, the end tag.
fn tiny_mbi(efi: bool) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    mbi_tag(&mut b, 1, b"console=kernel\0");
    mbi_tag(&mut b, 2, b"GRUB 2.06\0");
    let mut m = Vec::new();
    m.extend_from_slice(&0x200000u32.to_le_bytes());
    m.extend_from_slice(&0x280000u32.to_le_bytes());
    m.extend_from_slice(b"initrd\0");
    mbi_tag(&mut b, 3, &m);
    if efi {
        // EFI memory map: descriptor size 40, version 1, two descriptors.
        let mut e = Vec::new();
        e.extend_from_slice(&40u32.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        for (ty, start, pages) in [(7u32, 0x100000u64, 0x7f00u64), (0, 0, 0x100)] {
            e.extend_from_slice(&ty.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e.extend_from_slice(&start.to_le_bytes());
            e.extend_from_slice(&0u64.to_le_bytes());
            e.extend_from_slice(&pages.to_le_bytes());
            e.extend_from_slice(&0u64.to_le_bytes());
        }
        mbi_tag(&mut b, 17, &e);
    } else {
        let mut mm = Vec::new();
        mm.extend_from_slice(&24u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
        for (start, len, ty) in [(0u64, 0x9fc00u64, 1u32), (0x100000, 0x7ee0000, 1), (0xfffc0000, 0x40000, 2)] {
            mm.extend_from_slice(&start.to_le_bytes());
            mm.extend_from_slice(&len.to_le_bytes());
            mm.extend_from_slice(&ty.to_le_bytes());
            mm.extend_from_slice(&0u32.to_le_bytes());
        }
        mbi_tag(&mut b, 6, &mm);
    }
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.push(0); // checksum
    rsdp.extend_from_slice(b"BOCHS ");
    rsdp.push(0);
    rsdp.extend_from_slice(&0x7fe0000u32.to_le_bytes());
    mbi_tag(&mut b, 14, &rsdp);
    mbi_tag(&mut b, 0, &[]);
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    b
}

fn channel_region(op: u8) -> Vec<u8> {
    let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
    // 0, 1: FIFO producer, consumer; 2, 3: four-slot writer, reader.
    if op < 2 {
        channels::Fifo::format(&words, 32, 8).unwrap();
    } else {
        channels::FourSlot::format(&words, 64).unwrap();
    }
    let mut b = vec![op];
    for w in &words {
        b.extend_from_slice(&w.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    }
    b
}

type Seeds = Vec<(&'static str, Vec<(String, Vec<u8>)>)>;

fn seeds() -> Seeds {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut toml = Vec::new();
    let mut blob = Vec::new();
    for cfg in ["configs/quest-v-example.toml", "configs/two-quest.toml"] {
        let text = std::fs::read(root.join(cfg)).unwrap();
        let name = Path::new(cfg).file_name().unwrap().to_string_lossy().into_owned();
        let c = partition::from_toml_str(std::str::from_utf8(&text).unwrap()).expect(cfg);
        let plan = c.plan(&partition::Machine { cpus: 8, memory_bytes: 4 << 30 }, &[]).expect(cfg);
        blob.push((name.replace(".toml", ".blob"), plan.encode()));
        toml.push((name, text));
    }
    let elf = tiny_elf();
    let cpio = tiny_cpio();
    vec![
        ("elf", vec![("tiny_exec".into(), elf.clone()), ("truncated".into(), elf[..70].to_vec())]),
        ("cpio", vec![("tiny.cpio".into(), cpio.clone()), ("truncated.cpio".into(), cpio[..200].to_vec())]),
        ("multiboot2", vec![("grub_bios.mbi".into(), tiny_mbi(false)), ("grub_uefi.mbi".into(), tiny_mbi(true))]),
        ("partition_toml", toml),
        ("partition_blob", blob),
        (
            "channels",
            (0..4u8).map(|op| (format!("region{op}"), channel_region(op))).collect(),
        ),
        ("usb_descriptors", usb_seeds()),
        ("fat_volume", vec![("fat12_tiny.img".into(), tiny_fat12())]),
    ]
}

/// A memory map whose lengths add up past 2^64 (a hostile or broken boot loader).
fn huge_mbi() -> Vec<u8> {
    let mut b = vec![0u8; 8];
    let mut mm = Vec::new();
    mm.extend_from_slice(&24u32.to_le_bytes());
    mm.extend_from_slice(&0u32.to_le_bytes());
    for (start, len) in [(0x100000u64, u64::MAX - 0x1000), (0x8000_0000_0000_0000, u64::MAX)] {
        mm.extend_from_slice(&start.to_le_bytes());
        mm.extend_from_slice(&len.to_le_bytes());
        mm.extend_from_slice(&1u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
    }
    mbi_tag(&mut b, 6, &mm);
    let mut m = Vec::new();
    m.extend_from_slice(&0x300000u32.to_le_bytes());
    m.extend_from_slice(&0x200000u32.to_le_bytes()); // ends before it starts
    m.extend_from_slice(b"initrd\0");
    mbi_tag(&mut b, 3, &m);
    mbi_tag(&mut b, 0, &[]);
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    b
}

/// Regression (multiboot2 target): `usable_bytes` overflowed on a memory map adding up past
/// 2^64, and a module ending before its start became an inverted range.
#[test]
fn huge_memory_map_and_inverted_module_are_handled() {
    fuzz_targets::multiboot2(&huge_mbi());
    let info = fuzz_targets::boot_info(&huge_mbi()).unwrap();
    assert_eq!(info.usable_bytes(), u64::MAX);
    let m = info.module("initrd").unwrap();
    assert_eq!((m.range.start, m.range.len()), (0x300000, 0));
}

/// Regression (found by `cargo xtask fuzz`, multiboot2 target): a UEFI memory-map descriptor
/// with an absurd page count overflowed `page_count * 4096`.
#[test]
fn efi_memory_map_with_an_absurd_page_count() {
    let bytes = std::fs::read(fuzz_dir().join("regressions/multiboot2/efi_huge_page_count.mbi")).unwrap();
    fuzz_targets::multiboot2(&bytes);
    let info = fuzz_targets::boot_info(&bytes).unwrap();
    assert!(info.memory_regions().iter().any(|r| r.range.end == u64::MAX));
}

/// Regression (found by `cargo xtask fuzz`, multiboot2 target): an EFI memory map whose
/// descriptor version is not 1 made the `multiboot2` crate's accessor assert (a panic at boot);
/// bootinfo now reads the tags itself and takes the descriptors by their size.
#[test]
fn efi_memory_map_with_another_descriptor_version() {
    let bytes = std::fs::read(fuzz_dir().join("regressions/multiboot2/efi_map_version.mbi")).unwrap();
    fuzz_targets::multiboot2(&bytes);
    let info = fuzz_targets::boot_info(&bytes).unwrap();
    assert_eq!(info.firmware, bootinfo::Firmware::Uefi);
    // Malformed framing is an error, never a panic: every truncation of a valid block.
    let good = tiny_mbi(true);
    for n in 0..good.len() {
        let mut b = good[..n].to_vec();
        if n >= 4 {
            b[..4].copy_from_slice(&(n as u32).to_le_bytes());
        }
        fuzz_targets::multiboot2(&b);
        assert!(fuzz_targets::boot_info(&b).is_err() || n == good.len());
    }
}
