//! QEMU's `edu` teaching device (PCI 1234:11e8) as a test driver (ktest builds only): it raises
//! an interrupt on demand (a write to its register 0x60), by MSI when that is enabled and by
//! INTx otherwise, and keeps it asserted until acknowledged (register 0x64). `ktest pci` uses
//! two of them to prove both delivery paths, and one "deaf" (never acknowledging) to prove an
//! interrupt storm is contained.
use alloc::format;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use hal::pci::{Bdf, Mmio};
use vcpu_sched::VcpuParams;

use super::{Device, DmaFree, Driver, DriverError, Resource};
use crate::sched;

const IDENT: u64 = 0x00;
const IRQ_STATUS: u64 = 0x24;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;

pub struct Edu {
    regs: Mmio,
    /// Never acknowledges (the storm test).
    pub deaf: AtomicBool,
    handled: AtomicU32,
    bottom_halves: AtomicU32,
}

impl Edu {
    fn take(&self) -> Option<bool> {
        if self.deaf.load(Ordering::Relaxed) {
            return None;
        }
        let st = self.regs.read32(IRQ_STATUS);
        if st == 0 {
            return None;
        }
        self.regs.write32(IRQ_ACK, st);
        self.handled.fetch_add(1, Ordering::Relaxed);
        Some(true)
    }
}

// SAFETY: this driver touches only the identification, interrupt-status, raise and
// acknowledge registers (0x00, 0x24, 0x60, 0x64), never the DMA registers (0x80..0x98) nor the
// DMA command; its `Mmio` claim is private to it.
#[allow(unsafe_code)]
unsafe impl DmaFree for Edu {}

impl Driver for Edu {
    const NAME: &'static str = "edu";
    const IO_PARAMS: VcpuParams = VcpuParams::io(500, 10_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        let Resource::Pci { bus, device, function } = *res else { return Err(DriverError::NotMine) };
        let bdf = Bdf { bus, device, function };
        let f = super::pci::function(bdf).ok_or(DriverError::NoDevice)?;
        if !f.header.is_some_and(|h| h.vendor == 0x1234 && h.device == 0x11e8) {
            return Err(DriverError::NotMine);
        }
        let regs = Mmio::claim(bdf, 0).map_err(DriverError::Broken)?;
        if regs.read32(IDENT) & 0xff != 0xed {
            return Err(DriverError::Broken("identification register"));
        }
        Ok(Edu { regs, deaf: AtomicBool::new(false), handled: AtomicU32::new(0), bottom_halves: AtomicU32::new(0) })
    }

    fn top_half(&self) -> bool {
        self.take().unwrap_or(false)
    }

    fn interrupt(&self) -> Option<bool> {
        self.take()
    }

    fn bottom_half(&self, _dev: &Device<Self>) {
        self.bottom_halves.fetch_add(1, Ordering::Relaxed);
    }

    fn start(&self) {}
}

/// `ktest pci`: the first edu by MSI, the second by INTx, three interrupts each, then the
/// second made deaf and raised once: a storm the kernel must mask and survive.
pub fn ktest() {
    let edus: alloc::vec::Vec<Bdf> = super::pci::find(0x1234, 0x11e8).map(|f| f.bdf).collect();
    if edus.len() < 2 {
        return hal::println!("pci: ktest needs two edu devices (found {})", edus.len());
    }
    let mut devs = alloc::vec::Vec::new();
    for (i, bdf) in edus.iter().take(2).enumerate() {
        let res = Resource::Pci { bus: bdf.bus, device: bdf.device, function: bdf.function };
        let r = if i == 0 { super::register_msi::<Edu>(res) } else { super::register::<Edu>(res) };
        match r {
            Ok(d) => devs.push(d),
            Err(e) => return hal::println!("pci: edu {bdf}: {e}"),
        }
    }
    for d in &devs {
        for n in 0..3u32 {
            d.driver.regs.write32(IRQ_RAISE, 1 << n);
            let t0 = hal::time::now_ns();
            while d.driver.handled.load(Ordering::Relaxed) <= n && hal::time::now_ns() - t0 < 1_000_000_000 {
                let _ = sched::sleep_ns(100_000);
            }
        }
        let _ = sched::sleep_ns(1_000_000);
        hal::println!(
            "pci: edu {} ({}): {} of 3 interrupts handled, {} claimed, bottom half ran {}",
            d.resource,
            super::Registered::irq_how(*d),
            d.driver.handled.load(Ordering::Relaxed),
            d.irqs(),
            if d.driver.bottom_halves.load(Ordering::Relaxed) > 0 { "yes" } else { "no" }
        );
    }
    // The storm: the INTx edu stops acknowledging and raises its line.
    let d = devs[1];
    let Some(irq) = super::pci::function(edus[1]).and_then(|f| f.header).map(|h| h.interrupt_line) else { return };
    d.driver.deaf.store(true, Ordering::Relaxed);
    d.driver.regs.write32(IRQ_RAISE, 0x80);
    let t0 = hal::time::now_ns();
    while !super::pci::line_stats(irq).is_some_and(|s| s.2) && hal::time::now_ns() - t0 < 5_000_000_000 {
        let _ = sched::sleep_ns(1_000_000);
    }
    let s = super::pci::line_stats(irq);
    hal::println!("{}", format!("pci: storm on IRQ {irq}: {}", match s {
        Some((total, unclaimed, true)) => format!("masked after {unclaimed} unclaimed of {total} interrupts; kernel goes on"),
        _ => "NOT masked".into(),
    }));
}
