//! Fault reports: exception name, error code, registers, CR2 for page faults, and a backtrace
//! from the frame-pointer chain, symbolized with the kernel symbol map (module `kernel.sym`).
use core::panic::PanicInfo;

use spin::Once;

use crate::fatal_println;
use crate::trap::{EXCEPTION_NAMES, TrapFrame, VECTOR_PAGE_FAULT};

static SYMBOLS: Once<ksym::SymbolMap<'static>> = Once::new();

/// Installs the symbol map used by backtraces.
pub fn set_symbols(text: &'static [u8]) {
    SYMBOLS.call_once(|| ksym::SymbolMap::new(text));
}

/// Number of symbols known (0 without a map).
pub fn symbol_count() -> usize {
    SYMBOLS.get().map_or(0, |m| m.len())
}

/// An address to symbolize. A return address is looked up one byte earlier: the call may be
/// the last instruction of its function (a call to a function that does not return).
struct Sym(u64);
struct Ret(u64);

impl core::fmt::Display for Ret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match SYMBOLS.get().and_then(|m| m.lookup(self.0.wrapping_sub(1))) {
            Some((s, off)) => write!(f, "{}+{:#x}", s.name, off + 1),
            None => write!(f, "?"),
        }
    }
}

impl core::fmt::Display for Sym {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match SYMBOLS.get().and_then(|m| m.lookup(self.0)) {
            Some((s, off)) => write!(f, "{}+{:#x}", s.name, off),
            None => write!(f, "?"),
        }
    }
}

fn pf_reason(code: u64) -> &'static str {
    match (code & 1 != 0, code & 2 != 0, code & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, false, _) => "read of a not-present page",
        (false, true, _) => "write to a not-present page",
        (true, false, _) => "read: protection violation",
        (true, true, _) => "write: protection violation",
    }
}

/// Prints the report for CPU exception `frame.vector`.
pub fn report_exception(frame: &TrapFrame) {
    let v = frame.vector as usize;
    let (name, mnemonic) = EXCEPTION_NAMES.get(v).copied().unwrap_or(("Unknown", "?"));
    let mode = if frame.from_user() { "user" } else { "kernel" };
    fatal_println!("");
    fatal_println!("!!! CPU EXCEPTION: {name} ({mnemonic}, vector {v}) in {mode} mode");
    fatal_println!("error code: {:#x}", frame.error_code);
    if frame.vector == VECTOR_PAGE_FAULT {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        fatal_println!(
            "CR2 (faulting address): {cr2:#018x} ({}, {} mode)",
            pf_reason(frame.error_code),
            if frame.error_code & 4 != 0 { "user" } else { "supervisor" }
        );
    }
    // The push that faulted went below RSP: look at the byte under it.
    if let Some(stack) = crate::mm::guard_page_of(frame.rsp.wrapping_sub(1)) {
        fatal_println!("cause: kernel stack overflow (RSP is in the guard page below the {stack})");
    }
    fatal_println!("RIP: {:#018x} <{}>", frame.rip, Sym(frame.rip));
    fatal_println!(
        "RSP: {:#018x}  RFLAGS: {:#018x}  CS: {:#x}  SS: {:#x}",
        frame.rsp, frame.rflags, frame.cs, frame.ss
    );
    fatal_println!("RAX: {:#018x}  RBX: {:#018x}  RCX: {:#018x}", frame.rax, frame.rbx, frame.rcx);
    fatal_println!("RDX: {:#018x}  RSI: {:#018x}  RDI: {:#018x}", frame.rdx, frame.rsi, frame.rdi);
    fatal_println!("RBP: {:#018x}  R8:  {:#018x}  R9:  {:#018x}", frame.rbp, frame.r8, frame.r9);
    fatal_println!("R10: {:#018x}  R11: {:#018x}  R12: {:#018x}", frame.r10, frame.r11, frame.r12);
    fatal_println!("R13: {:#018x}  R14: {:#018x}  R15: {:#018x}", frame.r13, frame.r14, frame.r15);
    let cr3 = x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64();
    fatal_println!("CR3: {cr3:#018x}");
    if !frame.from_user() {
        backtrace(frame.rip, frame.rbp);
    }
}

const MAX_FRAMES: usize = 24;

/// Prints the frame-pointer chain starting at `rip` with frame pointer `rbp`. Each frame is read
/// only after checking it is mapped kernel memory, so a corrupt chain ends the walk instead of
/// faulting again.
pub(crate) fn backtrace(rip: u64, mut rbp: u64) {
    fatal_println!("backtrace:");
    fatal_println!("  #0  {rip:#018x} {}", Sym(rip));
    let mut shown = 1;
    let mut last = 0;
    let mut repeats = 0u64;
    let flush = |repeats: u64| {
        if repeats > 0 {
            fatal_println!("      ... the frame above repeated {repeats} more times");
        }
    };
    // Long recursions are summarised, so the walk may visit many more frames than it prints.
    for _ in 0..100_000 {
        if rbp == 0 || rbp % 8 != 0 || rbp < crate::mm::DIRECT_MAP_BASE {
            break;
        }
        let (Some(next), Some(ret)) = (crate::mm::read_kernel_u64(rbp), crate::mm::read_kernel_u64(rbp + 8)) else {
            flush(repeats);
            fatal_println!("  (frame pointer {rbp:#x} is not mapped)");
            return;
        };
        if ret == 0 {
            break;
        }
        if ret == last {
            repeats += 1;
        } else {
            flush(repeats);
            repeats = 0;
            if shown == MAX_FRAMES {
                fatal_println!("  ...");
                return;
            }
            fatal_println!("  #{shown:<2} {ret:#018x} {}", Ret(ret));
            shown += 1;
            last = ret;
        }
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    flush(repeats);
}

fn current_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reads the frame-pointer register; no memory access, no flags changed.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::cpu::disable_interrupts();
    fatal_println!("");
    fatal_println!("!!! KERNEL PANIC: {}", info.message());
    if let Some(l) = info.location() {
        fatal_println!("at {}:{}:{}", l.file(), l.line(), l.column());
    }
    let rbp = current_rbp();
    let ret = crate::mm::read_kernel_u64(rbp + 8).unwrap_or(0);
    backtrace(ret, crate::mm::read_kernel_u64(rbp).unwrap_or(0));
    fatal_println!("system halted.");
    crate::cpu::power_off(crate::cpu::ExitCode::Failure)
}
