//! Rebuild the eBPF object when bpf-linker changes: cargo does not track the linker.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
