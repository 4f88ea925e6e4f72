//! The System V x86-64 initial process stack and the auxiliary vector.
//!
//! Layout produced by [`StackParams::build`], from `stack_top` downwards (like Linux):
//!
//! ```text
//! stack_top →  8 zero bytes (end marker)
//!              execfn string, NUL-terminated (if any)            ← AT_EXECFN
//!              argv[0] … argv[argc-1], envp[0] … strings, each NUL-terminated, ascending
//!              platform string, NUL-terminated (if non-empty)    ← AT_PLATFORM
//!              16 random bytes                                   ← AT_RANDOM
//!              zero padding to 16-byte alignment of rsp
//!              auxv pairs …, (AT_NULL, 0)
//!              0 ; envp pointers
//!              0 ; argv pointers
//! rsp →        argc                                              (rsp % 16 == 0)
//! ```

use alloc::vec::Vec;

use crate::Error;
use crate::plan::{LoadPlan, PAGE_SIZE};

/// End of the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// Address of the program headers.
pub const AT_PHDR: u64 = 3;
/// Size of one program header.
pub const AT_PHENT: u64 = 4;
/// Number of program headers.
pub const AT_PHNUM: u64 = 5;
/// Page size.
pub const AT_PAGESZ: u64 = 6;
/// Base address of the interpreter (0: none, as for every static program).
pub const AT_BASE: u64 = 7;
/// Flags (0).
pub const AT_FLAGS: u64 = 8;
/// Program entry point.
pub const AT_ENTRY: u64 = 9;
/// Real user id.
pub const AT_UID: u64 = 11;
/// Effective user id.
pub const AT_EUID: u64 = 12;
/// Real group id.
pub const AT_GID: u64 = 13;
/// Effective group id.
pub const AT_EGID: u64 = 14;
/// Address of the platform string (e.g. "x86_64").
pub const AT_PLATFORM: u64 = 15;
/// CPU capability bits (CPUID.1:EDX on x86).
pub const AT_HWCAP: u64 = 16;
/// Clock ticks per second (`times()`).
pub const AT_CLKTCK: u64 = 17;
/// Secure mode (setuid-like): 0 or 1.
pub const AT_SECURE: u64 = 23;
/// Address of 16 random bytes (stack protector and pointer guard seeds).
pub const AT_RANDOM: u64 = 25;
/// More CPU capability bits.
pub const AT_HWCAP2: u64 = 26;
/// Address of the executed file's name.
pub const AT_EXECFN: u64 = 31;

/// Limit on the argument and environment strings (with their NULs) plus their pointer arrays,
/// the execfn string and the platform string.
pub const ARG_MAX: usize = 128 * 1024;
/// Limit on auxiliary vector entries, including the ones the builder adds and `AT_NULL`.
pub const MAX_AUXV: usize = 64;

/// The auxv entries the stack builder owns: caller entries with these keys are dropped.
const BUILDER_KEYS: [u64; 4] = [AT_NULL, AT_PLATFORM, AT_RANDOM, AT_EXECFN];

/// Process attributes for [`standard_auxv`]. The default is root with no capabilities,
/// `AT_CLKTCK` 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuxvParams {
    /// `AT_UID`.
    pub uid: u64,
    /// `AT_EUID`.
    pub euid: u64,
    /// `AT_GID`.
    pub gid: u64,
    /// `AT_EGID`.
    pub egid: u64,
    /// `AT_SECURE`.
    pub secure: bool,
    /// `AT_HWCAP`.
    pub hwcap: u64,
    /// `AT_HWCAP2`.
    pub hwcap2: u64,
    /// `AT_CLKTCK`.
    pub clktck: u64,
}

impl Default for AuxvParams {
    fn default() -> Self {
        AuxvParams {
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            secure: false,
            hwcap: 0,
            hwcap2: 0,
            clktck: 100,
        }
    }
}

/// The auxiliary vector Linux gives a static program, for `plan`: `AT_PHDR` (when the
/// headers are loaded), `AT_PHENT`, `AT_PHNUM`, `AT_PAGESZ`, `AT_BASE` = 0 (no interpreter:
/// musl's static-pie start code then finds its base from `AT_PHDR` and `PT_DYNAMIC`),
/// `AT_FLAGS` = 0, `AT_ENTRY`, the ids, `AT_SECURE`, `AT_HWCAP`, `AT_HWCAP2`, `AT_CLKTCK`.
/// The stack builder adds `AT_RANDOM`, `AT_PLATFORM`, `AT_EXECFN` and `AT_NULL`.
pub fn standard_auxv(plan: &LoadPlan, p: &AuxvParams) -> Vec<(u64, u64)> {
    let mut v = Vec::with_capacity(16);
    v.push((AT_HWCAP, p.hwcap));
    v.push((AT_PAGESZ, PAGE_SIZE));
    v.push((AT_CLKTCK, p.clktck));
    if let Some(phdr) = plan.phdr_vaddr {
        v.push((AT_PHDR, phdr));
    }
    v.push((AT_PHENT, u64::from(plan.phentsize)));
    v.push((AT_PHNUM, u64::from(plan.phnum)));
    v.push((AT_BASE, 0));
    v.push((AT_FLAGS, 0));
    v.push((AT_ENTRY, plan.entry));
    v.push((AT_UID, p.uid));
    v.push((AT_EUID, p.euid));
    v.push((AT_GID, p.gid));
    v.push((AT_EGID, p.egid));
    v.push((AT_SECURE, u64::from(p.secure)));
    v.push((AT_HWCAP2, p.hwcap2));
    v
}

/// Everything that goes on the initial stack.
#[derive(Clone, Copy, Debug)]
pub struct StackParams<'a> {
    /// Argument strings (without NULs; the builder terminates them).
    pub argv: &'a [&'a [u8]],
    /// Environment strings (`NAME=value`, without NULs).
    pub envp: &'a [&'a [u8]],
    /// Auxiliary vector entries. Entries keyed `AT_NULL`, `AT_PLATFORM`, `AT_RANDOM` or
    /// `AT_EXECFN` are dropped: the builder adds those itself, pointing into the stack.
    pub auxv: &'a [(u64, u64)],
    /// The 16 bytes `AT_RANDOM` points to.
    pub random: [u8; 16],
    /// The platform string (`AT_PLATFORM`); empty means no `AT_PLATFORM`.
    pub platform: &'a [u8],
    /// The executed file's name (`AT_EXECFN`); `None` means no `AT_EXECFN`.
    pub execfn: Option<&'a [u8]>,
}

/// Builds the initial stack; `AT_EXECFN` points to a copy of `argv[0]` (if there is one).
/// Returns the bytes to place so that they end at `stack_top`, and the initial `rsp` (the
/// address of the first byte, 16-byte aligned, pointing at `argc`). See [`StackParams`].
pub fn build_initial_stack(
    stack_top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    auxv: &[(u64, u64)],
    random16: [u8; 16],
    platform: &[u8],
) -> Result<(Vec<u8>, u64), Error> {
    StackParams {
        argv,
        envp,
        auxv,
        random: random16,
        platform,
        execfn: argv.first().copied(),
    }
    .build(stack_top)
}

/// Writes little-endian words and byte strings into the stack image at absolute addresses.
struct Image {
    base: u64,
    bytes: Vec<u8>,
}

impl Image {
    fn put(&mut self, addr: u64, data: &[u8]) {
        // Every address is computed inside `base..stack_top` by `build`.
        let off = (addr - self.base) as usize;
        if let Some(dst) = self.bytes.get_mut(off..off + data.len()) {
            dst.copy_from_slice(data);
        } else {
            debug_assert!(false, "stack write outside the image");
        }
    }
    fn word(&mut self, addr: u64, value: u64) {
        self.put(addr, &value.to_le_bytes());
    }
}

impl StackParams<'_> {
    /// Builds the stack image; see [`build_initial_stack`] for what is returned.
    pub fn build(&self, stack_top: u64) -> Result<(Vec<u8>, u64), Error> {
        let all_strings = || {
            self.argv
                .iter()
                .chain(self.envp)
                .chain(self.execfn.iter())
                .chain(core::iter::once(&self.platform))
        };
        if all_strings().any(|s| s.contains(&0)) {
            return Err(Error::NulInString);
        }
        // Size limits, in usize with saturation (the comparisons then fail closed).
        let arg_strings: usize = self
            .argv
            .iter()
            .chain(self.envp)
            .map(|s| s.len().saturating_add(1))
            .fold(0, usize::saturating_add);
        let pointers = self
            .argv
            .len()
            .saturating_add(self.envp.len())
            .saturating_add(2)
            .saturating_mul(8);
        let extra = self.execfn.map_or(0, |s| s.len().saturating_add(1));
        let needed = arg_strings
            .saturating_add(pointers)
            .saturating_add(extra)
            .saturating_add(self.platform.len());
        if needed > ARG_MAX {
            return Err(Error::ArgumentsTooLarge {
                needed,
                limit: ARG_MAX,
            });
        }
        let kept_aux = self
            .auxv
            .iter()
            .filter(|(k, _)| !BUILDER_KEYS.contains(k))
            .count();
        let naux = kept_aux
            + 1 // AT_RANDOM
            + usize::from(!self.platform.is_empty())
            + usize::from(self.execfn.is_some())
            + 1; // AT_NULL
        if naux > MAX_AUXV {
            return Err(Error::TooManyAuxEntries(naux));
        }

        // Layout, top down. All sizes are bounded by ARG_MAX and MAX_AUXV now, so only the
        // subtractions from `stack_top` can fail.
        let low = Error::StackTopTooLow;
        let mut p = stack_top.checked_sub(8).ok_or(low)?;
        let execfn_addr = match self.execfn {
            Some(s) => {
                p = p.checked_sub(s.len() as u64 + 1).ok_or(low)?;
                Some(p)
            }
            None => None,
        };
        let strings_start = p.checked_sub(arg_strings as u64).ok_or(low)?;
        p = strings_start;
        let platform_addr = if self.platform.is_empty() {
            None
        } else {
            p = p.checked_sub(self.platform.len() as u64 + 1).ok_or(low)?;
            Some(p)
        };
        let random_addr = p.checked_sub(16).ok_or(low)?;
        let words = 1 + self.argv.len() + 1 + self.envp.len() + 1 + 2 * naux;
        let rsp = random_addr.checked_sub(words as u64 * 8).ok_or(low)? & !15;

        let mut img = Image {
            base: rsp,
            bytes: alloc::vec![0; (stack_top - rsp) as usize],
        };
        // Strings.
        if let (Some(addr), Some(s)) = (execfn_addr, self.execfn) {
            img.put(addr, s);
        }
        let mut string_ptrs = Vec::with_capacity(self.argv.len() + self.envp.len());
        let mut at = strings_start;
        for s in self.argv.iter().chain(self.envp) {
            img.put(at, s);
            string_ptrs.push(at);
            at += s.len() as u64 + 1;
        }
        if let Some(addr) = platform_addr {
            img.put(addr, self.platform);
        }
        img.put(random_addr, &self.random);

        // argc, argv, envp, auxv.
        let mut w = rsp;
        let mut push = |img: &mut Image, value: u64| {
            img.word(w, value);
            w += 8;
        };
        push(&mut img, self.argv.len() as u64);
        let (argv_ptrs, envp_ptrs) = string_ptrs.split_at(self.argv.len());
        for &ptr in argv_ptrs {
            push(&mut img, ptr);
        }
        push(&mut img, 0);
        for &ptr in envp_ptrs {
            push(&mut img, ptr);
        }
        push(&mut img, 0);
        for &(k, v) in self.auxv.iter().filter(|(k, _)| !BUILDER_KEYS.contains(k)) {
            push(&mut img, k);
            push(&mut img, v);
        }
        if let Some(addr) = platform_addr {
            push(&mut img, AT_PLATFORM);
            push(&mut img, addr);
        }
        push(&mut img, AT_RANDOM);
        push(&mut img, random_addr);
        if let Some(addr) = execfn_addr {
            push(&mut img, AT_EXECFN);
            push(&mut img, addr);
        }
        push(&mut img, AT_NULL);
        push(&mut img, 0);
        debug_assert!(w <= random_addr);
        Ok((img.bytes, rsp))
    }
}
