//! Machine families (`machine_*` with `boot_id`, `machine_id`, `system_uuid`), the
//! per-scrape error gauges `machine_scrape_error` / `container_scrape_error`, and
//! `cadvisor_version_info`.
//!
//! Read at every scrape: CPU hotplug and memory hotplug change them, and the reads
//! are a handful of small procfs/sysfs files (two per online CPU for the topology).
//! Identity files that cannot be read give `""`, as cAdvisor does.
use std::{collections::HashSet, path::PathBuf};

use super::samples::{MetricType, SampleSet};
use crate::cgroup::{CgroupError, files::read_optional};

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: CgroupError,
    },
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot parse {path}: {text:?}")]
    Parse { path: PathBuf, text: String },
}

/// Where the host's procfs, sysfs and /etc live: `/` normally, a fixture tree in
/// tests, a host mount (`/rootfs`) in a container.
#[derive(Debug, Clone)]
pub struct HostPaths {
    root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self::new(PathBuf::from("/"))
    }
}

impl HostPaths {
    pub const fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn optional(&self, relative: &str) -> Result<Option<String>, MachineError> {
        let path = self.path(relative);
        read_optional(&path).map_err(|source| MachineError::Read { path, source })
    }

    fn required(&self, relative: &str) -> Result<String, MachineError> {
        self.optional(relative)?
            .ok_or_else(|| MachineError::Missing {
                path: self.path(relative),
            })
    }

    /// An identity file's first line, or `""` when it cannot be read.
    fn identity(&self, relative: &str) -> String {
        self.optional(relative)
            .ok()
            .flatten()
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    }
}

/// The parts of /proc/meminfo kadvisor uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub mem_total: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Meminfo {
    pub fn read(host: &HostPaths) -> Result<Self, MachineError> {
        let text = host.required("proc/meminfo")?;
        Self::parse(&text).ok_or_else(|| MachineError::Parse {
            path: host.path("proc/meminfo"),
            text: text.lines().next().unwrap_or_default().to_owned(),
        })
    }

    /// `MemTotal`, `SwapTotal` and `SwapFree` (kB in the file) in bytes; `None` when
    /// MemTotal is missing. A kernel without swap support has no Swap lines: 0.
    pub fn parse(text: &str) -> Option<Self> {
        let kib = |key: &str| {
            text.lines().find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                let number = rest.trim().trim_end_matches("kB").trim();
                number.parse::<u64>().ok().map(|n| n * 1024)
            })
        };
        Some(Self {
            mem_total: kib("MemTotal")?,
            swap_total: kib("SwapTotal").unwrap_or(0),
            swap_free: kib("SwapFree").unwrap_or(0),
        })
    }

    /// Swap in use on the host.
    pub const fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }
}

/// CPU topology of the online CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Topology {
    /// Online logical CPUs.
    pub cores: usize,
    /// Distinct (package, core) pairs.
    pub physical_cores: usize,
    /// Distinct packages.
    pub sockets: usize,
}

impl Topology {
    pub fn read(host: &HostPaths) -> Result<Self, MachineError> {
        let online_file = "sys/devices/system/cpu/online";
        let online = host.required(online_file)?;
        let cpus = parse_cpu_list(&online).ok_or_else(|| MachineError::Parse {
            path: host.path(online_file),
            text: online.trim().to_owned(),
        })?;
        let mut cores = HashSet::new();
        let mut sockets = HashSet::new();
        for cpu in &cpus {
            let id = |file: &str| -> Result<i64, MachineError> {
                let relative = format!("sys/devices/system/cpu/cpu{cpu}/topology/{file}");
                let text = host.required(&relative)?;
                text.trim().parse().map_err(|_| MachineError::Parse {
                    path: host.path(&relative),
                    text: text.trim().to_owned(),
                })
            };
            let package = id("physical_package_id")?;
            cores.insert((package, id("core_id")?));
            sockets.insert(package);
        }
        Ok(Self {
            cores: cpus.len(),
            physical_cores: cores.len(),
            sockets: sockets.len(),
        })
    }
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Everything the machine families show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub topology: Topology,
    pub meminfo: Meminfo,
    pub kernel_version: String,
    pub os_version: String,
}

impl Machine {
    pub fn read(host: &HostPaths) -> Result<Self, MachineError> {
        let mut machine_id = host.identity("etc/machine-id");
        if machine_id.is_empty() {
            machine_id = host.identity("var/lib/dbus/machine-id");
        }
        let os_release = host.optional("etc/os-release").ok().flatten();
        Ok(Self {
            boot_id: host.identity("proc/sys/kernel/random/boot_id"),
            machine_id,
            system_uuid: host.identity("sys/class/dmi/id/product_uuid"),
            topology: Topology::read(host)?,
            meminfo: Meminfo::read(host)?,
            kernel_version: host.identity("proc/sys/kernel/osrelease"),
            os_version: os_release
                .as_deref()
                .and_then(pretty_name)
                .unwrap_or_default(),
        })
    }
}

fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "CPU counts and memory sizes are far below 2^53"
)]
fn write_machine(out: &mut SampleSet, m: &Machine) {
    let labels = [
        ("boot_id", m.boot_id.as_str()),
        ("machine_id", m.machine_id.as_str()),
        ("system_uuid", m.system_uuid.as_str()),
    ];
    let families: [(&str, &str, f64); 5] = [
        (
            "machine_cpu_cores",
            "Number of logical CPU cores.",
            m.topology.cores as f64,
        ),
        (
            "machine_cpu_physical_cores",
            "Number of physical CPU cores.",
            m.topology.physical_cores as f64,
        ),
        (
            "machine_cpu_sockets",
            "Number of CPU sockets.",
            m.topology.sockets as f64,
        ),
        (
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
            m.meminfo.mem_total as f64,
        ),
        (
            "machine_swap_bytes",
            "Amount of swap memory available on the machine.",
            m.meminfo.swap_total as f64,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, help, MetricType::Gauge);
        out.sample(name, None, &labels, value);
    }
}

/// Writes the machine families (when `machine` was read), the two scrape error
/// gauges and `cadvisor_version_info`.
pub fn write(
    out: &mut SampleSet,
    machine: Option<&Machine>,
    container_failed: bool,
    machine_failed: bool,
) {
    if let Some(m) = machine {
        write_machine(out, m);
    }
    let gauge = |b: bool| if b { 1.0 } else { 0.0 };
    out.family(
        "container_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise.",
        MetricType::Gauge,
    );
    out.sample("container_scrape_error", None, &[], gauge(container_failed));
    out.family(
        "machine_scrape_error",
        "1 if there was an error while getting machine metrics, 0 otherwise.",
        MetricType::Gauge,
    );
    out.sample("machine_scrape_error", None, &[], gauge(machine_failed));
    let kernel = machine.map_or("", |m| m.kernel_version.as_str());
    let os = machine.map_or("", |m| m.os_version.as_str());
    let version = concat!("kadvisor-", env!("CARGO_PKG_VERSION"));
    out.family(
        "cadvisor_version_info",
        "A metric with a constant '1' value labeled by kernel version, OS version, docker version, cAdvisor version & cAdvisor revision (here: kadvisor's version).",
        MetricType::Gauge,
    );
    out.sample(
        "cadvisor_version_info",
        None,
        &[
            ("cadvisorRevision", ""),
            ("cadvisorVersion", version),
            ("dockerVersion", ""),
            ("kernelVersion", kernel),
            ("osVersion", os),
        ],
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, HostPaths) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let host = HostPaths::new(dir.path().to_owned());
        (dir, host)
    }

    fn topology_files(cpus: &[(u32, i64, i64)]) -> Vec<(String, String)> {
        let mut files = Vec::new();
        for &(cpu, package, core) in cpus {
            let base = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            files.push((
                format!("{base}/physical_package_id"),
                format!("{package}\n"),
            ));
            files.push((format!("{base}/core_id"), format!("{core}\n")));
        }
        files
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn two_sockets_with_hyperthreads_and_an_offline_cpu() {
        // 2 packages × 2 cores × 2 threads; CPU 7 offline (its topology is unreadable).
        let topo = topology_files(&[
            (0, 0, 0),
            (1, 0, 1),
            (2, 1, 0),
            (3, 1, 1),
            (4, 0, 0),
            (5, 0, 1),
            (6, 1, 0),
        ]);
        let mut files: Vec<(&str, &str)> =
            topo.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        files.extend([
            ("sys/devices/system/cpu/online", "0-6\n"),
            (
                "proc/meminfo",
                "MemTotal:       24684096 kB\nMemFree: 1 kB\nSwapTotal:  1024 kB\nSwapFree: 256 kB\n",
            ),
            ("proc/sys/kernel/random/boot_id", "b00t\n"),
            ("etc/machine-id", "m4ch1ne\n"),
            ("proc/sys/kernel/osrelease", "6.1.0-test\n"),
            ("etc/os-release", "NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
        ]);
        let (_dir, host) = fixture(&files);
        let m = Machine::read(&host).unwrap();
        assert_eq!(
            m.topology,
            Topology {
                cores: 7,
                physical_cores: 4,
                sockets: 2
            }
        );
        assert_eq!(m.meminfo.mem_total, 24_684_096 * 1024);
        assert_eq!(m.meminfo.swap_total, 1024 * 1024);
        assert_eq!(m.meminfo.swap_used(), 768 * 1024);
        assert_eq!(m.system_uuid, "", "unreadable product_uuid is empty");

        let mut out = SampleSet::default();
        write(&mut out, Some(&m), false, false);
        let text = out.to_text();
        for line in [
            "machine_cpu_cores{boot_id=\"b00t\",machine_id=\"m4ch1ne\",system_uuid=\"\"} 7\n",
            "machine_cpu_physical_cores{boot_id=\"b00t\",machine_id=\"m4ch1ne\",system_uuid=\"\"} 4\n",
            "machine_cpu_sockets{boot_id=\"b00t\",machine_id=\"m4ch1ne\",system_uuid=\"\"} 2\n",
            "machine_memory_bytes{boot_id=\"b00t\",machine_id=\"m4ch1ne\",system_uuid=\"\"} 25276514304\n",
            "container_scrape_error 0\n",
            "machine_scrape_error 0\n",
            "kernelVersion=\"6.1.0-test\",osVersion=\"Debian GNU/Linux 12 (bookworm)\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn missing_meminfo_is_an_error_that_names_the_file() {
        let topo = topology_files(&[(0, 0, 0)]);
        let mut files: Vec<(&str, &str)> =
            topo.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        files.push(("sys/devices/system/cpu/online", "0\n"));
        let (_dir, host) = fixture(&files);
        let err = Machine::read(&host).unwrap_err();
        assert!(matches!(err, MachineError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("proc/meminfo"), "{err}");

        let mut out = SampleSet::default();
        write(&mut out, None, true, true);
        let text = out.to_text();
        assert!(text.contains("machine_scrape_error 1\n"), "{text}");
        assert!(text.contains("container_scrape_error 1\n"), "{text}");
        assert!(!text.contains("machine_cpu_cores{"), "{text}");
    }

    #[test]
    fn meminfo_without_swap_lines() {
        let m = Meminfo::parse("MemTotal: 2048 kB\n").unwrap();
        assert_eq!(
            (m.mem_total, m.swap_total, m.swap_used()),
            (2048 * 1024, 0, 0)
        );
        assert_eq!(Meminfo::parse("SwapTotal: 1 kB\n"), None);
    }
}
