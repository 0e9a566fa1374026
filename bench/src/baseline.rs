//! THE BASELINE — not kadvisor. A cAdvisor-style collector written for this
//! benchmark: for every container it reads the cgroupfs and procfs files cAdvisor's
//! v1 handler reads for the metric groups cpu, memory, diskIO, process and network
//! (cpuacct usage/stat/percpu, cpu.stat and CFS settings, memory usage/max/stat/
//! failcnt/limits, blkio recursive service bytes/ios, pids, cgroup.procs, every
//! process's fd directory with a readlink per fd, limits, net/dev) and renders
//! the same families as Prometheus text. kadvisor's figures are reported as ratios
//! against this, measured in the same run on the same cgroups.
use std::{fmt::Write as _, fs, path::Path};

/// Where each v1 controller (or the v2 tree) is mounted.
pub struct Mounts {
    pub cpu: String,
    pub cpuacct: String,
    pub memory: String,
    pub blkio: String,
    pub pids: String,
}

impl Mounts {
    pub fn detect() -> Self {
        let base = "/sys/fs/cgroup";
        let pick = |name: &str| {
            let v1 = format!("{base}/{name}");
            if Path::new(&v1).exists() {
                v1
            } else {
                base.to_owned()
            }
        };
        Self {
            cpu: pick("cpu"),
            cpuacct: pick("cpuacct"),
            memory: pick("memory"),
            blkio: pick("blkio"),
            pids: pick("pids"),
        }
    }
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn number(path: &str) -> f64 {
    read(path).trim().parse().unwrap_or(0.0)
}

/// One full collection over `containers`, returning the exposition body.
pub fn collect(mounts: &Mounts, containers: &[String]) -> String {
    let mut out = String::with_capacity(containers.len() * 3000);
    for path in containers {
        let labels =
            format!("container=\"\",id=\"{path}\",image=\"\",name=\"\",namespace=\"\",pod=\"\"");
        let mut sample = |name: &str, extra: &str, value: f64| {
            let _ = writeln!(out, "{name}{{{labels}{extra}}} {value}");
        };
        // cpu
        let acct = format!("{}{path}", mounts.cpuacct);
        sample(
            "container_cpu_usage_seconds_total",
            ",cpu=\"total\"",
            number(&format!("{acct}/cpuacct.usage")) / 1e9,
        );
        for (i, v) in read(&format!("{acct}/cpuacct.usage_percpu"))
            .split_whitespace()
            .enumerate()
        {
            sample(
                "container_cpu_usage_seconds_total",
                &format!(",cpu=\"cpu{i:02}\""),
                v.parse::<f64>().unwrap_or(0.0) / 1e9,
            );
        }
        for line in read(&format!("{acct}/cpuacct.stat")).lines() {
            if let Some((k, v)) = line.split_once(' ') {
                sample(
                    &format!("container_cpu_{k}_seconds_total"),
                    "",
                    v.parse::<f64>().unwrap_or(0.0) / 100.0,
                );
            }
        }
        let cpu = format!("{}{path}", mounts.cpu);
        for line in read(&format!("{cpu}/cpu.stat")).lines() {
            if let Some((k, v)) = line.split_once(' ') {
                sample(
                    &format!("container_cpu_cfs_{k}"),
                    "",
                    v.parse().unwrap_or(0.0),
                );
            }
        }
        for file in ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"] {
            sample("container_spec_cpu", "", number(&format!("{cpu}/{file}")));
        }
        // memory
        let mem = format!("{}{path}", mounts.memory);
        for file in [
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
            "memory.failcnt",
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.kmem.usage_in_bytes",
        ] {
            sample("container_memory", "", number(&format!("{mem}/{file}")));
        }
        for line in read(&format!("{mem}/memory.stat")).lines() {
            if let Some((k, v)) = line.split_once(' ')
                && k.starts_with("total_")
            {
                sample(
                    &format!("container_memory_{k}"),
                    "",
                    v.parse().unwrap_or(0.0),
                );
            }
        }
        // diskIO
        let blk = format!("{}{path}", mounts.blkio);
        for file in [
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ] {
            for line in read(&format!("{blk}/{file}")).lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if let [device, op, value] = fields.as_slice() {
                    sample(
                        "container_blkio_device_usage_total",
                        &format!(",device=\"{device}\",operation=\"{op}\""),
                        value.parse().unwrap_or(0.0),
                    );
                }
            }
        }
        // process
        let pids = format!("{}{path}", mounts.pids);
        sample(
            "container_threads",
            "",
            number(&format!("{pids}/pids.current")),
        );
        sample(
            "container_threads_max",
            "",
            number(&format!("{pids}/pids.max")),
        );
        let procs = read(&format!("{cpu}/cgroup.procs"));
        let members: Vec<&str> = procs.lines().collect();
        let (mut fds, mut sockets) = (0u64, 0u64);
        for pid in &members {
            if let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) {
                for entry in entries.flatten() {
                    fds += 1;
                    if fs::read_link(entry.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                    {
                        sockets += 1;
                    }
                }
            }
        }
        sample("container_processes", "", members.len() as f64);
        sample("container_file_descriptors", "", fds as f64);
        sample("container_sockets", "", sockets as f64);
        if let Some(first) = members.first() {
            let limits = read(&format!("/proc/{first}/limits"));
            let soft = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            sample("container_ulimits_soft", ",ulimit=\"max_open_files\"", soft);
            // network
            for line in read(&format!("/proc/{first}/net/dev")).lines().skip(2) {
                if let Some((iface, counters)) = line.split_once(':') {
                    let iface = iface.trim();
                    if iface == "lo" {
                        continue;
                    }
                    for (i, v) in counters.split_whitespace().take(4).enumerate() {
                        sample(
                            "container_network_receive",
                            &format!(",interface=\"{iface}\",field=\"{i}\""),
                            v.parse().unwrap_or(0.0),
                        );
                    }
                }
            }
        }
    }
    out
}
