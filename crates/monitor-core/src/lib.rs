//! The Quest-V monitor's logic, free of hardware so the host can test it: everything the
//! monitor decides, as opposed to what the CPU does (`hal::svm`).
//!
//! * [`npt`]: nested page tables (the AMD NPT / Intel EPT-style 4-level format) mapping a
//!   sandbox's guest-physical memory, built in memory and relocated to where they will live;
//! * [`guest`]: loading the Quest kernel ELF into sandbox RAM by physical address and building
//!   the multiboot2 information the kernel expects from GRUB;
//! * [`insn`]: instruction lengths for the intercepted instructions (QEMU's SVM has no
//!   next-RIP save, so the monitor decodes them itself);
//! * [`walk`]: guest virtual-to-physical translation (to fetch those instructions);
//! * [`policy`]: what a sandbox sees and may do: CPUID answers, the I/O and MSR permission
//!   maps, the exit dispatch and its counters;
//! * [`pci`]: PCI configuration space as a sandbox sees it (its own functions and the host
//!   bridge; BAR sizing emulated, bus mastering off, MSI targets checked);
//! * [`vioapic`]: the IOAPIC a Linux sandbox with PCI functions sees (only its own pins act);
//! * [`svm`]: the VMCB layout and the mapping of SVM exit codes onto the neutral exits.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod guest;
pub mod insn;
pub mod linux;
pub mod npt;
pub mod pci;
pub mod policy;
pub mod svm;
pub mod vioapic;
pub mod walk;
