//! Command-line flags. Names follow cAdvisor's where a user would type them
//! (`--listen_ip`, `--port`), so existing manifests keep working.
use std::{net::IpAddr, path::PathBuf};

use clap::Parser;

/// cAdvisor's per-container metrics, computed in the kernel with eBPF.
#[derive(Debug, Clone, Parser)]
#[command(name = "kadvisor", version, about)]
pub struct Config {
    /// Address to listen on. The default serves this host only; set 0.0.0.0 (or put a
    /// proxy in front) to let a remote Prometheus scrape.
    #[arg(long = "listen_ip", default_value = "127.0.0.1")]
    pub listen_ip: IpAddr,

    /// Port to listen on (0 picks a free port and logs it).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,

    /// The cgroup v2 mount point. Detected from /proc/self/mountinfo when not given
    /// (/sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one).
    #[arg(long = "cgroup_root")]
    pub cgroup_root: Option<PathBuf>,

    /// Where the running kernel's BTF lives.
    #[arg(long = "btf_path", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf_path: PathBuf,

    /// Capacity of the per-cgroup kernel maps (live plus recently removed cgroups).
    #[arg(long = "max_cgroups", default_value_t = kadvisor_common::MAX_CGROUPS,
          value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub max_cgroups: u32,

    /// Log filter (tracing's env-filter syntax), e.g. `info` or `kadvisor=debug`.
    #[arg(long = "log_level", default_value = "info")]
    pub log_level: String,
}
