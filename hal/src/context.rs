//! Kernel thread contexts: a saved stack pointer, with the callee-saved registers on the stack.
//! [`switch`] saves the current context and resumes another; a new context starts in
//! [`Context::new`]'s entry function. FPU/SSE/AVX state is separate ([`crate::fpu`]).
use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .global hal_switch_context
hal_switch_context:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .global hal_thread_start
hal_thread_start:
    mov %r13, %rdi
    xor %ebp, %ebp
    call *%r12
    ud2
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn hal_switch_context(save_rsp: *mut u64, new_rsp: u64);
    fn hal_thread_start();
}

/// A suspended kernel thread: its saved stack pointer.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Context {
    rsp: u64,
}

impl Context {
    /// A context that, when switched to, calls `entry(arg)` on `stack` (from its top).
    /// `entry` must never return. Interrupts are disabled when it starts (it runs from a switch,
    /// which the scheduler performs with interrupts off). The start frame is written into the
    /// top 56 bytes of the stack: memory no Rust reference covers (see [`switch`] for when a
    /// stack may be reused).
    pub fn new(stack: &crate::mm::KernelStack, entry: extern "C" fn(usize) -> !, arg: usize) -> Context {
        let top = stack.top() & !0xf;
        let frame: [u64; 7] = [
            0,                              // r15
            0,                              // r14
            arg as u64,                     // r13
            entry as *const () as u64,      // r12
            0,                              // rbx
            0,                              // rbp
            hal_thread_start as *const () as u64, // return address
        ];
        let rsp = top - 8 * frame.len() as u64;
        // Written through the direct map (the page-table walk does not use the TLB), so this
        // CPU, which may not be the one that runs the thread, never caches a translation of the
        // stack's addresses: freed stack slots are unmapped and flushed only on the CPU that ran
        // them (see `mm::alloc_kernel_stack`). The 56 bytes below the page-aligned top lie in one
        // page.
        let target = crate::mm::translate(rsp).map_or(rsp, crate::mm::phys_to_virt);
        // SAFETY: a `KernelStack` keeps all its pages mapped writable while it lives, and its
        // memory is never covered by a Rust reference (it is only ever used as a stack, by a
        // context `switch` resumed, whose contract excludes a second `new` on a running stack);
        // we write the top 56 bytes below the 16-byte-aligned `top`; `target` is the same memory
        // through the direct map (or the stack address itself).
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), target as *mut u64, frame.len()) };
        Context { rsp }
    }

    /// An empty context, filled by the first `switch` away from the running thread.
    pub const fn empty() -> Context {
        Context { rsp: 0 }
    }
}

/// Saves the running thread's context into `from` and resumes `to`.
///
/// # Safety
/// - `to` holds a context saved by a previous `switch` or made by [`Context::new`], whose stack
///   is still allocated, and which is not running on any CPU (nor will be resumed by anyone else
///   until it is saved again).
/// - No [`Context::new`] was made on `to`'s stack after `to` itself (that would overwrite the
///   frames of the thread `to` resumes).
/// - `from` stays valid (not freed, not moved) until someone switches back to it.
/// - Interrupts are disabled (the scheduler's state must not change under the switch).
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    debug_assert!(!crate::cpu::interrupts_enabled());
    // SAFETY: by the caller's contract `to.rsp` points at a frame `hal_switch_context` (or
    // `Context::new`) laid out, and `from` is writable; the callee-saved registers are
    // preserved across the call by the assembly, as the C ABI requires.
    unsafe { hal_switch_context(&raw mut (*from).rsp, (*to).rsp) }
}
