//! The legacy 8259 PIC pair, remapped to vectors 32..47 with every line masked until a driver
//! unmasks its IRQ. (The kernel's SMP work replaces it with the IOAPIC.)
use spin::Mutex;
use x86_64::instructions::port::Port;

use crate::trap::IRQ_BASE;

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;

static MASK: Mutex<u16> = Mutex::new(0xffff);

fn outb(port: u16, v: u8) {
    // SAFETY: the four PIC ports belong to this module alone (all access goes through it).
    unsafe { Port::<u8>::new(port).write(v) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as for `outb`; reading a PIC register has no side effect beyond the read.
    unsafe { Port::<u8>::new(port).read() }
}

/// Remaps both PICs to `IRQ_BASE..IRQ_BASE+16` and masks every line.
pub(crate) fn init() {
    outb(PIC1_CMD, 0x11);
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, IRQ_BASE);
    outb(PIC2_DATA, IRQ_BASE + 8);
    outb(PIC1_DATA, 4); // slave on IRQ2
    outb(PIC2_DATA, 2);
    outb(PIC1_DATA, 0x01); // 8086 mode
    outb(PIC2_DATA, 0x01);
    let m = *MASK.lock();
    outb(PIC1_DATA, m as u8);
    outb(PIC2_DATA, (m >> 8) as u8);
}

fn write_mask(m: u16) {
    outb(PIC1_DATA, m as u8);
    outb(PIC2_DATA, (m >> 8) as u8);
}

/// Unmasks legacy IRQ line `irq` (0..16); the cascade line follows when needed.
pub fn unmask(irq: u8) {
    crate::cpu::without_interrupts(|| {
        let mut m = MASK.lock();
        *m &= !(1 << irq);
        if irq >= 8 {
            *m &= !(1 << 2);
        }
        write_mask(*m);
    })
}

/// Masks legacy IRQ line `irq`.
pub fn mask(irq: u8) {
    crate::cpu::without_interrupts(|| {
        let mut m = MASK.lock();
        *m |= 1 << irq;
        write_mask(*m);
    })
}

fn in_service(cmd: u16) -> u8 {
    outb(cmd, 0x0b);
    inb(cmd)
}

/// A PIC raises IRQ7/IRQ15 spuriously when a request vanishes before acknowledgement: no EOI
/// is owed to the PIC that did it (but the master is owed one for a spurious slave IRQ).
pub fn is_spurious(vector: u8) -> bool {
    if vector == IRQ_BASE + 7 {
        return in_service(PIC1_CMD) & 0x80 == 0;
    }
    if vector == IRQ_BASE + 15 && in_service(PIC2_CMD) & 0x80 == 0 {
        outb(PIC1_CMD, 0x20);
        return true;
    }
    vector == crate::trap::SPURIOUS_VECTOR
}

/// Acknowledges a PIC interrupt (no-op for other vectors).
pub fn end_of_interrupt(vector: u8) {
    if !(IRQ_BASE..IRQ_BASE + 16).contains(&vector) {
        return;
    }
    if vector >= IRQ_BASE + 8 {
        outb(PIC2_CMD, 0x20);
    }
    outb(PIC1_CMD, 0x20);
}
