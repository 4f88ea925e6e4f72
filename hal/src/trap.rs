//! Interrupt and exception entry: one assembly stub per vector saves every general register
//! into a [`TrapFrame`] and calls [`hal_trap_dispatch`]. CPU exceptions go to the exception
//! hook (the kernel's, once it has one) and otherwise produce a fault report and stop the
//! machine; device interrupts go to the handler registered for their vector: a function or a
//! `'static` object implementing [`InterruptHandler`], kept in typed slots ([`Handler`]).
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use crate::gdt;

global_asm!(
    r#"
    .macro TRAP_STUB v
    .balign 16
hal_vec_\v:
    .if (\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
    .else
    pushq $0
    .endif
    pushq $\v
    jmp hal_trap_common
    .endm

    .text
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150,151,152,153,154,155,156,157,158,159,160,161,162,163,164,165,166,167,168,169,170,171,172,173,174,175,176,177,178,179,180,181,182,183,184,185,186,187,188,189,190,191,192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216,217,218,219,220,221,222,223,224,225,226,227,228,229,230,231,232,233,234,235,236,237,238,239,240,241,242,243,244,245,246,247,248,249,250,251,252,253,254,255
    TRAP_STUB \v
    .endr

    .balign 16
hal_trap_common:
    /* From user mode (CS.RPL = 3, at 24(%rsp) past vector and error code): kernel GS. */
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call hal_trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    /* Back to user mode: user GS. */
    testb $3, 8(%rsp)
    jz 2f
    swapgs
2:
    iretq

    .section .rodata
    .balign 8
    .global hal_vector_table
hal_vector_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150,151,152,153,154,155,156,157,158,159,160,161,162,163,164,165,166,167,168,169,170,171,172,173,174,175,176,177,178,179,180,181,182,183,184,185,186,187,188,189,190,191,192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216,217,218,219,220,221,222,223,224,225,226,227,228,229,230,231,232,233,234,235,236,237,238,239,240,241,242,243,244,245,246,247,248,249,250,251,252,253,254,255
    .quad hal_vec_\v
    .endr
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static hal_vector_table: [u64; 256];
}

/// Registers as the entry stubs save them, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the trap came from user mode (ring 3).
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

pub const EXCEPTION_NAMES: [(&str, &str); 32] = [
    ("Divide error", "#DE"),
    ("Debug", "#DB"),
    ("Non-maskable interrupt", "NMI"),
    ("Breakpoint", "#BP"),
    ("Overflow", "#OF"),
    ("BOUND range exceeded", "#BR"),
    ("Invalid opcode", "#UD"),
    ("Device not available", "#NM"),
    ("Double fault", "#DF"),
    ("Coprocessor segment overrun", "#CSO"),
    ("Invalid TSS", "#TS"),
    ("Segment not present", "#NP"),
    ("Stack-segment fault", "#SS"),
    ("General protection fault", "#GP"),
    ("Page fault", "#PF"),
    ("Reserved", "#15"),
    ("x87 floating-point error", "#MF"),
    ("Alignment check", "#AC"),
    ("Machine check", "#MC"),
    ("SIMD floating-point error", "#XM"),
    ("Virtualization exception", "#VE"),
    ("Control protection exception", "#CP"),
    ("Reserved", "#22"),
    ("Reserved", "#23"),
    ("Reserved", "#24"),
    ("Reserved", "#25"),
    ("Reserved", "#26"),
    ("Reserved", "#27"),
    ("Hypervisor injection exception", "#HV"),
    ("VMM communication exception", "#VC"),
    ("Security exception", "#SX"),
    ("Reserved", "#31"),
];

pub const VECTOR_PAGE_FAULT: u64 = 14;
/// First vector of the legacy PIC's IRQs.
pub const IRQ_BASE: u8 = 32;
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// A raw 16-byte IDT gate.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Gate([u64; 2]);

#[repr(C, align(4096))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

fn gate(handler: u64, ist: u8, user_callable: bool) -> Gate {
    let dpl: u64 = if user_callable { 3 } else { 0 };
    let low = (handler & 0xffff)
        | (u64::from(gdt::KERNEL_CS) << 16)
        | (u64::from(ist & 7) << 32)
        | (0xe << 40) // 64-bit interrupt gate: IF cleared on entry
        | (dpl << 45)
        | (1 << 47) // present
        | ((handler >> 16) & 0xffff) << 48;
    Gate([low, handler >> 32])
}

/// Builds and loads the IDT (every vector goes through the common stub).
pub(crate) fn init() {
    let idt = IDT.call_once(|| {
        // SAFETY: `hal_vector_table` is a 256-entry table of stub addresses emitted above and
        // never written.
        let table = unsafe { &hal_vector_table };
        let mut gates = [Gate([0, 0]); 256];
        for (v, g) in gates.iter_mut().enumerate() {
            let ist = match v {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            // int3 may be used from user mode (debuggers); everything else is kernel-only.
            *g = gate(table[v], ist, v == 3);
        }
        Idt(gates)
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is 'static (a `Once`), fully initialised, and every gate points at a stub
    // in this module with the kernel code selector the GDT defines.
    unsafe { lidt(&ptr) };
}

/// A handler for an exception: returns true if it dealt with it (e.g. killed a user task) and
/// execution may resume with the (possibly modified) frame.
pub type ExceptionHook = fn(&mut TrapFrame) -> bool;
/// A device interrupt handler that is a plain function.
pub type IrqHandler = fn(&mut TrapFrame);

/// A device interrupt handler that is an object (a driver's top half, which reaches the
/// driver's state through `&self` instead of statics). Runs with interrupts off on this CPU,
/// after the interrupt controller has been acknowledged.
pub trait InterruptHandler: Sync {
    fn handle(&self, frame: &mut TrapFrame);
}

/// What a vector is registered to.
#[derive(Clone, Copy)]
pub enum Handler {
    Fn(IrqHandler),
    Object(&'static dyn InterruptHandler),
}

impl Handler {
    fn call(self, frame: &mut TrapFrame) {
        match self {
            Handler::Fn(f) => f(frame),
            Handler::Object(o) => o.handle(frame),
        }
    }
}

impl From<IrqHandler> for Handler {
    fn from(f: IrqHandler) -> Self {
        Handler::Fn(f)
    }
}

impl From<&'static dyn InterruptHandler> for Handler {
    fn from(o: &'static dyn InterruptHandler) -> Self {
        Handler::Object(o)
    }
}

/// Typed slots (no function pointers kept as integers), each set once and read without a
/// lock: an interrupt costs one atomic load to find its handler (as the integer tables did),
/// and an NMI or a fault nested in another exception never waits.
static EXCEPTION_HOOK: Once<ExceptionHook> = Once::new();
static USER_RETURN_HOOK: Once<IrqHandler> = Once::new();
static HANDLERS: [Once<Handler>; 256] = [const { Once::new() }; 256];

/// Installs the kernel's exception hook (called before the fault report). Once only: a second
/// call panics.
pub fn set_exception_hook(hook: ExceptionHook) {
    let mut set = false;
    EXCEPTION_HOOK.call_once(|| {
        set = true;
        hook
    });
    assert!(set, "exception hook set twice");
}

/// Installs the kernel's return-to-user hook: called with interrupts off after every interrupt
/// or handled exception that came from user mode, just before `iretq` returns there (the
/// timer's included), so that a kill or a signal takes effect at the next return to user mode
/// however the thread entered the kernel. It may change the frame (a signal handler's entry)
/// or never return (the thread dies). Once only: a second call panics.
pub fn set_user_return_hook(hook: IrqHandler) {
    let mut set = false;
    USER_RETURN_HOOK.call_once(|| {
        set = true;
        hook
    });
    assert!(set, "user-return hook set twice");
}

fn return_to_user(frame: &mut TrapFrame) {
    if frame.from_user()
        && let Some(hook) = USER_RETURN_HOOK.get()
    {
        hook(frame);
    }
}

/// Installs function `handler` for interrupt vector `vector` (32..=255). Panics if the vector
/// is an exception or already has a handler.
pub fn set_handler(vector: u8, handler: IrqHandler) {
    if let Err(e) = register(vector, Handler::Fn(handler)) {
        panic!("set_handler({vector}): {e}");
    }
}

/// Installs `handler` (a function or a `'static` handler object) for interrupt vector `vector`
/// (32..=255). A vector is registered once.
pub fn register(vector: u8, handler: Handler) -> Result<(), &'static str> {
    if vector < 32 {
        return Err("vectors below 32 are CPU exceptions");
    }
    let mut set = false;
    HANDLERS[vector as usize].call_once(|| {
        set = true;
        handler
    });
    if set { Ok(()) } else { Err("the vector already has a handler") }
}

#[unsafe(no_mangle)]
extern "C" fn hal_trap_dispatch(frame: &mut TrapFrame) {
    let v = frame.vector;
    if v < 32 {
        if let Some(hook) = EXCEPTION_HOOK.get()
            && hook(frame)
        {
            return_to_user(frame);
            return;
        }
        crate::fault::report_exception(frame);
        crate::fatal_println!("system halted.");
        crate::cpu::power_off(crate::cpu::ExitCode::Failure);
    }
    let vec = v as u8;
    if vec == crate::apic::SPURIOUS_VECTOR {
        return; // LAPIC spurious: no EOI
    }
    let from_pic = !IOAPIC_MODE.load(Ordering::Relaxed) && (IRQ_BASE..IRQ_BASE + 16).contains(&vec);
    if from_pic {
        if crate::pic::is_spurious(vec) {
            return;
        }
        crate::pic::end_of_interrupt(vec);
    } else {
        crate::apic::eoi();
    }
    // Acknowledged before the handler runs: a handler may switch to another thread and come
    // back much later. Interrupts stay off on this CPU until the handler returns or switches.
    match HANDLERS[v as usize].get() {
        Some(h) => h.call(frame),
        None => crate::println!("hal: unexpected interrupt, vector {v}"),
    }
    return_to_user(frame);
}

static IOAPIC_MODE: AtomicBool = AtomicBool::new(false);

/// Routes legacy ISA interrupt `irq` to `handler` on this CPU: through the IOAPIC when the
/// machine has one (then the 8259s stay fully masked), else through the 8259 PIC.
pub fn route_isa_irq(irq: u8, handler: Handler) -> Result<(), &'static str> {
    if irq >= 16 {
        return Err("ISA IRQs are 0..15");
    }
    let vector = IRQ_BASE + irq;
    register(vector, handler)?;
    if crate::questv::sandbox().is_some() {
        // In a Quest-V sandbox the IOAPIC belongs to the monitor, which routes our own
        // devices' pins to this core (the 8259s stay masked: interrupts arrive via the APIC).
        IOAPIC_MODE.store(true, Ordering::Relaxed);
        return crate::questv::route_isa_irq(irq, vector).map_err(|_| "the Quest-V monitor refused to route the IRQ");
    }
    if crate::ioapic::present() {
        IOAPIC_MODE.store(true, Ordering::Relaxed);
        crate::ioapic::route_isa(irq, vector, crate::apic::id())
    } else {
        crate::pic::unmask(irq);
        Ok(())
    }
}

/// Routes the PCI INTx line firmware wired to ISA IRQ `irq` (a function's Interrupt Line) to
/// `handler` on this CPU, level-triggered through the IOAPIC; returns the vector. Several
/// functions sharing the line share this one handler (the kernel's line object).
pub fn route_pci_intx(irq: u8, handler: Handler) -> Result<u8, &'static str> {
    if irq >= 16 {
        return Err("PCI Interrupt Line beyond the ISA IRQs (no ACPI _PRT interpreter): not supported yet");
    }
    if crate::questv::sandbox().is_some() {
        // The IOAPIC is the monitor's: it routes the line if one of our functions is on it.
        let vector = IRQ_BASE + irq;
        register(vector, handler)?;
        IOAPIC_MODE.store(true, Ordering::Relaxed);
        crate::questv::route_pci_intx(irq, vector, false).map_err(|_| "the Quest-V monitor refused to route the PCI interrupt line")?;
        return Ok(vector);
    }
    if !crate::ioapic::present() {
        return Err("PCI INTx without an IOAPIC: not supported yet");
    }
    let vector = IRQ_BASE + irq;
    register(vector, handler)?;
    IOAPIC_MODE.store(true, Ordering::Relaxed);
    crate::ioapic::route_pci_line(irq, vector, crate::apic::id())?;
    Ok(vector)
}

/// Masks a PCI INTx line routed by [`route_pci_intx`] (an interrupt storm).
pub fn mask_pci_intx(irq: u8) -> Result<(), &'static str> {
    if crate::questv::sandbox().is_some() {
        return crate::questv::route_pci_intx(irq, IRQ_BASE + irq, true).map_err(|_| "the Quest-V monitor refused to mask the line");
    }
    crate::ioapic::set_isa_masked(irq, true)
}

/// Registers `handler` on a free vector for MSI (from 0xB0 down to 0x60); returns the vector.
pub fn register_msi(handler: Handler) -> Result<u8, &'static str> {
    for v in (0x60..=0xb0u8).rev() {
        if HANDLERS[v as usize].get().is_none() && register(v, handler).is_ok() {
            return Ok(v);
        }
    }
    Err("no free interrupt vector for MSI")
}
