//! In-kernel test hooks (feature `ktest`, used by the QEMU test suite): deliberate faults, so
//! the tests can check the fault reports, and self checks that need the running kernel.
use hal::println;

// Unbounded on purpose: it runs into the stack's guard page.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    // black_box keeps the frame (and the recursion) from being optimised away.
    core::hint::black_box(&pad);
    recurse(depth + 1) + core::hint::black_box(pad[3])
}

#[inline(never)]
fn page_fault() {
    let p = core::hint::black_box(0xdead_0000_usize) as *const u64;
    // A read through an address nothing maps: the kernel must report the page fault.
    let v = hal::mm::read_kernel_u64(p as u64);
    println!("ktest: read_kernel_u64 refused the unmapped address: {}", v.is_none());
    hal::cpu::trigger_page_fault(p as u64);
}

pub fn run(what: &str) {
    match what {
        "pf" => page_fault(),
        "ud" => hal::cpu::trigger_invalid_opcode(),
        "gp" => hal::cpu::trigger_general_protection(),
        "de" => {
            let zero = core::hint::black_box(0u64);
            println!("{}", core::hint::black_box(1u64).checked_div(zero).unwrap_or_else(|| hal::cpu::trigger_divide_error()));
        }
        "stack" => {
            println!("ktest: recursing until the stack guard page");
            println!("{}", recurse(0));
        }
        "panic" => panic!("ktest: deliberate panic"),
        _ => println!("ktest: unknown test '{what}' (pf, ud, gp, de, stack, panic)"),
    }
}
