//! Command-line flags. Names follow cAdvisor's where a user would type them
//! (`--listen_ip`, `--port`), so existing manifests keep working.
use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr};

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

    /// A CIDR of the cluster's pod network (repeatable, IPv4 or IPv6). Transmitted
    /// socket traffic to it is labelled destination="pod".
    #[arg(long = "pod_cidr", value_name = "CIDR")]
    pub pod_cidr: Vec<Cidr>,

    /// A CIDR of the cluster's service network (repeatable). Traffic to it is
    /// destination="service".
    #[arg(long = "service_cidr", value_name = "CIDR")]
    pub service_cidr: Vec<Cidr>,

    /// A CIDR of the nodes or other private ranges (repeatable). Traffic to it is
    /// destination="node". Addresses in no configured CIDR are destination="external".
    #[arg(long = "node_cidr", value_name = "CIDR")]
    pub node_cidr: Vec<Cidr>,
    /// CRI sockets asked for container metadata (comma-separated). Sockets that do
    /// not exist are skipped; the defaults find containerd, CRI-O and cri-dockerd.
    #[arg(
        long = "cri_endpoints",
        value_delimiter = ',',
        default_value = "/run/containerd/containerd.sock,/var/run/crio/crio.sock,/run/cri-dockerd.sock"
    )]
    pub cri_endpoints: Vec<PathBuf>,

    /// Timeout of each call to a runtime, in milliseconds. Lookups run in the
    /// background; a scrape never waits for a runtime.
    #[arg(long = "runtime_timeout_ms", default_value_t = 2000)]
    pub runtime_timeout_ms: u64,

    /// How long a removed cgroup's final values stay exported, in seconds (the
    /// default covers two 30 s scrapes). Its kernel map entries are reclaimed after.
    #[arg(long = "deleted_grace_seconds", default_value_t = 70.0)]
    pub deleted_grace_seconds: f64,

    /// Full walk of the cgroup tree every this many seconds, to repair anything the
    /// mkdir/rmdir events missed.
    #[arg(long = "reconcile_seconds", default_value_t = 60)]
    pub reconcile_seconds: u64,

    /// Export only the kubelet's rows: the root, the kubepods tree and
    /// --kubelet_extra_cgroups (default: every cgroup, like standalone cAdvisor).
    #[arg(long = "kubelet_rows")]
    pub kubelet_rows: bool,

    /// The runtime's and kubelet's own cgroups exported with --kubelet_rows.
    #[arg(
        long = "kubelet_extra_cgroups",
        value_delimiter = ',',
        default_value = "/system.slice/kubelet.service,/system.slice/containerd.service,/system.slice/crio.service,/system.slice/docker.service"
    )]
    pub kubelet_extra_cgroups: Vec<String>,

    /// Log filter (tracing's env-filter syntax), e.g. `info` or `kadvisor=debug`.
    #[arg(long = "log_level", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// Every configured CIDR with its destination class (`kadvisor_common::DEST_*`).
    pub fn destinations(&self) -> Vec<(Cidr, u32)> {
        let mut out = Vec::new();
        for (cidrs, class) in [
            (&self.pod_cidr, kadvisor_common::DEST_POD),
            (&self.service_cidr, kadvisor_common::DEST_SERVICE),
            (&self.node_cidr, kadvisor_common::DEST_NODE),
        ] {
            out.extend(cidrs.iter().map(|c| (*c, class)));
        }
        out
    }
}

/// An IP network, `address/prefix`. Host bits must be zero, so a typo such as
/// `10.0.0.1/8` is caught instead of silently meaning `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The `DESTINATIONS` trie key: prefix length and IPv6 address, IPv4 mapped to
    /// `::ffff:a.b.c.d` (prefix + 96).
    pub fn trie_key(&self) -> (u32, [u8; 16]) {
        match self.addr {
            IpAddr::V4(v4) => (u32::from(self.prefix) + 96, v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => (u32::from(self.prefix), v6.octets()),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not a CIDR (want address/prefix, e.g. 10.244.0.0/16)")
        })?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix {prefix:?} must be a number from 0 to {max}"))?;
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
        if host_bits != 0 {
            return Err(format!(
                "{text} has host bits set (did you mean the network address?)"
            ));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_cidrs() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(c.trie_key().0, 112);
        assert_eq!(&c.trie_key().1[10..], &[0xff, 0xff, 10, 244, 0, 0]);
        let c: Cidr = "fd00::/8".parse().unwrap();
        assert_eq!(
            c.trie_key(),
            (8, "fd00::".parse::<std::net::Ipv6Addr>().unwrap().octets())
        );
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix, 0);
        assert_eq!(c.to_string(), "fd00::/8");
    }

    #[test]
    fn rejects_bad_cidrs_with_a_reason() {
        for (bad, why) in [
            ("10.0.0.0", "not a CIDR"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0/x", "must be a number"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
