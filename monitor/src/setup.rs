//! Setting up a sandbox: its nested page tables, I/O and MSR permission maps, the kernel
//! (Quest by physical address with its multiboot2 information, or Linux by the boot protocol
//! with its zero page, e820 map and ACPI tables) loaded into its RAM, and its entry state.
use super::*;

/// Builds everything a sandbox needs before its first VMRUN.
pub(crate) fn build_sandbox(
    plan: &Plan,
    sb: &partition::PlannedSandbox,
    kernel: &[u8],
    initrd: &[u8],
    sym: &[u8],
    apic_ids: &[u32],
    module: &dyn Fn(&str) -> Option<&'static [u8]>,
    bus: &devices::Bus,
) -> Result<SandboxRt, String> {
    let own_ids: Vec<u32> = sb.cpus.iter().filter_map(|&c| apic_ids.get(c as usize).copied()).collect();
    let (pci_space, pci_ports, pci_mem, pci_irqs, pci_root) = bus.for_sandbox(sb, own_ids.clone());
    // A Linux sandbox with PCI functions routes their INTx lines through the virtual IOAPIC
    // (monitor_core::vioapic; its page stays out of the nested page tables).
    let linux_pci = matches!(sb.image, Image::Linux { .. }) && !sb.pci.is_empty();
    let ram = PhysRegion::take(hal::mm::PhysRange::new(sb.ram.start, sb.ram.end))
        .map_err(|e| format!("its RAM {} is not free RAM: {e:?} (the monitor's image, modules or heap are there: give the monitor more memory)", sb.ram))?;
    let ram_map: Vec<(u64, u64, u64)> = sb.guest_ram().map(|g| (g.guest, g.host - sb.ram.start, g.len)).collect();

    // Nested page tables: RAM and this sandbox's channel windows; nothing else (no monitor
    // memory, no other sandbox, no device MMIO: the console is an I/O port, the APIC is
    // used in x2APIC mode through MSRs, the IOAPIC is the monitor's).
    let mut b = npt::Builder::new(npt::Format::AmdNpt);
    for g in sb.guest_ram() {
        b.map(g.guest, g.host, g.len, Rights::RAM).map_err(|e| format!("nested paging of RAM: {e:?}"))?;
    }
    let mut channels = Vec::new();
    for (c, gpa) in plan.channels_of(sb.id) {
        b.map(gpa, c.phys.start, c.phys.len(), Rights::DATA).map_err(|e| format!("nested paging of channel {}: {e:?}", c.key))?;
        let kind = match c.kind {
            None => abi::ChannelKindCode::Any,
            Some(partition::ChannelKind::Async) => abi::ChannelKindCode::Async,
            Some(partition::ChannelKind::Sync) => abi::ChannelKindCode::Sync,
        };
        channels.push((c.key, c.phys.len() as u32, gpa, kind as u32));
    }
    if !hal::apic::has_x2apic() {
        // xAPIC only: the local APIC's page, uncached, at its architectural address (each core
        // sees its own APIC there). See the warning at boot. With x2APIC, no sandbox gets it:
        // the monitor enters every kernel with its APIC in x2APIC mode and says the mode is
        // locked (policy::ARCH_CAP_XAPIC_DISABLE), which keeps even Debian's kernel, with no
        // interrupt remapping, in x2APIC mode; a touch of the page stops the sandbox.
        b.map(XAPIC_PAGE, XAPIC_PAGE, 4096, Rights::MMIO).map_err(|e| format!("nested paging of the xAPIC page: {e:?}"))?;
    }
    // Its PCI functions' memory BARs, at the same guest-physical address (partition's
    // check_devices made sure they are whole pages of their own, clear of its RAM and windows).
    for r in &pci_mem {
        b.map(r.start, r.start, r.len(), Rights::MMIO).map_err(|e| format!("nested paging of PCI BAR {r}: {e:?}"))?;
    }
    let tables = PhysRegion::alloc(b.table_count(), 1).ok_or("out of monitor memory for nested page tables")?;
    let bytes = b.finish(tables.phys());
    tables.write(0, &bytes);

    let mut owned: Vec<partition::PortRange> = sb.io_ports.clone();
    owned.extend(sb.console.ports());
    owned.extend(pci_ports);
    let iopm = PhysRegion::alloc(3, 1).ok_or("out of monitor memory for the I/O permission map")?;
    iopm.write(0, &policy::io_permission_map(&owned));
    let msrpm = PhysRegion::alloc(2, 1).ok_or("out of monitor memory for the MSR permission map")?;
    msrpm.write(0, &policy::msr_permission_map());

    // The kernel, its modules and the boot information, in the sandbox's RAM.
    let regions: Vec<(u64, u64)> = ram_map.iter().map(|&(g, _, l)| (g, l)).collect();
    let mods = [ModuleSpec { name: "initrd", len: initrd.len() as u64 }, ModuleSpec { name: "kernel.sym", len: sym.len() as u64 }];
    let (console_port, console_irq) = match sb.console {
        Console::Com(n @ 1..=4) => (hal::serial::COM_PORTS[n as usize - 1], Some(hal::serial::COM_IRQS[n as usize - 1])),
        _ => (0, None),
    };
    let off = |gpa: u64, len: u64| -> Result<u64, String> {
        ram_map
            .iter()
            .find(|&&(g, _, l)| gpa >= g && gpa + len <= g + l)
            .map(|&(g, o, _)| o + gpa - g)
            .ok_or_else(|| format!("guest-physical {gpa:#x}+{len:#x} outside its RAM"))
    };
    let entry = match &sb.image {
        Image::Quest => {
            if kernel.is_empty() {
                return Err("no `quest` boot module (the Quest kernel)".into());
            }
            let cmdline = format!("questv.sandbox={} questv.name={}", sb.id, sb.name);
            let bp = guest::plan(kernel, &mods, &cmdline, "Quest-V monitor", &regions).map_err(|e| format!("kernel image: {e}"))?;
            ram.zero(0, ram.len().min(bp.mbi_addr + bp.mbi.len() as u64 + 4096));
            for s in &bp.kernel.segments {
                let o = off(s.paddr, s.memsz)?;
                ram.write(o, &kernel[s.file.clone()]);
                ram.zero(o + s.file.len() as u64, s.memsz - s.file.len() as u64);
            }
            for (data, &at) in [initrd, sym].iter().zip(&bp.modules) {
                ram.write(off(at, data.len() as u64)?, data);
            }
            ram.write(off(bp.mbi_addr, bp.mbi.len() as u64)?, &bp.mbi);
            Entry::Multiboot { entry: bp.kernel.entry, mbi: bp.mbi_addr }
        }
        Image::Linux { kernel: kname, initrd: iname, cmdline } => {
            let image = module(kname).ok_or_else(|| format!("no boot module `{kname}` (its Linux kernel)"))?;
            let rd = match iname {
                Some(n) => module(n).ok_or_else(|| format!("no boot module `{n}` (its initramfs)"))?,
                None => &[],
            };
            let windows: Vec<(u64, u64)> = channels.iter().map(|c| (c.2, u64::from(c.1))).collect();
            let platform = linux::Platform { apic_ids: own_ids.clone(), uart: sb.console.ports().map(|p| p.first), pci: linux_pci.then(|| pci_root.clone()) };
            let com = match sb.console {
                Console::Com(n) => Some(n),
                Console::None => None,
            };
            let cl = linux::cmdline(TSC_KHZ.load(Ordering::Relaxed), com, linux_pci, cmdline);
            let lb = linux::plan(image, rd.len() as u64, &cl, &regions, &windows, &platform).map_err(|e| format!("Linux kernel `{kname}`: {e}"))?;
            linux::find_tables(&lb.acpi, linux::ACPI_BASE).map_err(|e| format!("its ACPI tables: {e} (monitor bug)"))?;
            // Below 1 MiB: the zero page, command line, ACPI tables and the (empty) BIOS areas
            // Linux scans for MP and SMBIOS tables.
            ram.zero(0, 0x10_0000);
            ram.write(off(linux::ZERO_PAGE, 4096)?, &lb.zero_page);
            ram.write(off(linux::CMDLINE, lb.cmdline.len() as u64)?, &lb.cmdline);
            ram.write(off(linux::ACPI_BASE, lb.acpi.len() as u64)?, &lb.acpi);
            ram.write(off(lb.kernel_at, lb.kernel.len() as u64)?, &image[lb.kernel.clone()]);
            if !rd.is_empty() {
                ram.write(off(lb.initrd_at, rd.len() as u64)?, rd);
            }
            println!(
                "sandbox {} ({}): Linux boot protocol {}.{:02}, {} KiB kernel at {:#x} (decompressed up to {:#x}), {} KiB initramfs at {:#x}, command line \"{cl}\"",
                sb.name,
                sb.id,
                image.get(0x207).copied().unwrap_or(0),
                image.get(0x206).copied().unwrap_or(0),
                lb.kernel.len() / 1024,
                lb.kernel_at,
                lb.kernel_end,
                rd.len() / 1024,
                lb.initrd_at
            );
            Entry::Linux { entry: lb.entry, zero_page: linux::ZERO_PAGE }
        }
    };

    let view = SandboxView {
        id: u32::from(sb.id),
        count: plan.sandboxes.len() as u32,
        console_port,
        console_irq: console_irq.unwrap_or(0),
        tsc_khz: TSC_KHZ.load(Ordering::Relaxed),
        cpu: sb.cpus[0],
        channels,
        apic_ids: own_ids.clone(),
        pci_functions: sb.pci.len() as u8,
        kvm_signature: linux_pci,
    };
    let ncr3 = tables.phys();
    let vioapic = linux_pci.then(|| Mutex::new(monitor_core::vioapic::VirtualIoApic::new(&pci_irqs, own_ids.clone())));
    Ok(SandboxRt {
        id: sb.id,
        name: sb.name.clone(),
        ram,
        ram_map,
        console_irq,
        apic_ids: own_ids,
        cpus: sb.cpus.clone(),
        state: AtomicU8::new(NOT_STARTED),
        _npt: tables,
        iopm,
        msrpm,
        ncr3,
        pci: Mutex::new(pci_space),
        vioapic,
        pci_irqs,
        pci_refused: AtomicU64::new(0),
        view,
        entry,
    })
}
