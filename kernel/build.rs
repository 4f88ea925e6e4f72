fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rustc-link-arg-bin=quest=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bin=quest=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg-bin=quest=--no-pie");
}
