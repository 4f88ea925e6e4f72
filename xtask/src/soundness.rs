//! The soundness check `cargo xtask test` runs first (host part): two house rules read from
//! the source, so a change that breaks them fails CI with the place and the rule.
//!
//! 1. **hal's public safe API takes no raw address.** Every `pub fn` of hal (free function or
//!    method; not `unsafe fn`, not `pub(crate)`/`pub(super)`) is read with `syn`, and each
//!    parameter is flagged when
//!    - its type is a raw pointer (`*const T`, `*mut T`), whatever its name, or
//!    - its type is `u64`, `usize` or `u32` and its name, split at `_`, contains one of
//!      [`ADDRESS_WORDS`] (`addr`, `va`, `phys`, `ptr`, `root`, `top`, `base`, `start`, `page`,
//!      …): the names hal and its callers give to physical and virtual addresses.
//!
//!    A flagged parameter passes only if it is on [`HAL_ALLOWED`] with the reason it cannot cause
//!    undefined behaviour (a user address checked against the page tables, a value only compared,
//!    …). An entry that no longer matches anything is an error too, so the list stays true.
//!    What the heuristic cannot see: an address under a name without those words, or in a
//!    struct field; review still matters. Trait methods are not read (hal defines no public
//!    trait with address parameters; `Pod` has no methods).
//! 2. **`unsafe` only in hal.** Every `.rs` file of the repository outside `hal/`, `user/`
//!    (ring-3 programs and their syscall library, which cannot affect the kernel's soundness)
//!    and `target/` is tokenised (so comments and strings do not count) and each `unsafe` token
//!    (blocks, `unsafe fn`/`impl`/`extern`, `#[unsafe(...)]` attributes) is an error unless the
//!    file is on [`UNSAFE_ALLOWED`] with exactly that many and the reason.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Words of a parameter name that mark it as an address.
pub const ADDRESS_WORDS: &[&str] = &[
    "addr", "address", "va", "pa", "vaddr", "paddr", "phys", "virt", "ptr", "pointer", "root", "top", "bottom", "base",
    "stack", "rsp", "rbp", "rip", "sp", "pml4", "cr3", "start", "end", "p", "frame", "page",
];

/// hal functions allowed a parameter that looks like an address: (function, parameter, why it
/// cannot cause undefined behaviour). The function is `module::path::Type::name` below `hal`.
pub const HAL_ALLOWED: &[(&str, &str, &str)] = &[
    ("mm::space::AddressSpace::map_zeroed", "va", "user virtual address: checked page aligned and below USER_END; only this space's own tables are written"),
    ("mm::space::AddressSpace::protect", "va", "user virtual address: checked like map_zeroed; changes only this space's user page"),
    ("mm::space::AddressSpace::unmap", "va", "user virtual address: checked like map_zeroed; frees only a frame this space owns"),
    ("mm::space::AddressSpace::lookup", "va", "user virtual address: checked below USER_END, only looked up"),
    ("mm::space::AddressSpace::copy_to_user", "va", "user virtual address: every page checked mapped and writable in this space; copied through the direct map"),
    ("mm::space::AddressSpace::fill", "va", "user virtual address: every page checked mapped in this space; copied through the direct map"),
    ("mm::space::AddressSpace::copy_from_user", "va", "user virtual address: every page checked mapped and readable; copied through the direct map"),
    ("mm::space::AddressSpace::read_u32", "va", "user virtual address: as copy_from_user"),
    ("mm::space::AddressSpace::is_shared", "va", "user virtual address: checked below USER_END, only looked up"),
    ("mm::space::AddressSpace::frame_and_shared", "va", "user virtual address: checked below USER_END, only looked up"),
    ("mm::space::AddressSpace::break_cow", "va", "user virtual address: checked like map_zeroed; replaces a copy-on-write leaf of this space with a private copy of the same bytes, the old frame's count given back after the flushes"),
    ("mm::space::AddressSpace::map_shared", "va", "user virtual address: checked like map_zeroed; maps a frame the SharedPage keeps alive and the mapping counts"),
    ("mm::space::AddressSpace::cmpxchg_u32", "va", "user virtual address: checked 4-aligned, mapped readable and writable in this space; one atomic word through the direct map"),
    ("mm::frames::outside_managed_ram", "start", "a query: compares the range with the allocator's bitmap, touches no memory"),
    ("mm::frames::outside_managed_ram", "end", "a query, as start"),
    ("user::initial_frame", "rip", "values for a user-mode frame: enter() forces user selectors and a user-half RIP"),
    ("user::initial_frame", "rsp", "user stack pointer: used in ring 3 only"),
    ("cpu::trigger_wild_write", "phys", "ktest builds only; refuses RAM this kernel manages (the Quest-V containment test)"),
    ("cpu::trigger_page_fault", "addr", "ktest builds only; panics unless the address is unmapped"),
];

/// Files outside hal allowed `unsafe` tokens: (path, how many, why).
pub const UNSAFE_ALLOWED: &[(&str, usize, &str)] = &[
    (
        "kernel/src/sched.rs",
        1,
        "hal::context::switch: whether a context may be resumed depends on the scheduler's bookkeeping, which hal cannot see",
    ),
    (
        "kernel/src/drivers/mod.rs",
        4,
        "MSI needs bus mastering and there is no IOMMU: the unsafe trait DmaFree (a driver's promise never to start DMA) and the one hal::pci::enable_msi call it guards; the unsafe trait DmaDriver (a driver's promise to DMA into hal::dma::DmaBuffers only) and the one hal::pci::enable_bus_master call it guards",
    ),
    (
        "kernel/src/drivers/usb/xhci.rs",
        1,
        "unsafe impl DmaDriver: the xHCI driver gives the controller addresses of its hal::dma::DmaBuffers only",
    ),
    (
        "kernel/src/drivers/usb/ehci.rs",
        1,
        "unsafe impl DmaDriver: the EHCI driver gives the controller addresses of its hal::dma::DmaBuffers only (queue head, qTDs, bounce buffer)",
    ),
    (
        "kernel/src/drivers/edu.rs",
        1,
        "unsafe impl DmaFree: the edu test driver never touches the device's DMA registers",
    ),
];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

/// Module path of a hal source file: `src/mm/space.rs` → `mm::space`, `src/mm/mod.rs` → `mm`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if parts.first().map(String::as_str) == Some("src") {
        parts.remove(0);
    }
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn looks_like_address(name: &str) -> bool {
    name.trim_start_matches('_').split('_').any(|w| ADDRESS_WORDS.contains(&w))
}

fn int_type(t: &syn::Type) -> Option<&'static str> {
    let syn::Type::Path(p) = t else { return None };
    if p.qself.is_some() || p.path.segments.len() != 1 {
        return None;
    }
    match p.path.segments[0].ident.to_string().as_str() {
        "u64" => Some("u64"),
        "usize" => Some("usize"),
        "u32" => Some("u32"),
        _ => None,
    }
}

struct ApiVisitor<'a> {
    file: &'a str,
    module: String,
    self_ty: Vec<String>,
    /// (function path, parameter, line, description)
    found: Vec<(String, String, usize, String)>,
}

impl ApiVisitor<'_> {
    fn check_sig(&mut self, vis: &syn::Visibility, sig: &syn::Signature) {
        if !matches!(vis, syn::Visibility::Public(_)) || sig.unsafety.is_some() {
            return;
        }
        let mut path = self.module.clone();
        if let Some(t) = self.self_ty.last() {
            path = if path.is_empty() { t.clone() } else { format!("{path}::{t}") };
        }
        let path = if path.is_empty() { sig.ident.to_string() } else { format!("{path}::{}", sig.ident) };
        for input in &sig.inputs {
            let syn::FnArg::Typed(pt) = input else { continue };
            let name = match &*pt.pat {
                syn::Pat::Ident(i) => i.ident.to_string(),
                _ => String::from("_"),
            };
            let line = pt.pat_token_line();
            let what = match &*pt.ty {
                syn::Type::Ptr(_) => Some(format!("raw pointer parameter `{name}`")),
                t => int_type(t).filter(|_| looks_like_address(&name)).map(|ty| format!("parameter `{name}: {ty}` looks like a raw address")),
            };
            if let Some(w) = what {
                self.found.push((path.clone(), name, line, w));
            }
        }
    }
}

trait Line {
    fn pat_token_line(&self) -> usize;
}

impl Line for syn::PatType {
    fn pat_token_line(&self) -> usize {
        self.colon_token.spans[0].start().line
    }
}

impl<'ast> Visit<'ast> for ApiVisitor<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check_sig(&f.vis, &f.sig);
        // Functions nested in bodies are private: not visited.
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if i.trait_.is_some() {
            return; // signatures dictated by the trait
        }
        let name = match &*i.self_ty {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        self.self_ty.push(name);
        for item in &i.items {
            if let syn::ImplItem::Fn(m) = item {
                self.check_sig(&m.vis, &m.sig);
            }
        }
        self.self_ty.pop();
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            let saved = self.module.clone();
            self.module = if saved.is_empty() { m.ident.to_string() } else { format!("{saved}::{}", m.ident) };
            syn::visit::visit_item_mod(self, m);
            self.module = saved;
        }
    }
}

/// Rule 1 over hal's sources: `(path relative to hal/, text)`.
pub fn check_hal_api(files: &[(PathBuf, String)], allowed: &[(&str, &str, &str)]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut used = vec![false; allowed.len()];
    for (rel, text) in files {
        let file = format!("hal/{}", rel.display());
        let ast = match syn::parse_file(text) {
            Ok(a) => a,
            Err(e) => {
                out.push(Finding { file, line: e.span().start().line, what: format!("cannot parse: {e}") });
                continue;
            }
        };
        let mut v = ApiVisitor { file: &file, module: module_of(rel), self_ty: Vec::new(), found: Vec::new() };
        v.visit_file(&ast);
        for (path, param, line, what) in v.found {
            match allowed.iter().position(|(f, p, _)| *f == path && *p == param) {
                Some(i) => used[i] = true,
                None => out.push(Finding {
                    file: v.file.to_string(),
                    line,
                    what: format!(
                        "hal::{path}: {what}: a safe hal function must not take a raw address; take a type that carries \
                         the invariant (Frame, KernelStack, PageTableRoot, PhysRegion, a slice ...), make it `unsafe fn` \
                         or `pub(crate)`, or add it to HAL_ALLOWED in xtask/src/soundness.rs with the reason it is sound"
                    ),
                }),
            }
        }
    }
    for (i, (f, p, _)) in allowed.iter().enumerate() {
        if !used[i] {
            out.push(Finding {
                file: "xtask/src/soundness.rs".into(),
                line: 0,
                what: format!("HAL_ALLOWED entry ({f}, {p}) matches no hal function any more: remove it"),
            });
        }
    }
    out
}

fn count_unsafe(ts: TokenStream, lines: &mut Vec<usize>) {
    for t in ts {
        match t {
            TokenTree::Ident(i) if i == "unsafe" => lines.push(i.span().start().line),
            TokenTree::Group(g) => count_unsafe(g.stream(), lines),
            _ => {}
        }
    }
}

/// Rule 2 over `(path relative to the repository, text)` of every checked file.
pub fn check_unsafe(files: &[(PathBuf, String)], allowed: &[(&str, usize, &str)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (rel, text) in files {
        let file = rel.to_string_lossy().replace('\\', "/");
        let ts: TokenStream = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                out.push(Finding { file, line: 0, what: format!("cannot tokenise: {e}") });
                continue;
            }
        };
        let mut lines = Vec::new();
        count_unsafe(ts, &mut lines);
        let limit = allowed.iter().find(|(f, _, _)| *f == file).map(|(_, n, _)| *n);
        match limit {
            Some(n) if n == lines.len() => {}
            Some(n) => out.push(Finding {
                file,
                line: lines.first().copied().unwrap_or(0),
                what: format!(
                    "{} `unsafe` where UNSAFE_ALLOWED (xtask/src/soundness.rs) lists {n}: move the new one into hal behind a \
                     safe API, or update the entry with its reason",
                    lines.len()
                ),
            }),
            None => {
                for line in lines {
                    out.push(Finding {
                        file: file.clone(),
                        line,
                        what: "`unsafe` outside hal: put it in hal behind a safe API (or list the module, with its reason, in \
                               UNSAFE_ALLOWED in xtask/src/soundness.rs)"
                            .into(),
                    });
                }
            }
        }
    }
    for (f, _, _) in allowed {
        if !files.iter().any(|(rel, _)| rel.to_string_lossy().replace('\\', "/") == *f) {
            out.push(Finding { file: "xtask/src/soundness.rs".into(), line: 0, what: format!("UNSAFE_ALLOWED entry {f}: no such file") });
        }
    }
    out
}

fn rust_files(dir: &Path, skip: &[&Path], out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if skip.iter().any(|s| p == *s) || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, skip, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn read_rel(root: &Path, files: Vec<PathBuf>) -> Result<Vec<(PathBuf, String)>> {
    let mut v: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|p| Ok((p.strip_prefix(root)?.to_path_buf(), fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Both rules over the repository at `root`.
pub fn check_tree(root: &Path) -> Result<Vec<Finding>> {
    let hal = root.join("hal");
    let mut hal_files = Vec::new();
    rust_files(&hal.join("src"), &[], &mut hal_files)?;
    let mut findings = check_hal_api(&read_rel(&hal, hal_files)?, HAL_ALLOWED);
    let mut others = Vec::new();
    let skip = [root.join("hal"), root.join("user"), root.join("target"), root.join("fuzz/target")];
    let skip: Vec<&Path> = skip.iter().map(PathBuf::as_path).collect();
    rust_files(root, &skip, &mut others)?;
    findings.extend(check_unsafe(&read_rel(root, others)?, UNSAFE_ALLOWED));
    Ok(findings)
}

/// `cargo xtask test`'s first step.
pub fn run(root: &Path) -> Result<()> {
    let findings = check_tree(root)?;
    if findings.is_empty() {
        println!(
            "xtask: soundness check: ok (hal's public safe API takes no raw address beyond {} justified parameters; unsafe outside hal only in {} listed module(s))",
            HAL_ALLOWED.len(),
            UNSAFE_ALLOWED.len()
        );
        return Ok(());
    }
    for f in &findings {
        eprintln!("{f}");
    }
    bail!("soundness check: {} finding(s)", findings.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hal(src: &str) -> Vec<Finding> {
        check_hal_api(&[(PathBuf::from("src/mm/sample.rs"), src.to_string())], &[])
    }

    #[test]
    fn raw_addresses_in_safe_public_hal_functions_are_refused() {
        let f = hal("pub fn free_frame(p: u64) {}");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].what.contains("hal::mm::sample::free_frame") && f[0].what.contains("`p: u64`"), "{f:?}");
        assert_eq!(f[0].file, "hal/src/mm/sample.rs");
        assert_eq!(f[0].line, 1);
        // Methods, pointers whatever their name, and usize/u32 addresses too.
        let f = hal("pub struct S;\nimpl S {\n    pub fn protect(&mut self, va: u64) {}\n    pub fn set(&self, x: *mut u8) {}\n}\npub fn k(stack_top: usize, page: u32) {}");
        let what: Vec<&str> = f.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(f.len(), 4, "{what:?}");
        assert!(what[0].contains("hal::mm::sample::S::protect") && f[0].line == 3, "{f:?}");
        assert!(what[1].contains("raw pointer parameter `x`"));
        assert!(what[2].contains("`stack_top: usize`") && what[3].contains("`page: u32`"));
    }

    #[test]
    fn unsafe_crate_private_and_value_parameters_pass() {
        let src = "pub unsafe fn a(addr: u64) {}\npub(crate) fn b(va: u64) {}\nfn c(p: u64) {}\n\
                   pub fn d(count: usize, pages: usize, irq: u8, port: u16, value: u64) {}\n\
                   impl core::ops::Drop for X { fn drop(&mut self) {} }\npub fn e(s: &KernelStack) {}";
        assert_eq!(hal(src), vec![]);
    }

    #[test]
    fn the_allow_list_admits_exactly_its_entries_and_stale_ones_fail() {
        let files = [(PathBuf::from("src/cpu.rs"), "pub fn poke(addr: u64) {}".to_string())];
        assert!(check_hal_api(&files, &[("cpu::poke", "addr", "because")]).is_empty());
        let stale = check_hal_api(&files, &[("cpu::poke", "addr", "because"), ("cpu::gone", "va", "old")]);
        assert_eq!(stale.len(), 1);
        assert!(stale[0].what.contains("cpu::gone"), "{stale:?}");
    }

    #[test]
    fn unsafe_outside_hal_is_refused_but_not_in_comments_or_strings() {
        let files = [
            (PathBuf::from("kernel/src/a.rs"), "// unsafe in a comment\n/// doc: unsafe\nfn f() { let s = \"unsafe\"; }".to_string()),
            (PathBuf::from("kernel/src/b.rs"), "fn g() {\n    unsafe { core::hint::unreachable_unchecked() }\n}".to_string()),
            (PathBuf::from("monitor/src/c.rs"), "#[unsafe(no_mangle)]\nextern \"C\" fn h() {}".to_string()),
        ];
        let f = check_unsafe(&files, &[]);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].file.as_str(), f[0].line), ("kernel/src/b.rs", 2));
        assert_eq!((f[1].file.as_str(), f[1].line), ("monitor/src/c.rs", 1));
        // A listed module passes with exactly its count, and fails with one more.
        assert!(check_unsafe(&files[1..2], &[("kernel/src/b.rs", 1, "why")]).is_empty());
        let more = [(PathBuf::from("kernel/src/b.rs"), "fn g() { unsafe {} unsafe {} }".to_string())];
        assert_eq!(check_unsafe(&more, &[("kernel/src/b.rs", 1, "why")]).len(), 1);
    }

    #[test]
    fn module_paths() {
        assert_eq!(module_of(Path::new("src/mm/mod.rs")), "mm");
        assert_eq!(module_of(Path::new("src/lib.rs")), "");
        assert_eq!(module_of(Path::new("src/mm/space.rs")), "mm::space");
    }

    /// The repository itself obeys both rules (also the first step of `cargo xtask test`).
    #[test]
    fn this_repository_passes() {
        let f = check_tree(&crate::root()).unwrap();
        assert!(f.is_empty(), "{}", f.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
    }
}
