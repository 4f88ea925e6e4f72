//! PCI configuration space and device registers, behind an API that is sound whatever its
//! arguments (the decisions — what to enumerate, what to leave alone — are the kernel's; the
//! arithmetic is the host-tested `pci` crate's).
//!
//! - Configuration reads ([`read32`]) take any function and offset: mechanism 1 (ports
//!   0xCF8/0xCFC, 256 bytes per function) or ECAM (the ACPI MCFG window, 4 KiB per function),
//!   bounds-checked; what is outside reads as all ones.
//! - Configuration writes are not offered raw (a BAR moved onto RAM, or an MSI address pointing
//!   at memory, would let a device corrupt it). hal offers exactly: BAR sizing ([`bars`], which
//!   restores every BAR and the command register), the command register's decode and INTx
//!   bits ([`set_decode`], [`set_intx`]; a claim switches the function's bus mastering off — no
//!   device a driver programs may DMA, there is no IOMMU yet — and hal switches it on only
//!   for MSI and through [`enable_bus_master`], an `unsafe fn` whose caller promises its device
//!   is given addresses of `crate::dma::DmaBuffer`s only, memory never freed),
//!   and MSI messages that hal composes itself, aimed only at a local APIC ([`enable_msi`], an
//!   `unsafe fn`: a device sends MSI as a memory write, so bus mastering must be on, and only
//!   the driver can promise it never starts a DMA transfer).
//! - Device registers come as owned claims: [`IoPorts`] (an I/O BAR at or above 0x1000, so never
//!   the legacy devices hal itself drives) and [`Mmio`] (a memory BAR below 4 GiB that is not
//!   RAM, not the ECAM window and not the APICs), each claimed once, every access
//!   bounds-checked.
//!
//! Inside a Quest-V sandbox [`init`] always uses mechanism 1: every access is an exit, and the
//! monitor shows the sandbox the host bridge and the functions assigned to it (all ones
//! elsewhere), refuses BAR moves and keeps bus mastering off (docs/questv.md). The monitor
//! itself writes a sandbox's configuration accesses with [`guest_config_write`].
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::{Mutex, Once};
use x86_64::instructions::port::Port;

pub use pci::{Bar, BarKind, Bdf, ConfigRead, Ecam};

static ECAM: Once<Option<Ecam>> = Once::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Serialises mechanism 1's address/data pair.
static CONFIG: Mutex<()> = Mutex::new(());
/// Serialises every read-modify-write of the command register and BAR sizing as a whole: two
/// sizings of one function interleaved could otherwise restore a BAR to its all-ones probe
/// value (anywhere, RAM included) with decoding back on.
static COMMAND: Mutex<()> = Mutex::new(());
/// Claimed I/O port ranges and memory ranges (`[start, end)`).
static CLAIMED_IO: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
static CLAIMED_MEM: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Hardware MMIO hal drives itself: IOAPICs and the local APIC (0xFEC00000..0xFF000000).
const APIC_WINDOW: (u64, u64) = (0xfec0_0000, 0xff00_0000);

/// Sets up configuration access: ECAM if the MCFG described a usable window for segment 0
/// (outside RAM, inside the direct map), unless `force_mechanism1`; else mechanism 1.
/// Returns the access method's name, or why PCI is off.
pub fn init(force_mechanism1: bool) -> Result<&'static str, &'static str> {
    if let Some(sb) = crate::questv::sandbox() {
        if sb.pci_functions == 0 {
            // Nothing to find, and every access would be an exit.
            return Err("no PCI functions are assigned to this Quest-V sandbox");
        }
        // No MCFG in a sandbox: the monitor filters mechanism 1.
        ECAM.call_once(|| None);
        ENABLED.store(true, Ordering::Relaxed);
        USE_MECH1.store(true, Ordering::Relaxed);
        return Ok("configuration mechanism 1 (through the Quest-V monitor)");
    }
    let mcfg = crate::acpi::platform().and_then(|p| p.mcfg);
    let ecam = ECAM.call_once(|| {
        let (base, s, e) = mcfg?;
        let ecam = Ecam::check(base, s, e).ok()?;
        if !crate::mm::outside_managed_ram(ecam.base, ecam.base + ecam.len()) {
            crate::println!("pci: MCFG window {:#x}+{:#x} overlaps RAM or lies beyond the direct map: using mechanism 1", ecam.base, ecam.len());
            return None;
        }
        Some(ecam)
    });
    ENABLED.store(true, Ordering::Relaxed);
    Ok(match ecam {
        Some(_) if !force_mechanism1 => "ECAM (ACPI MCFG)",
        _ => {
            USE_MECH1.store(true, Ordering::Relaxed);
            "configuration mechanism 1 (ports 0xcf8/0xcfc)"
        }
    })
}

static USE_MECH1: AtomicBool = AtomicBool::new(false);

/// The ECAM window in use (`None`: mechanism 1).
pub fn ecam() -> Option<Ecam> {
    if USE_MECH1.load(Ordering::Relaxed) { None } else { ECAM.get().copied().flatten() }
}

fn mech1_read(bdf: Bdf, off: u16) -> u32 {
    let Some(addr) = pci::mech1_address(bdf, off) else { return u32::MAX };
    crate::cpu::without_interrupts(|| {
        let _g = CONFIG.lock();
        // SAFETY: 0xCF8/0xCFC are the PCI host bridge's configuration address and data ports
        // (mechanism 1), which only hal touches, under CONFIG's lock; a read has no effect on
        // memory.
        unsafe {
            Port::<u32>::new(0xcf8).write(addr);
            Port::<u32>::new(0xcfc).read()
        }
    })
}

fn mech1_write(bdf: Bdf, off: u16, v: u32) {
    let Some(addr) = pci::mech1_address(bdf, off) else { return };
    crate::cpu::without_interrupts(|| {
        let _g = CONFIG.lock();
        // SAFETY: as in `mech1_read`; callers in this module write only registers whose effect
        // they control (BAR sizing restores, command bits without bus mastering, MSI fields).
        unsafe {
            Port::<u32>::new(0xcf8).write(addr);
            Port::<u32>::new(0xcfc).write(v);
        }
    })
}

/// Reads the configuration dword at `off` (aligned down) of `bdf`; all ones where nothing
/// answers, beyond the space the access method reaches, or when PCI is off.
pub fn read32(bdf: Bdf, off: u16) -> u32 {
    if !ENABLED.load(Ordering::Relaxed) {
        return u32::MAX;
    }
    match ecam() {
        Some(e) => match e.offset(bdf, off) {
            Some(o) => {
                let va = crate::mm::phys_to_virt(e.base + o) as *const u32;
                // SAFETY: `init` checked the window lies inside the direct map and outside RAM
                // (device memory, mapped uncached); `offset` keeps `o` inside it and 4-aligned.
                unsafe { core::ptr::read_volatile(va) }
            }
            None => u32::MAX,
        },
        None => mech1_read(bdf, off),
    }
}

/// Reads through configuration mechanism 1 whatever the method in use (to compare the two);
/// all ones beyond its 256 bytes or when PCI is off.
pub fn read32_mechanism1(bdf: Bdf, off: u16) -> u32 {
    if !ENABLED.load(Ordering::Relaxed) {
        return u32::MAX;
    }
    mech1_read(bdf, off)
}

fn write32(bdf: Bdf, off: u16, v: u32) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    match ecam() {
        Some(e) => {
            if let Some(o) = e.offset(bdf, off) {
                let va = crate::mm::phys_to_virt(e.base + o) as *mut u32;
                // SAFETY: as in `read32`; what is written is this module's choice (see
                // `mech1_write`).
                unsafe { core::ptr::write_volatile(va, v) }
            }
        }
        None => mech1_write(bdf, off, v),
    }
}

/// Writes `size` (1, 2 or 4) bytes of `value` at byte `off` of `bdf`'s configuration space
/// through mechanism 1, for the Quest-V monitor passing a sandbox's write on. Refused: PCI off,
/// an access that is unaligned or beyond 256 bytes, a function that is absent, a bridge (class
/// 06) or not a type 0 header (their registers remap memory and buses), and the BARs and
/// expansion ROM BAR (a BAR moved onto RAM). Bus mastering is cleared from command writes: no
/// device hal does not drive itself may DMA (no IOMMU), and an MSI is a DMA write.
pub fn guest_config_write(bdf: Bdf, off: u16, size: u8, value: u32) -> Result<(), &'static str> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Err("PCI is off");
    }
    if !matches!(size, 1 | 2 | 4) || off % u16::from(size) != 0 || off >= 256 {
        return Err("unaligned or beyond the 256 bytes of mechanism 1");
    }
    let class = read32(bdf, 8) >> 24;
    let header = (read32(bdf, 0xc) >> 16) & 0x7f;
    if read32(bdf, 0) & 0xffff == 0xffff {
        return Err("no such function");
    }
    if class == 0x06 || header != 0 {
        return Err("a bridge or not a type 0 header");
    }
    if (0x10..0x28).contains(&off) || (0x30..0x34).contains(&off) {
        return Err("BARs are not written for a guest");
    }
    let mut value = value;
    if off == 4 {
        value &= !CMD_BUS_MASTER;
    }
    let Some(addr) = pci::mech1_address(bdf, off) else { return Err("invalid function") };
    let port = 0xcfc + (off & 3);
    crate::cpu::without_interrupts(|| {
        let _c = COMMAND.lock();
        let _g = CONFIG.lock();
        // SAFETY: 0xCF8/0xCFC.. are mechanism 1's ports, which only hal touches, under CONFIG's
        // lock. What is written cannot affect memory: not a bridge's windows, not a BAR, and
        // bus mastering stays off (cleared above), so the device cannot start a DMA.
        unsafe {
            Port::<u32>::new(0xcf8).write(addr);
            match size {
                1 => Port::<u8>::new(port).write(value as u8),
                2 => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    });
    Ok(())
}

/// Writes `value` to `bdf`'s command register whether or not the function answers, bus
/// mastering cleared: the Quest-V containment test (in a sandbox, another sandbox's function
/// reads as absent and the monitor must refuse the write). Test builds only (feature `ktest`).
#[cfg(feature = "ktest")]
pub fn trigger_command_write(bdf: Bdf, value: u16) {
    crate::cpu::without_interrupts(|| {
        let _g = COMMAND.lock();
        // Bus mastering off: whatever the function is, it cannot start a DMA because of this.
        write32(bdf, 4, u32::from(value) & !CMD_BUS_MASTER);
    })
}

/// The hardware's configuration space as a [`ConfigRead`].
pub struct Config;

impl ConfigRead for Config {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        read32(bdf, off)
    }
}

const CMD_IO: u32 = 1;
const CMD_MEM: u32 = 2;
const CMD_BUS_MASTER: u32 = 4;
const CMD_INTX_DISABLE: u32 = 1 << 10;

fn update_command(bdf: Bdf, f: impl FnOnce(u32) -> u32) {
    crate::cpu::without_interrupts(|| {
        let _g = COMMAND.lock();
        // Only the command half: writing ones to the status half would clear its error bits.
        let cur = read32(bdf, 4) & 0xffff;
        if cur == 0xffff {
            return;
        }
        write32(bdf, 4, f(cur) & 0xffff);
    })
}

/// Turns I/O and memory decoding on or off, and bus mastering off.
pub fn set_decode(bdf: Bdf, io: bool, mem: bool) {
    update_command(bdf, |c| {
        let mut c = c & !(CMD_IO | CMD_MEM | CMD_BUS_MASTER);
        if io {
            c |= CMD_IO;
        }
        if mem {
            c |= CMD_MEM;
        }
        c
    });
}

/// Enables or disables the function's INTx pin (command bit 10).
pub fn set_intx(bdf: Bdf, enabled: bool) {
    update_command(bdf, |c| if enabled { c & !CMD_INTX_DISABLE } else { c | CMD_INTX_DISABLE });
}

/// Sizes the function's BARs (writing all ones and restoring each, with decoding off meanwhile):
/// one entry per implemented BAR, `Err` for one that makes no sense.
pub fn bars(bdf: Bdf, header_type: u8) -> Vec<Result<Bar, (u8, &'static str)>> {
    let count = match header_type {
        0 => 6u8,
        1 => 2,
        _ => 0,
    };
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    let size_one = |i: u8| {
        let off = 0x10 + 4 * u16::from(i);
        let v = read32(bdf, off);
        write32(bdf, off, u32::MAX);
        let p = read32(bdf, off);
        write32(bdf, off, v);
        (v, p)
    };
    crate::cpu::without_interrupts(|| {
        let _g = COMMAND.lock();
        let cmd = read32(bdf, 4) & 0xffff;
        if cmd == 0xffff {
            return;
        }
        write32(bdf, 4, cmd & !(CMD_IO | CMD_MEM | CMD_BUS_MASTER));
        let mut i = 0;
        while i < count {
            let (v, p) = size_one(i);
            let high = if pci::is_64bit(v) && i + 1 < count { Some(size_one(i + 1)) } else { None };
            match pci::decode_bar(i, v, p, high) {
                Ok(Some(b)) => out.push(Ok(b)),
                Ok(None) => {}
                Err(e) => out.push(Err((i, e))),
            }
            i += if high.is_some() { 2 } else { 1 };
        }
        // Restored as it was: a function no driver claims keeps what the firmware set
        // (clearing bus mastering of, say, the boot disk's controller was measured to slow the
        // machine down); claims switch it off.
        write32(bdf, 4, cmd);
    });
    out
}

fn find_bar(bdf: Bdf, index: u8) -> Result<Bar, &'static str> {
    let p = match pci::probe(&Config, bdf) {
        pci::Probe::Present(h) => h,
        pci::Probe::Absent => return Err("no such PCI function"),
        pci::Probe::Nonsense(why) => return Err(why),
    };
    match bars(bdf, p.header_type).into_iter().find(|b| matches!(b, Ok(b) if b.index == index) || matches!(b, Err((i, _)) if *i == index)) {
        Some(Ok(b)) => Ok(b),
        Some(Err((_, why))) => Err(why),
        None => Err("BAR not implemented"),
    }
}

fn claim(list: &Mutex<Vec<(u64, u64)>>, start: u64, end: u64) -> Result<(), &'static str> {
    let mut l = list.lock();
    if pci::overlaps(start, end - start, &l) {
        return Err("the BAR overlaps one already claimed");
    }
    l.push((start, end));
    Ok(())
}

/// Whether `port` lies in an I/O BAR this kernel claimed.
pub fn io_claimed(port: u16) -> bool {
    pci::overlaps(u64::from(port), 1, &CLAIMED_IO.lock())
}

fn release(list: &Mutex<Vec<(u64, u64)>>, start: u64) {
    list.lock().retain(|&(s, _)| s != start);
}

/// A claimed I/O BAR: the only way to reach a PCI device's ports.
#[derive(Debug)]
pub struct IoPorts {
    base: u16,
    len: u16,
}

impl IoPorts {
    /// Claims I/O BAR `index` of `bdf` (once; I/O decoding on, bus mastering off). Refused: not
    /// an I/O BAR, below 0x1000 (legacy devices, the configuration ports, hal's UARTs), or
    /// overlapping a claimed range.
    pub fn claim(bdf: Bdf, index: u8) -> Result<IoPorts, &'static str> {
        let b = find_bar(bdf, index)?;
        if b.kind != BarKind::Io {
            return Err("not an I/O BAR");
        }
        if b.base < 0x1000 || b.end() > 0x1_0000 {
            return Err("I/O BAR in the legacy range below 0x1000 or beyond 0xffff");
        }
        if let Some(pm) = crate::acpi::platform().and_then(|p| p.pm1a_cnt)
            && (b.base..b.end()).contains(&u64::from(pm))
        {
            return Err("I/O BAR overlaps the ACPI PM1 control port");
        }
        claim(&CLAIMED_IO, b.base, b.end())?;
        let cmd = read32(bdf, 4);
        set_decode(bdf, true, cmd & CMD_MEM != 0);
        Ok(IoPorts { base: b.base as u16, len: b.size as u16 })
    }

    pub fn base(&self) -> u16 {
        self.base
    }
    pub fn len(&self) -> u16 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn port(&self, off: u16, width: u16) -> Option<u16> {
        (u32::from(off) + u32::from(width) <= u32::from(self.len)).then(|| self.base + off)
    }

    /// Reads the byte at `off`; all ones beyond the BAR.
    pub fn read8(&self, off: u16) -> u8 {
        let Some(p) = self.port(off, 1) else { return u8::MAX };
        // SAFETY: `p` lies in this claimed device BAR (at or above 0x1000, no one else's); the
        // device cannot reach memory (bus mastering is off), so a port access has no effect on
        // memory Rust knows of.
        unsafe { Port::<u8>::new(p).read() }
    }
    /// Writes the byte at `off`; ignored beyond the BAR.
    pub fn write8(&self, off: u16, v: u8) {
        let Some(p) = self.port(off, 1) else { return };
        // SAFETY: as in `read8`.
        unsafe { Port::<u8>::new(p).write(v) }
    }
    pub fn read32(&self, off: u16) -> u32 {
        let Some(p) = self.port(off, 4) else { return u32::MAX };
        // SAFETY: as in `read8`.
        unsafe { Port::<u32>::new(p).read() }
    }
    pub fn write32(&self, off: u16, v: u32) {
        let Some(p) = self.port(off, 4) else { return };
        // SAFETY: as in `read8`.
        unsafe { Port::<u32>::new(p).write(v) }
    }
}

impl Drop for IoPorts {
    fn drop(&mut self) {
        release(&CLAIMED_IO, u64::from(self.base));
    }
}

/// A claimed memory BAR (below 4 GiB, through the direct map's uncached device mapping).
#[derive(Debug)]
pub struct Mmio {
    bdf: Bdf,
    phys: u64,
    len: u64,
}

impl Mmio {
    /// Claims memory BAR `index` of `bdf` (once; memory decoding on, bus mastering off).
    /// Refused: not a memory BAR, above 4 GiB (not supported yet), RAM, the ECAM window, the
    /// APICs, or overlapping a claimed range.
    pub fn claim(bdf: Bdf, index: u8) -> Result<Mmio, &'static str> {
        let b = find_bar(bdf, index)?;
        if b.kind == BarKind::Io {
            return Err("not a memory BAR");
        }
        if b.base == 0 || b.end() > 1 << 32 {
            return Err("memory BAR unassigned or above 4 GiB: not supported yet");
        }
        if !crate::mm::outside_managed_ram(b.base, b.end()) {
            return Err("memory BAR overlaps RAM");
        }
        if pci::overlaps(b.base, b.size, &[APIC_WINDOW]) {
            return Err("memory BAR overlaps the APICs");
        }
        if let Some(e) = ECAM.get().copied().flatten()
            && pci::overlaps(b.base, b.size, &[(e.base, e.base + e.len())])
        {
            return Err("memory BAR overlaps the ECAM window");
        }
        claim(&CLAIMED_MEM, b.base, b.end())?;
        let cmd = read32(bdf, 4);
        set_decode(bdf, cmd & CMD_IO != 0, true);
        Ok(Mmio { bdf, phys: b.base, len: b.size })
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn va(&self, off: u64) -> Option<*mut u32> {
        (off.is_multiple_of(4) && off.checked_add(4)? <= self.len).then(|| crate::mm::phys_to_virt(self.phys + off) as *mut u32)
    }

    /// Reads the dword at `off` (4-aligned); all ones beyond the BAR or misaligned.
    pub fn read32(&self, off: u64) -> u32 {
        let Some(va) = self.va(off) else { return u32::MAX };
        // SAFETY: `va` is inside this claimed BAR, which `claim` checked is device memory
        // below 4 GiB (mapped uncached by the direct map) that is not RAM nor hal's own MMIO;
        // the device cannot reach memory (bus mastering off), or, after
        // `enable_bus_master`, only the DMA buffers its caller promised to hand it.
        unsafe { core::ptr::read_volatile(va) }
    }
    /// Writes the dword at `off`; ignored beyond the BAR or misaligned.
    pub fn write32(&self, off: u64, v: u32) {
        let Some(va) = self.va(off) else { return };
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(va, v) }
    }
}

impl Drop for Mmio {
    fn drop(&mut self) {
        release(&CLAIMED_MEM, self.phys);
    }
}

impl Mmio {
    /// The PCI function whose BAR this is.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }
}

/// Switches bus mastering on for the function whose memory BAR `regs` claims (holding the
/// claim shows the caller drives that function).
///
/// # Safety
///
/// With bus mastering on (and no IOMMU) the device can write any memory it is told to. The
/// caller guarantees that every address it ever gives the device — through `regs` or through
/// structures the device reads — lies inside a `crate::dma::DmaBuffer` (never freed), with the
/// length the device may touch inside it too.
pub unsafe fn enable_bus_master(regs: &Mmio) {
    update_command(regs.bdf, |c| c | CMD_BUS_MASTER | CMD_MEM);
}

/// The function's MSI capability offset, if it has one.
pub fn msi_capability(bdf: Bdf) -> Option<u8> {
    let pci::Probe::Present(h) = pci::probe(&Config, bdf) else { return None };
    pci::capabilities(&Config, bdf, &h).find(|&(id, _)| id == pci::CAP_MSI).map(|(_, off)| off)
}

/// Programs the function's MSI capability to send `vector` to this CPU's local APIC (one
/// message, fixed delivery) and enables it; INTx is disabled. The message is hal's, aimed only
/// at the APIC's interrupt window.
///
/// # Safety
///
/// A device sends its MSI message as a memory write, so MSI works only with bus mastering on,
/// and with bus mastering on (and no IOMMU yet) a device programmed to DMA can write any memory.
/// The caller guarantees that nothing ever programs this function to start a DMA transfer (its
/// driver holds the function's register claims and never does), or else that every address
/// ever given to the device lies inside a `crate::dma::DmaBuffer` with the length the device may
/// touch inside it too (the condition of [`enable_bus_master`], which such a driver has already
/// met: MSI then adds only hal's own message).
pub unsafe fn enable_msi(bdf: Bdf, vector: u8) -> Result<(), &'static str> {
    if vector < 32 {
        return Err("vectors below 32 are CPU exceptions");
    }
    let cap = msi_capability(bdf).ok_or("the function has no MSI capability")?;
    let id = crate::apic::id();
    let apic_id = u8::try_from(id).map_err(|_| "APIC id above 255 (MSI needs interrupt remapping)")?;
    let ctl_dword = read32(bdf, u16::from(cap));
    let control = (ctl_dword >> 16) as u16;
    let l = pci::msi_layout(cap, control);
    let (addr, data) = pci::msi_message(apic_id, vector);
    // Disabled while it is reprogrammed; one vector (multiple-message enable 0).
    let base_ctl = u32::from(control & !(1 | (7 << 4)));
    write32(bdf, u16::from(cap), (ctl_dword & 0xffff) | (base_ctl << 16));
    write32(bdf, l.address_lo, addr);
    if let Some(hi) = l.address_hi {
        write32(bdf, hi, 0);
    }
    // The data register is 16 bits; the upper half of its dword is reserved (or the mask bits'
    // neighbour): keep it.
    let d = read32(bdf, l.data & !3);
    let shift = (l.data & 2) * 8;
    write32(bdf, l.data & !3, (d & !(0xffff << shift)) | (u32::from(data) << shift));
    set_intx(bdf, false);
    // Bus mastering: the caller's promise (no DMA, or DMA into DMA buffers only) makes it harmless.
    update_command(bdf, |c| c | CMD_BUS_MASTER);
    write32(bdf, u16::from(cap), (ctl_dword & 0xffff) | ((base_ctl | 1) << 16));
    Ok(())
}

/// Turns the function's MSI off (INTx is left as it is).
pub fn disable_msi(bdf: Bdf) {
    if let Some(cap) = msi_capability(bdf) {
        let d = read32(bdf, u16::from(cap));
        write32(bdf, u16::from(cap), d & !(1 << 16));
    }
}
