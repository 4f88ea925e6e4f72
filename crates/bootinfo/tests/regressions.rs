//! Inputs that once crashed the multiboot2 fuzz target (`fuzz/regressions/multiboot2/`): each
//! parses to an error or a `BootInfo` whose every accessor works, without a panic.
#[test]
fn fuzz_regressions_parse_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/multiboot2");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        if let Ok(info) = bootinfo::parse(&bytes, 0x10_0000) {
            let _ = info.usable_bytes();
            for m in info.modules() {
                assert!(m.range.start <= m.range.end);
            }
            let _ = (info.cmdline(), info.loader_name());
        }
        n += 1;
    }
    assert!(n >= 3, "expected the checked-in regressions, found {n}");
}
