fn main() {
    // The monitor is laid out like the kernel (hal's boot stub, stacks and sections expect
    // exactly that layout), so it links with the kernel's script.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed={dir}/../kernel/linker.ld");
    println!("cargo:rustc-link-arg-bin=quest-v=-T{dir}/../kernel/linker.ld");
    println!("cargo:rustc-link-arg-bin=quest-v=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg-bin=quest-v=--no-pie");
}
