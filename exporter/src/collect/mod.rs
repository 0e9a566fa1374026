//! Scrape-time collection: reads the kernel maps and the cgroup tree and writes
//! cAdvisor's families. Nothing runs between scrapes; every value is read live, so no
//! sample is older than the scrape and none needs a timestamp.
pub mod blkio;
pub mod cpu;
pub mod cpu_stat;
pub mod crashes;
pub mod exposition;
pub mod labels;
pub mod lifetime;
pub mod machine;
pub mod memory;
pub mod net;
pub mod oom;
pub mod pressure;
pub mod process;

use std::{cell::Cell, collections::HashMap, sync::Mutex, time::Instant};

use kadvisor_common::{CgroupCpu, CgroupCrashes, CgroupNet, KernelError};
use prometheus::{Encoder as _, TextEncoder};

use crate::{
    bpf::{BpfError, KernelPrograms, ProgramStats},
    cgroup::{CgroupError, CgroupTree, Hierarchies, PathMemory},
};
use exposition::{Exposition, MetricType};
use labels::ContainerLabels;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("kernel maps")]
    Kernel(#[from] BpfError),
    #[error("cgroup tree")]
    Cgroup(#[from] CgroupError),
    #[error("encoding kadvisor's own metrics")]
    SelfMetrics(#[from] prometheus::Error),
}

/// What the collectors need from the kernel side. `KernelPrograms` is the real one;
/// tests substitute fixed values to test exposition without BPF.
pub trait KernelSource: Send + Sync {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError>;
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError>;
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError>;
    fn program_stats(&self) -> Vec<ProgramStats>;
    /// Whether every program of `family` (see `bpf::PROGRAMS`) is attached: a family
    /// with a missing hook is left out rather than served wrong.
    fn family_attached(&self, family: &str) -> bool {
        self.program_stats()
            .iter()
            .filter(|s| s.family == family)
            .all(|s| s.attached)
    }
    /// Socket traffic per cgroup id (`collect::net`). The default (no traffic) serves
    /// test fakes; the family is only written when its programs are attached.
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        Ok(HashMap::new())
    }
    /// OOM kills per cgroup id (also of removed cgroups).
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError>;
}

impl KernelSource for KernelPrograms {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
        Self::cgroup_cpu(self)
    }
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
        Self::cgroup_crashes(self)
    }
    fn family_attached(&self, family: &str) -> bool {
        crate::bpf::PROGRAMS
            .iter()
            .filter(|spec| spec.family == family)
            .all(|spec| self.is_attached(spec.name))
    }
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
        Self::kernel_errors(self)
    }
    fn program_stats(&self) -> Vec<ProgramStats> {
        Self::program_stats(self)
    }
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        Self::cgroup_net(self)
    }
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
        Self::cgroup_oom_kills(self)
    }
}

/// One exported cgroup row and its rendered label set.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub path: String,
    /// `ContainerLabels::render()` output, shared by every family of the row.
    pub labels: String,
}

impl Row {
    pub fn new(id: u64, path: &str) -> Self {
        Self {
            id,
            path: path.to_owned(),
            labels: ContainerLabels::for_path(path).render(),
        }
    }
}

/// What every family collector gets for one scrape.
pub struct ScrapeContext<'a> {
    /// The exported rows, root first.
    pub rows: &'a [Row],
    /// Where each controller's files live.
    pub hierarchies: &'a Hierarchies,
    /// The kernel programs' maps.
    pub kernel: &'a dyn KernelSource,
    /// CPU used before the programs attached (see `cpu::StartBaselines`).
    pub cpu_baselines: &'a cpu::StartBaselines,
    errors: &'a prometheus::IntCounterVec,
    /// Sources that failed so far this scrape (`container_scrape_error`).
    failures: Cell<u32>,
}

impl ScrapeContext<'_> {
    /// Reports a failed source: counted in `kadvisor_scrape_errors_total{source}` and
    /// logged. The caller skips that source's samples and carries on.
    pub fn failed(&self, source: &str, error: &dyn std::error::Error) {
        self.errors.with_label_values(&[source]).inc();
        self.failures.set(self.failures.get() + 1);
        tracing::warn!(source, error = %error_chain(error), "collection failed");
    }

    /// Whether any source failed so far in this scrape.
    pub fn any_failed(&self) -> bool {
        self.failures.get() > 0
    }
}

/// Everything one scrape needs; shared by the HTTP handlers.
pub struct Collector {
    kernel: Box<dyn KernelSource>,
    tree: CgroupTree,
    hierarchies: Hierarchies,
    cpu_baselines: cpu::StartBaselines,
    /// Where /proc, /sys and /etc are read for the machine families.
    host: machine::HostPaths,
    /// Serialises scrapes: the path memory is updated by each one.
    memory: Mutex<PathMemory>,
    registry: prometheus::Registry,
    scrape_errors: prometheus::IntCounterVec,
    scrape_duration: prometheus::Histogram,
}

impl Collector {
    pub fn new(
        kernel: Box<dyn KernelSource>,
        tree: CgroupTree,
        hierarchies: Hierarchies,
    ) -> Result<Self, CollectError> {
        let registry = prometheus::Registry::new();
        let scrape_errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "kadvisor_scrape_errors_total",
                "Scrapes in which a source failed, by source.",
            ),
            &["source"],
        )?;
        let scrape_duration = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "kadvisor_scrape_duration_seconds",
                "Time to collect and encode one scrape of container metrics.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        registry.register(Box::new(scrape_errors.clone()))?;
        registry.register(Box::new(scrape_duration.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("kadvisor_build_info", "kadvisor's version; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        Ok(Self {
            kernel,
            tree,
            hierarchies,
            cpu_baselines: cpu::StartBaselines::new(),
            host: machine::HostPaths::default(),
            memory: Mutex::new(PathMemory::default()),
            registry,
            scrape_errors,
            scrape_duration,
        })
    }

    /// Adds CPU time used before the programs attached (read them before attaching).
    #[must_use]
    pub fn with_cpu_baselines(mut self, baselines: cpu::StartBaselines) -> Self {
        self.cpu_baselines = baselines;
        self
    }

    /// Reads the machine families from `host` instead of `/` (fixture trees, or the
    /// host's root mounted into a container).
    #[must_use]
    pub fn with_host(mut self, host: machine::HostPaths) -> Self {
        self.host = host;
        self
    }

    /// One scrape: container families, then kadvisor's own metrics. A failing source
    /// is counted in `kadvisor_scrape_errors_total` and logged; the families of the
    /// other sources are still served.
    pub fn scrape(&self) -> Result<String, CollectError> {
        let start = Instant::now();
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Exposition::with_capacity(64 * 1024);

        let cgroups = self.tree.walk().inspect_err(|e| {
            self.scrape_errors.with_label_values(&["cgroup"]).inc();
            tracing::warn!(error = %error_chain(e), "cgroup walk failed");
        })?;
        let rows: Vec<Row> = cgroups.iter().map(|c| Row::new(c.id, &c.path)).collect();
        let ctx = ScrapeContext {
            rows: &rows,
            hierarchies: &self.hierarchies,
            kernel: self.kernel.as_ref(),
            cpu_baselines: &self.cpu_baselines,
            errors: &self.scrape_errors,
            failures: Cell::new(0),
        };

        let host = machine::Machine::read(&self.host);
        let oom_kills = oom::read(&ctx);
        if let Some(kills) = &oom_kills {
            memory.hold(kills.keys().copied());
        }
        cpu::collect(&ctx, &cgroups, &mut memory, &mut out);
        cpu_stat::collect(&ctx, &mut out);
        crashes::collect(&ctx, &memory, &mut out);
        process::collect(&ctx, &mut out);
        pressure::collect(&ctx, &mut out);
        lifetime::collect(&ctx, &mut out);
        net::collect(&ctx, &memory, &mut out);
        blkio::collect(&ctx, &mut out);
        let root_swap = host.as_ref().ok().map(|m| m.meminfo.swap_used());
        memory::collect(&ctx, root_swap, &mut out);
        if let Some(kills) = &oom_kills {
            // Rows of removed cgroups, for the families that still have their data.
            let removed: Vec<Row> = memory
                .removed(&cgroups)
                .filter(|(id, _)| kills.contains_key(id))
                .map(|(id, path)| Row::new(id, path))
                .collect();
            oom::write(&mut out, ctx.rows, &removed, kills, &memory);
        }
        if let Err(e) = &host {
            self.scrape_errors.with_label_values(&["machine"]).inc();
            tracing::warn!(error = %error_chain(e), "machine collection failed");
        }
        machine::write(
            &mut out,
            host.as_ref().ok(),
            ctx.any_failed(),
            host.is_err(),
        );
        self.write_kernel_self_metrics(&ctx, &mut out, memory.len());
        drop(memory);

        self.scrape_duration.observe(start.elapsed().as_secs_f64());
        let mut encoded = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut encoded)?;
        out.append_encoded(&String::from_utf8_lossy(&encoded));
        Ok(out.into_string())
    }

    fn write_kernel_self_metrics(
        &self,
        ctx: &ScrapeContext<'_>,
        out: &mut Exposition,
        tracked_cgroups: usize,
    ) {
        match self.kernel.kernel_errors() {
            Ok(errors) => {
                let name = "kadvisor_kernel_errors_total";
                out.family(
                    name,
                    "Failures inside the eBPF programs, by reason (map_full: a cgroup could not be tracked; task_read: a task's cgroup could not be read).",
                    MetricType::Counter,
                );
                for (error, count) in errors {
                    out.sample(name, "", &[("reason", error.reason())], count as f64);
                }
            }
            Err(e) => ctx.failed("kernel_errors", &e),
        }
        let stats = self.kernel.program_stats();
        let attached = "kadvisor_bpf_program_attached";
        out.family(
            attached,
            "1 when the eBPF program is attached; 0 when this kernel lacks its hook (its family is left out).",
            MetricType::Gauge,
        );
        for s in &stats {
            let value = if s.attached { 1.0 } else { 0.0 };
            out.sample(
                attached,
                "",
                &[("family", s.family), ("program", s.name)],
                value,
            );
        }
        let runs = "kadvisor_bpf_program_runs_total";
        out.family(
            runs,
            "Times each eBPF program ran (counted only while sysctl kernel.bpf_stats_enabled=1).",
            MetricType::Counter,
        );
        for s in stats.iter().filter(|s| s.attached) {
            out.sample(runs, "", &[("program", s.name)], s.run_count as f64);
        }
        let time = "kadvisor_bpf_program_run_seconds_total";
        out.family(
            time,
            "CPU time spent in each eBPF program (counted only while sysctl kernel.bpf_stats_enabled=1).",
            MetricType::Counter,
        );
        for s in stats.iter().filter(|s| s.attached) {
            out.sample(
                time,
                "",
                &[("program", s.name)],
                cpu::ns_to_seconds(s.run_time_ns),
            );
        }
        let tracked = "kadvisor_tracked_cgroups";
        out.family(
            tracked,
            "Cgroup ids whose path kadvisor holds (live, or removed with counters still in the kernel maps).",
            MetricType::Gauge,
        );
        out.sample(tracked, "", &[], tracked_cgroups as f64);
    }
}

/// An error and its causes on one line: `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs};

    use super::*;

    /// No kernel data, no programs: only the cgroupfs and host families.
    struct NoKernel;

    impl KernelSource for NoKernel {
        fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
            Ok(HashMap::new())
        }
        fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
            Ok(HashMap::new())
        }
        fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
            Ok(Vec::new())
        }
        fn program_stats(&self) -> Vec<ProgramStats> {
            Vec::new()
        }
        fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
            Ok(HashMap::new())
        }
    }

    #[test]
    fn hybrid_scrape_reads_memory_from_v1_and_reports_a_broken_host() {
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("unified");
        let memory = dir.path().join("memory");
        fs::create_dir_all(unified.join("a")).unwrap();
        fs::write(unified.join("cgroup.controllers"), "").unwrap();
        fs::create_dir_all(memory.join("a")).unwrap();
        fs::write(
            memory.join("a/memory.stat"),
            "total_rss 10\ntotal_inactive_file 3\n",
        )
        .unwrap();
        fs::write(memory.join("a/memory.usage_in_bytes"), "100\n").unwrap();
        let hierarchies = Hierarchies::from_parts(
            Some(unified.clone()),
            HashMap::from([("memory".to_owned(), memory)]),
        )
        .unwrap();
        let collector = Collector::new(Box::new(NoKernel), CgroupTree::at(unified), hierarchies)
            .unwrap()
            .with_host(machine::HostPaths::new(dir.path().join("no-such-host")));

        let text = collector.scrape().unwrap();

        let row = "{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}";
        for line in [
            format!("container_memory_usage_bytes{row} 100\n"),
            format!("container_memory_working_set_bytes{row} 97\n"),
            format!("container_memory_rss{row} 10\n"),
            "machine_scrape_error 1\n".to_owned(),
            "container_scrape_error 0\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("machine_cpu_cores{"), "{text}");
        assert!(
            !text.contains("container_oom_events_total"),
            "no OOM hook attached: the family is left out\n{text}"
        );
    }
}
