//! Intel MultiProcessor Specification tables: the CPU list on machines without ACPI. The
//! floating pointer ("_MP_") is searched in the first KiB of the EBDA, the last KiB of base
//! memory and the BIOS ROM (0xF0000..0x100000), as the specification says.
use crate::mm::phys_to_virt;

/// What the MP table lists.
#[derive(Clone, Debug, Default)]
pub struct MpInfo {
    pub apic_ids: [u32; crate::percpu::MAX_CPUS],
    pub cpu_count: usize,
    pub cpus_ignored: usize,
    pub ioapics: usize,
}

fn phys_bytes(start: u64, len: usize) -> &'static [u8] {
    // SAFETY: callers pass ranges below 1 MiB (BIOS data and ROM areas) or the table the
    // floating pointer names (below 4 GiB); the direct map covers both, they are firmware
    // memory the frame allocator never hands out, and u8 has no invalid values.
    unsafe { core::slice::from_raw_parts(phys_to_virt(start) as *const u8, len) }
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

/// Finds the floating pointer in `area` (16-byte aligned scan); returns the configuration
/// table's physical address.
pub fn find_pointer(area: &[u8]) -> Option<u32> {
    (0..area.len().saturating_sub(15)).step_by(16).find_map(|i| {
        let f = &area[i..i + 16];
        (&f[0..4] == b"_MP_" && f[8] == 1 && checksum_ok(f)).then(|| u32::from_le_bytes([f[4], f[5], f[6], f[7]]))
    })
}

/// Parses a configuration table (header "PCMP" and its entries).
pub fn parse_config(t: &[u8]) -> Option<MpInfo> {
    if t.len() < 44 || &t[0..4] != b"PCMP" {
        return None;
    }
    let len = u16::from_le_bytes([t[4], t[5]]) as usize;
    if len > t.len() || len < 44 || !checksum_ok(&t[..len]) {
        return None;
    }
    let count = u16::from_le_bytes([t[34], t[35]]) as usize;
    let mut info = MpInfo::default();
    let mut off = 44;
    for _ in 0..count {
        let kind = *t.get(off)?;
        let size = if kind == 0 { 20 } else { 8 };
        let e = t.get(off..off + size)?;
        match kind {
            0 if e[3] & 1 != 0 => {
                let id = u32::from(e[1]);
                let bsp = e[3] & 2 != 0;
                if info.cpu_count < info.apic_ids.len() {
                    // The boot processor first, as in the ACPI path.
                    if bsp {
                        info.apic_ids.copy_within(0..info.cpu_count, 1);
                        info.apic_ids[0] = id;
                    } else {
                        info.apic_ids[info.cpu_count] = id;
                    }
                    info.cpu_count += 1;
                } else {
                    info.cpus_ignored += 1;
                }
            }
            2 if e[3] & 1 != 0 => info.ioapics += 1,
            0..=4 => {}
            _ => return None,
        }
        off += size;
    }
    Some(info)
}

/// Looks for the MP table in the places the specification names.
pub fn probe() -> Option<MpInfo> {
    let ebda = u64::from(u16::from_le_bytes([phys_bytes(0x40e, 2)[0], phys_bytes(0x40e, 2)[1]])) << 4;
    let mut areas = [(0u64, 0usize); 3];
    if (0x80000..0xa0000).contains(&ebda) {
        areas[0] = (ebda, 1024);
    }
    areas[1] = (0x9fc00, 1024);
    areas[2] = (0xf0000, 0x10000);
    let table = areas.iter().filter(|a| a.1 > 0).find_map(|&(s, l)| find_pointer(phys_bytes(s, l)))?;
    if table == 0 {
        return None;
    }
    let head = phys_bytes(u64::from(table), 44);
    let len = u16::from_le_bytes([head[4], head[5]]) as usize;
    parse_config(phys_bytes(u64::from(table), len.max(44)))
}
