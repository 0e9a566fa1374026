//! Builds the eBPF programs in `kernel/` for the BPF target and leaves the object in
//! OUT_DIR, where `bpf::loader` embeds it with `include_bytes_aligned!`; copies the web
//! UI's charting library (uPlot, fetched by scripts/setup.sh) into OUT_DIR, where
//! `http::ui` embeds it with `include_bytes!`.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya_build::{Package, Toolchain};

/// Files of the uPlot npm package the page serves, and its licence.
const UPLOT_FILES: [&str; 3] = ["uPlot.iife.min.js", "uPlot.min.css", "LICENSE"];

fn main() -> anyhow::Result<()> {
    stage_uplot()?;
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

/// Copies uPlot from `$KADVISOR_UPLOT_DIR`, else `~/.cache/kadvisor/web/uplot-<version>`
/// (the version pinned in `src/http/ui/assets/uplot.version`), to `$OUT_DIR/uplot/`.
fn stage_uplot() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let version_file = manifest_dir.join("src/http/ui/assets/uplot.version");
    println!("cargo::rerun-if-changed={}", version_file.display());
    println!("cargo::rerun-if-env-changed=KADVISOR_UPLOT_DIR");
    let version = std::fs::read_to_string(&version_file)
        .with_context(|| format!("read {}", version_file.display()))?;
    let source = match std::env::var_os("KADVISOR_UPLOT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home =
                std::env::var_os("HOME").context("HOME is not set (needed to find uPlot)")?;
            Path::new(&home).join(format!(".cache/kadvisor/web/uplot-{}", version.trim()))
        }
    };
    let target = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?).join("uplot");
    std::fs::create_dir_all(&target).with_context(|| format!("mkdir {}", target.display()))?;
    for file in UPLOT_FILES {
        let from = source.join(file);
        println!("cargo::rerun-if-changed={}", from.display());
        if !from.is_file() {
            bail!(
                "uPlot {} is missing ({} not found; the web UI embeds it): run scripts/setup.sh, or set KADVISOR_UPLOT_DIR to a directory holding {}",
                version.trim(),
                from.display(),
                UPLOT_FILES.join(", ")
            );
        }
        std::fs::copy(&from, target.join(file))
            .with_context(|| format!("copy {} to {}", from.display(), target.display()))?;
    }
    Ok(())
}
