//! The Quest-RS user/kernel ABI: one source of truth for the kernel, the Rust user crate
//! (`libquest`) and the C headers (`user/include/quest.h`, `user/include/vcpu.h`).
//!
//! Quest-RS user programs are static ELF64 Linux x86-64 executables (musl C programs, Rust
//! `std` programs for `x86_64-unknown-linux-musl`). The kernel implements
//!
//! * a subset of the **Linux x86-64 syscall ABI**, with Linux's numbers and Linux's errno
//!   values — [`linux`] re-exports the numbers from `linux-raw-sys` (generated from the Linux
//!   headers), so the kernel and this crate never type them by hand; and
//! * **Quest's own calls** (VCPUs, `ps`, `kill`, `shmcomm` channels, tuned pipes) as extra
//!   syscall numbers in a range Linux does not use — [`nr`].
//!
//! # Calling convention
//!
//! Exactly Linux's: `syscall` with the number in `rax`, arguments in `rdi, rsi, rdx, r10, r8,
//! r9`, the result in `rax`; `rcx` and `r11` are clobbered. A result in `-4095..=-1` is a
//! negated errno ([`Errno::from_ret`]); anything else is success. The C wrappers (`quest.c`)
//! turn an error into `errno = e; return -1`, like every libc wrapper; `libquest` returns
//! `Result<_, Errno>`.
//!
//! # Why the Quest numbers cannot collide with Linux
//!
//! The Quest calls are [`nr::QUEST_BASE`]` + n` with `QUEST_BASE = 0x0051_5500` ("QU" in the
//! middle bytes, the call index in the low byte), i.e. 5,330,176 and up. Linux x86-64 (since
//! 5.x, `arch/x86/entry/common.c: do_syscall_64`) takes the low 32 bits of `rax` as a signed
//! `int nr` and accepts only `0 <= nr < NR_syscalls` (470 in Linux 6.17, growing by roughly ten
//! a year) or, for the x32 ABI, `nr - 0x4000_0000 < X32_NR_syscalls`; every other number gets
//! `-ENOSYS`. So:
//!
//! * Linux's own numbers would need hundreds of thousands of years to reach `QUEST_BASE`;
//! * `QUEST_BASE` and the whole Quest range lie below bit 30 (`__X32_SYSCALL_BIT`), so they are
//!   not x32 numbers either (the tempting `0x5155_0000` has bit 30 set: Linux would treat it
//!   as an x32 call — still `-ENOSYS`, but needlessly in someone else's number space);
//! * the range is positive as an `i32` and as an `i64`, so it survives any sign extension.
//!
//! A Quest program run on Linux therefore gets a clean `ENOSYS` from every Quest call (the
//! tests rely on this), and a Linux program on Quest never reaches a Quest call by accident.
//! Compile-time assertions below check the range against every Linux number this crate
//! re-exports.
//!
//! # Records
//!
//! Every struct crossing the boundary is `#[repr(C)]`, made only of fixed-size integers and
//! byte arrays, with no implicit padding; the tests pin each size and field offset, and
//! `tests/c_header.rs` compiles the C headers with `musl-gcc` and checks that C agrees.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod can;
pub mod errno;
pub mod linux;
pub mod linux_names;
pub mod nr;
pub mod ps;
pub mod questv;
pub mod sched;
pub mod shm;

pub use errno::Errno;
pub use linux_names::linux_syscall_name;
pub use nr::QuestSyscall;
pub use ps::{TASK_NAME_LEN, TaskInfo, TaskState, VcpuInfo};
pub use shm::{BoomerangPlan, BoomerangQos, TpipeGuarantee, TpipeQos};
pub use sched::{AFFINITY_ANY, IO_VCPU, MAIN_VCPU, SchedParam, VcpuType};
