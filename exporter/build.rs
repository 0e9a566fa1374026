//! Builds the eBPF programs in `kernel/` for the BPF target and leaves the object in
//! OUT_DIR, where `bpf::loader` embeds it with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let kernel_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("exporter has no parent directory"))?
        .join("kernel");
    let root_dir = kernel_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", kernel_dir.display()))?;

    // -Z build-std=core is needed for the BPF target; RUSTC_BOOTSTRAP=1 allows it on
    // the stable toolchain the machine has (no nightly can be installed there).
    // SAFETY: the build script is single-threaded at this point; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [Package {
            name: "kadvisor-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom("stable"),
    )
}
