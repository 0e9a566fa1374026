//! Scrape-time collection: reads the kernel maps and the cgroup tree and writes
//! cAdvisor's families. Nothing runs between scrapes. Kernel counters are read live;
//! a quiet row's file-based values may come from an earlier scrape, at most
//! `--max_housekeeping_interval` old (`refresh`). No sample carries a timestamp.
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
pub mod refresh;

use std::{
    cell::Cell,
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kadvisor_common::{CgroupCpu, CgroupCrashes, CgroupNet, KernelError};
use prometheus::{Encoder as _, TextEncoder};

use crate::{
    bpf::{BpfError, KernelPrograms, ProgramStats},
    cgroup::{
        CgroupError, CgroupTree, Hierarchies, PathMemory, RetiredTotals, discovery::Discovery,
    },
    runtime::{Metadata, paths},
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

    /// Every cgroup id present in a per-cgroup map.
    fn tracked_ids(&self) -> Result<HashSet<u64>, BpfError> {
        let mut ids: HashSet<u64> = self.cgroup_cpu()?.into_keys().collect();
        ids.extend(self.cgroup_crashes()?.into_keys());
        ids.extend(self.cgroup_net()?.into_keys());
        ids.extend(self.cgroup_oom_kills()?.into_keys());
        Ok(ids)
    }
    /// Final hierarchical counter values of one cgroup, by counter name (what a
    /// retired cgroup leaves to its parent).
    fn counters_of(&self, id: u64) -> Result<Vec<(&'static str, u64)>, BpfError> {
        let cpu = self.cgroup_cpu()?.get(&id).copied().unwrap_or_default();
        let crashes = self.cgroup_crashes()?.get(&id).copied().unwrap_or_default();
        let net = self.cgroup_net()?.get(&id).copied().unwrap_or_default();
        let oom_kills = self
            .cgroup_oom_kills()?
            .get(&id)
            .copied()
            .unwrap_or_default();
        Ok(retired_counters(&cpu, &crashes, &net, oom_kills))
    }
    /// Deletes a retired cgroup from every per-cgroup map.
    fn forget(&self, _id: u64) -> Result<(), BpfError> {
        Ok(())
    }
    /// Entries per per-cgroup map.
    fn map_entries(&self) -> Result<Vec<(&'static str, usize)>, BpfError> {
        Ok(Vec::new())
    }
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
    fn tracked_ids(&self) -> Result<HashSet<u64>, BpfError> {
        Self::tracked_ids(self)
    }
    fn counters_of(&self, id: u64) -> Result<Vec<(&'static str, u64)>, BpfError> {
        Self::counters_of(self, id)
    }
    fn forget(&self, id: u64) -> Result<(), BpfError> {
        Self::forget(self, id)
    }
    fn map_entries(&self) -> Result<Vec<(&'static str, usize)>, BpfError> {
        Self::map_entries(self)
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
    /// A row known only by its path (no runtime labels).
    pub fn new(id: u64, path: &str) -> Self {
        Self::with_labels(id, path, &ContainerLabels::for_path(path))
    }

    /// A row with the runtime's labels.
    pub fn with_labels(id: u64, path: &str, labels: &ContainerLabels) -> Self {
        Self {
            id,
            path: path.to_owned(),
            labels: labels.render(),
        }
    }
}

/// Which cgroups get rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RowFilter {
    /// Every cgroup, as standalone cAdvisor exports.
    #[default]
    All,
    /// The kubelet's set: the root, the kubepods tree, and these extra paths (the
    /// runtime's and the kubelet's own cgroups) with their descendants.
    Kubelet { extra: Vec<String> },
}

impl RowFilter {
    pub fn keeps(&self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Kubelet { extra } => {
                paths::in_kubepods(path)
                    || extra.iter().any(|e| {
                        path == e
                            || path
                                .strip_prefix(e.as_str())
                                .is_some_and(|rest| rest.starts_with('/'))
                    })
            }
        }
    }
}

/// How removed cgroups are kept and reclaimed.
#[derive(Debug, Clone)]
pub struct Retention {
    /// How long a removed cgroup's row (with its final values) stays exported.
    pub grace: Duration,
    /// How long an id present in the kernel maps but unknown to the tree (a cgroup
    /// created and removed between two events we saw) is kept before its counters are
    /// credited to the root and its entries deleted.
    pub unknown_grace: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(70),
            unknown_grace: Duration::from_secs(10),
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
    /// id → path of every live and not-yet-retired removed cgroup: for summing
    /// per-cgroup kernel counters up the tree (`cpu::hierarchical_totals`).
    pub paths: &'a PathMemory,
    /// Counters of retired cgroups, folded into their ancestors' paths.
    pub retired: &'a RetiredTotals,
    errors: &'a prometheus::IntCounterVec,
    /// Sources that failed so far this scrape (`container_scrape_error`).
    failures: Cell<u32>,
    /// Each row's `cgroup.procs`, read once per scrape for every family that needs it.
    row_pids: std::cell::OnceCell<Vec<Option<Vec<u32>>>>,
    /// Per-row values kept between scrapes (`refresh`); `None` reads every row.
    pub cache: Option<std::cell::RefCell<&'a mut refresh::RowCache>>,
}

impl ScrapeContext<'_> {
    /// Reports a failed source: counted in `kadvisor_scrape_errors_total{source}` and
    /// logged. The caller skips that source's samples and carries on.
    pub fn failed(&self, source: &str, error: &dyn std::error::Error) {
        self.errors.with_label_values(&[source]).inc();
        self.failures.set(self.failures.get() + 1);
        tracing::warn!(source, error = %error_chain(error), "collection failed");
    }

    /// The pids in each row's own `cgroup.procs` (v2 directory), in row order; `None`
    /// where that file is absent or unreadable. Read at the first call (quiet rows:
    /// kept from an earlier scrape, see `refresh`), then shared.
    pub fn row_pids(&self) -> &[Option<Vec<u32>>] {
        self.row_pids.get_or_init(|| {
            (0..self.rows.len())
                .map(|index| {
                    self.row_value(
                        index,
                        |v| &mut v.pids,
                        || {
                            let Some(dir) = self.hierarchies.v2_dir(&self.rows[index].path) else {
                                return Some(None);
                            };
                            match crate::cgroup::files::read_optional(&dir.join("cgroup.procs")) {
                                Ok(procs) => Some(
                                    procs.map(|p| crate::cgroup::files::parse_pids(&p).collect()),
                                ),
                                Err(e) => {
                                    self.failed("cgroup.procs", &e);
                                    None
                                }
                            }
                        },
                    )
                    .flatten()
                })
                .collect()
        })
    }

    /// Row `index`'s value of one file-based family: kept from an earlier scrape when
    /// the row is quiet (`refresh`), else `read()` (`None`: failed, nothing kept).
    pub fn row_value<T: Clone>(
        &self,
        index: usize,
        slot: fn(&mut refresh::RowValues) -> &mut Option<T>,
        read: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        if let Some(cache) = &self.cache
            && let Some(kept) = cache
                .borrow_mut()
                .values(index)
                .and_then(|v| slot(v).clone())
        {
            return Some(kept);
        }
        let value = read()?;
        if let Some(cache) = &self.cache
            && let Some(values) = cache.borrow_mut().values(index)
        {
            *slot(values) = Some(value.clone());
        }
        Some(value)
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
    discovery: Arc<Discovery>,
    /// Whether a watcher thread keeps `discovery` current; otherwise each scrape walks.
    watched: bool,
    metadata: Option<Arc<Metadata>>,
    filter: RowFilter,
    retention: Retention,
    /// Serialises scrapes and sweeps.
    reclaim: Mutex<Reclaim>,
    registry: prometheus::Registry,
    scrape_errors: prometheus::IntCounterVec,
    scrape_duration: prometheus::Histogram,
    /// Size of the last body, to size the next one.
    last_body: std::sync::atomic::AtomicUsize,
    /// Metric groups, cgroup selection, aggregation, series budget (`cost`).
    cost: crate::cost::CostControls,
    /// Quiet rows' file-based values, kept between scrapes (`refresh`).
    row_cache: Mutex<refresh::RowCache>,
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
            discovery: Arc::new(Discovery::default()),
            watched: false,
            metadata: None,
            filter: RowFilter::All,
            retention: Retention::default(),
            reclaim: Mutex::new(Reclaim::default()),
            registry,
            scrape_errors,
            scrape_duration,
            last_body: std::sync::atomic::AtomicUsize::new(0),
            cost: crate::cost::CostControls::default(),
            row_cache: Mutex::new(refresh::RowCache::new(Duration::ZERO)),
        })
    }

    /// Applies the cost settings (see `cost`).
    #[must_use]
    pub fn with_cost(mut self, cost: crate::cost::CostControls) -> Self {
        self.cost = cost;
        self
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

    /// Uses `discovery` (kept current by its watcher thread) instead of walking the
    /// tree at each scrape. Without it, each scrape reconciles with a full walk.
    pub fn with_discovery(mut self, discovery: Arc<Discovery>) -> Self {
        self.discovery = discovery;
        self.watched = true;
        self
    }

    /// Joins runtime metadata into the rows' labels.
    pub fn with_metadata(mut self, metadata: Arc<Metadata>) -> Result<Self, CollectError> {
        self.registry.register(Box::new(metadata.error_metric()))?;
        self.metadata = Some(metadata);
        Ok(self)
    }

    pub fn with_filter(mut self, filter: RowFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Re-reads a quiet row's files only when they are older than `max_age`
    /// (`--max_housekeeping_interval`, see `refresh`); `Duration::ZERO` (the default)
    /// reads every row at every scrape.
    #[must_use]
    pub fn with_max_housekeeping_interval(mut self, max_age: Duration) -> Self {
        self.row_cache = Mutex::new(refresh::RowCache::new(max_age));
        self
    }

    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The tree this collector reads.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// Retires removed cgroups whose grace period is over: their final counters are
    /// folded into their parent's retired totals, their entries deleted from every
    /// per-cgroup kernel map, their cached metadata dropped. Also reclaims map entries
    /// of ids the tree never knew. Called before each scrape and by a timer.
    pub fn sweep(&self) {
        let mut reclaim = self
            .reclaim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.sweep_locked(&mut reclaim, Instant::now());
    }

    fn sweep_locked(&self, reclaim: &mut Reclaim, now: Instant) {
        let expired = self
            .discovery
            .state()
            .take_expired(self.retention.grace, now);
        let mut retired_now = 0_usize;
        for cgroup in expired {
            match self.kernel.counters_of(cgroup.id) {
                Ok(counters) => reclaim.retired.retire(&cgroup.path, &counters),
                Err(e) => {
                    // Keep the entry (and the path): retried at the next sweep.
                    self.scrape_errors.with_label_values(&["retire"]).inc();
                    tracing::warn!(error = %error_chain(&e), path = cgroup.path, "cannot read a removed cgroup's counters");
                    continue;
                }
            }
            if let Err(e) = self.kernel.forget(cgroup.id) {
                self.scrape_errors.with_label_values(&["retire"]).inc();
                tracing::warn!(error = %error_chain(&e), "cannot delete a retired cgroup's map entries");
            }
            if let Some(metadata) = &self.metadata {
                // A shadowed path carries `\0<id>` (see discovery::TreeState::add).
                metadata.forget(cgroup.path.split('\0').next().unwrap_or_default());
            }
            reclaim.retired_count += 1;
            retired_now += 1;
        }
        if retired_now > 0 {
            // Rows, paths and scrape buffers of the retired cgroups were freed: hand
            // the pages back.
            crate::heap::release_free_memory();
        }
        // Ids in the maps that the tree never knew. Listing every map key costs a
        // syscall per entry: done a few times per `unknown_grace`, not every second.
        if reclaim.last_unknown_scan.is_some_and(|last| {
            now.saturating_duration_since(last) < self.retention.unknown_grace / 4
        }) {
            return;
        }
        reclaim.last_unknown_scan = Some(now);
        let tracked = match self.kernel.tracked_ids() {
            Ok(ids) => ids,
            Err(e) => {
                self.scrape_errors.with_label_values(&["retire"]).inc();
                tracing::warn!(error = %error_chain(&e), "cannot list map keys");
                return;
            }
        };
        let unknown: Vec<u64> = {
            let state = self.discovery.state();
            tracked
                .into_iter()
                .filter(|id| state.paths.path(*id).is_none())
                .collect()
        };
        let unknown_set: HashSet<u64> = unknown.iter().copied().collect();
        reclaim.unknown.retain(|id, _| unknown_set.contains(id));
        for id in unknown {
            let first = *reclaim.unknown.entry(id).or_insert(now);
            if now.saturating_duration_since(first) < self.retention.unknown_grace {
                continue;
            }
            if let Ok(counters) = self.kernel.counters_of(id) {
                reclaim.retired.credit("/", &counters);
                if self.kernel.forget(id).is_ok() {
                    reclaim.unknown.remove(&id);
                    reclaim.unknown_count += 1;
                }
            }
        }
    }

    /// One scrape: container families, then kadvisor's own metrics. A failing source
    /// is counted in `kadvisor_scrape_errors_total` and logged; the families of the
    /// other sources are still served.
    pub fn scrape(&self) -> Result<String, CollectError> {
        let start = Instant::now();
        let mut reclaim = self
            .reclaim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Sized from the previous body: no doubling copies of a multi-MiB buffer.
        let last = self.last_body.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Exposition::with_capacity((last + last / 16).max(64 * 1024));
        // Every cgroup file of this scrape is opened relative to its directory.
        let _dirs = crate::cgroup::files::DirScope::enter();

        // Events queued by mkdirs that returned before this scrape began.
        self.discovery.sync();
        if !self.watched {
            // No watcher maintains the tree: reconcile now.
            self.discovery.reconcile(&self.tree).inspect_err(|e| {
                self.scrape_errors.with_label_values(&["cgroup"]).inc();
                tracing::warn!(error = %error_chain(e), "cgroup walk failed");
            })?;
        }
        self.sweep_locked(&mut reclaim, start);

        let state = self.discovery.state();
        // Live rows, then removed ones inside their grace period (unless a live
        // cgroup took their path: two rows would carry the same labels).
        let mut cgroups: Vec<(u64, &str)> = state
            .live
            .iter()
            .filter(|(path, _)| self.filter.keeps(path) && self.cost.keeps_path(path))
            .map(|(path, id)| (*id, path.as_str()))
            .collect();
        let mut live_count = cgroups.len();
        let mut removed: Vec<(u64, &str)> = state
            .removed
            .values()
            .filter(|r| {
                !r.cgroup.path.contains('\0')
                    && !state.live.contains_key(&r.cgroup.path)
                    && self.filter.keeps(&r.cgroup.path)
                    && self.cost.keeps_path(&r.cgroup.path)
            })
            .map(|r| (r.cgroup.id, r.cgroup.path.as_str()))
            .collect();
        removed.sort_by_key(|(_, path)| *path);
        cgroups.extend(removed);
        let mut rows: Vec<Row> = match &self.metadata {
            Some(metadata) => {
                let paths: Vec<&str> = cgroups.iter().map(|(_, p)| *p).collect();
                metadata
                    .labels(&paths)
                    .iter()
                    .zip(&cgroups)
                    .map(|(labels, (id, path))| Row::with_labels(*id, path, labels))
                    .collect()
            }
            None => cgroups
                .iter()
                .map(|(id, path)| Row::new(*id, path))
                .collect(),
        };
        live_count -= self.cost.select_rows(
            &mut rows,
            live_count,
            self.kernel.as_ref(),
            &mut reclaim.retired,
            &|path| self.metadata.as_ref()?.pod_labels(path),
        );
        let mut row_cache = self
            .row_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let usage = refresh::usage(self.kernel.as_ref(), &state.paths, &reclaim.retired);
        row_cache.begin(
            &rows,
            live_count,
            |row| {
                let (totals, absent) = usage.as_ref()?;
                totals.get(row.path.as_str()).copied().or(*absent)
            },
            start,
        );
        drop(usage);
        let ctx = ScrapeContext {
            rows: &rows,
            hierarchies: &self.hierarchies,
            kernel: self.kernel.as_ref(),
            cpu_baselines: &self.cpu_baselines,
            paths: &state.paths,
            retired: &reclaim.retired,
            errors: &self.scrape_errors,
            failures: Cell::new(0),
            row_pids: std::cell::OnceCell::new(),
            cache: Some(std::cell::RefCell::new(&mut row_cache)),
        };

        // Groups aggregated at pod or namespace level see the pod-level rows only
        // (see `CostControls::pod_level_rows`): their container rows cost nothing.
        let pod_rows = if self.cost.aggregates() {
            crate::cost::CostControls::pod_level_rows(&rows)
        } else {
            Vec::new()
        };
        let pod_ctx = ScrapeContext {
            rows: &pod_rows,
            hierarchies: &self.hierarchies,
            kernel: self.kernel.as_ref(),
            cpu_baselines: &self.cpu_baselines,
            paths: &state.paths,
            retired: &reclaim.retired,
            errors: &self.scrape_errors,
            failures: Cell::new(0),
            row_pids: std::cell::OnceCell::new(),
            // The row cache is indexed by `rows`: pod-level rows are read every scrape.
            cache: None,
        };
        let ctx_of = |group: &str| {
            if self.cost.above_container(group) {
                &pod_ctx
            } else {
                &ctx
            }
        };

        let host = machine::Machine::read(&self.host);
        // A disabled group's collector is not called (its files are not read).
        let on = |group: &str| self.cost.group_on(group);
        let oom_kills = if on("oom_event") {
            oom::read(ctx_of("oom_event"))
        } else {
            None
        };
        if on("cpu") {
            cpu::collect(ctx_of("cpu"), &mut out);
            cpu_stat::collect(ctx_of("cpu"), &mut out);
        }
        if on("crashes") {
            crashes::collect(ctx_of("crashes"), &state.paths, &mut out);
        }
        if on("process") {
            process::collect(ctx_of("process"), &mut out);
        }
        if on("pressure") {
            pressure::collect(ctx_of("pressure"), &mut out);
        }
        lifetime::collect(&ctx, &mut out);
        if on("network") {
            // Interfaces and kadvisor's socket counters share one collector.
            let net_ctx = if self.cost.above_container("socket") {
                ctx_of("network")
            } else {
                &ctx
            };
            net::collect(net_ctx, &state.paths, &mut out);
        }
        if on("disk") || on("diskIO") {
            // One collector for both groups: pod rows only when both are above.
            let blkio_ctx = if self.cost.above_container("disk") {
                ctx_of("diskIO")
            } else {
                &ctx
            };
            blkio::collect(blkio_ctx, &mut out);
        }
        let root_swap = host.as_ref().ok().map(|m| m.meminfo.swap_used());
        if on("memory") {
            memory::collect(ctx_of("memory"), root_swap, &mut out);
        }
        if let Some(kills) = &oom_kills {
            // Removed cgroups inside their grace period are rows already.
            oom::write(
                &mut out,
                ctx_of("oom_event").rows,
                kills,
                &state.paths,
                ctx.retired,
            );
        }
        if let Err(e) = &host {
            self.scrape_errors.with_label_values(&["machine"]).inc();
            tracing::warn!(error = %error_chain(e), "machine collection failed");
        }
        machine::write(
            &mut out,
            host.as_ref().ok(),
            ctx.any_failed() || pod_ctx.any_failed(),
            host.is_err(),
        );
        // Aggregation, series budget, families of disabled groups still written
        // (disk/diskIO share a collector); then the per-family series counts.
        let mut out = self.cost.shape(out);
        self.cost.write_self_metrics(&mut out);
        self.write_kernel_self_metrics(&ctx, &mut out, state.paths.len());
        self.write_discovery_self_metrics(
            &ctx,
            &mut out,
            &state,
            live_count,
            rows.len() - live_count,
            &reclaim,
        );
        drop(ctx);
        row_cache.write_self_metrics(&mut out);
        drop(row_cache);
        drop(state);
        drop(reclaim);

        self.scrape_duration.observe(start.elapsed().as_secs_f64());
        let mut encoded = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut encoded)?;
        out.append_encoded(&String::from_utf8_lossy(&encoded));
        let body = out.into_string();
        self.last_body
            .store(body.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(body)
    }

    fn write_discovery_self_metrics(
        &self,
        ctx: &ScrapeContext<'_>,
        out: &mut Exposition,
        state: &crate::cgroup::discovery::TreeState,
        live_rows: usize,
        removed_rows: usize,
        reclaim: &Reclaim,
    ) {
        let rows = "kadvisor_rows";
        out.family(
            rows,
            "Exported cgroup rows: live, and removed but inside the grace period (--deleted_grace_seconds).",
            MetricType::Gauge,
        );
        out.sample(rows, "", &[("state", "live")], live_rows as f64);
        out.sample(rows, "", &[("state", "removed")], removed_rows as f64);
        let walks = "kadvisor_cgroup_walks_total";
        out.family(
            walks,
            "Full walks of the cgroup tree (startup and slow reconciliation; new cgroups are found by events).",
            MetricType::Counter,
        );
        out.sample(walks, "", &[], state.walks as f64);
        let events = "kadvisor_cgroup_events_total";
        out.family(
            events,
            "cgroup mkdir/rmdir events applied.",
            MetricType::Counter,
        );
        out.sample(events, "", &[], state.events as f64);
        let retired = "kadvisor_retired_cgroups_total";
        out.family(
            retired,
            "Removed cgroups whose map entries were reclaimed: known=true after their grace period (counters folded into the parent); known=false for ids never seen in the tree (created and removed between two events; counters folded into the root).",
            MetricType::Counter,
        );
        out.sample(
            retired,
            "",
            &[("known", "true")],
            reclaim.retired_count as f64,
        );
        out.sample(
            retired,
            "",
            &[("known", "false")],
            reclaim.unknown_count as f64,
        );
        let retired_paths = "kadvisor_retired_paths";
        out.family(
            retired_paths,
            "Paths holding counters of retired descendants.",
            MetricType::Gauge,
        );
        out.sample(retired_paths, "", &[], reclaim.retired.len() as f64);
        match self.kernel.map_entries() {
            Ok(entries) => {
                let name = "kadvisor_map_entries";
                out.family(
                    name,
                    "Entries in each per-cgroup kernel map (live and grace-period cgroups).",
                    MetricType::Gauge,
                );
                for (map, count) in entries {
                    out.sample(name, "", &[("map", map)], count as f64);
                }
            }
            Err(e) => ctx.failed("map_entries", &e),
        }
        if let Some(metadata) = &self.metadata {
            let (containers, pods, misses) = metadata.cached();
            let name = "kadvisor_runtime_cache_entries";
            out.family(
                name,
                "Runtime metadata cached, by kind (misses: ids the runtimes did not know, retried with backoff).",
                MetricType::Gauge,
            );
            out.sample(name, "", &[("kind", "container")], containers as f64);
            out.sample(name, "", &[("kind", "pod")], pods as f64);
            out.sample(name, "", &[("kind", "miss")], misses as f64);
        }
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

/// A retired cgroup's final hierarchical counters, by name in the retired-totals
/// store: CPU (usage, run-queue time, run periods), crashes per signal, socket
/// traffic (`net::retired_counters`) and OOM kills. Every map in the loader's
/// `PER_CGROUP_MAPS` must have its counters here: its entries are deleted once
/// these are folded into the parent.
pub fn retired_counters(
    cpu: &kadvisor_common::CgroupCpu,
    crashes: &kadvisor_common::CgroupCrashes,
    net: &CgroupNet,
    oom_kills: u64,
) -> Vec<(&'static str, u64)> {
    let mut out = vec![
        (cpu::COUNTER, cpu.runtime_ns),
        (cpu::RUNQUEUE_COUNTER, cpu.runqueue_ns),
        (cpu::PERIODS_COUNTER, cpu.run_periods),
    ];
    for ((_, signal), count) in kadvisor_common::CRASH_SIGNALS.iter().zip(crashes.by_signal) {
        out.push((*signal, count));
    }
    out.extend(net::retired_counters(net));
    out.push((oom::COUNTER, oom_kills));
    out
}

/// What the sweeps keep between scrapes.
#[derive(Debug, Default)]
struct Reclaim {
    retired: RetiredTotals,
    retired_count: u64,
    /// Map ids reclaimed without ever having a known path.
    unknown_count: u64,
    /// Ids in the kernel maps unknown to the tree, and since when.
    unknown: HashMap<u64, Instant>,
    last_unknown_scan: Option<Instant>,
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

    /// Per-cgroup maps that `forget` really empties, shared with the test.
    #[derive(Default)]
    struct Maps {
        cpu: HashMap<u64, CgroupCpu>,
        net: HashMap<u64, CgroupNet>,
        oom: HashMap<u64, u64>,
        forgotten: Vec<u64>,
    }

    struct MapKernel(Arc<Mutex<Maps>>);

    impl MapKernel {
        fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
            self.0.lock().unwrap()
        }
    }

    impl KernelSource for MapKernel {
        fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
            Ok(self.maps().cpu.clone())
        }
        fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
            Ok(HashMap::new())
        }
        fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
            Ok(self.maps().net.clone())
        }
        fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
            Ok(self.maps().oom.clone())
        }
        fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
            Ok(Vec::new())
        }
        fn program_stats(&self) -> Vec<ProgramStats> {
            ["oom", "socket"]
                .into_iter()
                .map(|family| ProgramStats {
                    name: family,
                    family,
                    attached: true,
                    run_count: 0,
                    run_time_ns: 0,
                })
                .collect()
        }
        fn forget(&self, id: u64) -> Result<(), BpfError> {
            let mut maps = self.maps();
            maps.cpu.remove(&id);
            maps.net.remove(&id);
            maps.oom.remove(&id);
            maps.forgotten.push(id);
            Ok(())
        }
    }

    fn sample(text: &str, name: &str, id: &str, extra: &str) -> Option<f64> {
        let row = format!(
            "{name}{{container=\"\",id=\"{id}\",image=\"\",name=\"\",namespace=\"\",pod=\"\"{extra}}} "
        );
        let line = text.lines().find(|l| l.starts_with(&row))?;
        line[row.len()..].parse().ok()
    }

    #[test]
    fn retirement_folds_oom_kills_and_socket_traffic_into_the_parent() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("unified");
        fs::create_dir_all(unified.join("pod/c")).unwrap();
        fs::write(unified.join("cgroup.controllers"), "").unwrap();
        let pod = fs::metadata(unified.join("pod")).unwrap().ino();
        let c = fs::metadata(unified.join("pod/c")).unwrap().ino();
        let maps = Arc::new(Mutex::new(Maps::default()));
        {
            let mut m = maps.lock().unwrap();
            let mut net = CgroupNet {
                rx_bytes: 1000,
                rx_packets: 10,
                ..CgroupNet::default()
            };
            net.tx_bytes[kadvisor_common::DEST_EXTERNAL as usize] = 300;
            net.tx_packets[kadvisor_common::DEST_EXTERNAL as usize] = 3;
            m.net.insert(c, net);
            m.net.insert(
                pod,
                CgroupNet {
                    rx_bytes: 1,
                    ..CgroupNet::default()
                },
            );
            m.oom.insert(c, 1);
            m.cpu.insert(
                c,
                CgroupCpu {
                    runtime_ns: 2_000_000_000,
                    ..CgroupCpu::default()
                },
            );
        }
        let hierarchies = Hierarchies::from_parts(Some(unified.clone()), HashMap::new()).unwrap();
        let collector = Collector::new(
            Box::new(MapKernel(maps.clone())),
            CgroupTree::at(unified.clone()),
            hierarchies,
        )
        .unwrap()
        .with_host(machine::HostPaths::new(dir.path().join("no-such-host")))
        .with_retention(Retention {
            grace: Duration::from_secs(3600),
            unknown_grace: Duration::from_secs(3600),
        });
        let oom = "container_oom_events_total";
        let rx = "container_socket_receive_bytes_total";
        let tx = "container_socket_transmit_bytes_total";
        let ext = ",destination=\"external\"";
        let check = |text: &str, id: &str, kills: f64, rx_bytes: f64, tx_bytes: f64| {
            assert_eq!(sample(text, oom, id, ""), Some(kills), "{id} oom\n{text}");
            assert_eq!(sample(text, rx, id, ""), Some(rx_bytes), "{id} rx\n{text}");
            assert_eq!(sample(text, tx, id, ext), Some(tx_bytes), "{id} tx\n{text}");
        };

        let text = collector.scrape().unwrap();
        check(&text, "/pod/c", 1.0, 1000.0, 300.0);
        check(&text, "/pod", 1.0, 1001.0, 300.0);

        // Removed: its row keeps the final values during the grace period.
        fs::remove_dir(unified.join("pod/c")).unwrap();
        let text = collector.scrape().unwrap();
        check(&text, "/pod/c", 1.0, 1000.0, 300.0);
        check(&text, "/pod", 1.0, 1001.0, 300.0);

        // Grace period over: the row is gone, the pod keeps the kill and the traffic,
        // and the map entries are deleted.
        {
            let mut reclaim = collector.reclaim.lock().unwrap();
            collector.sweep_locked(&mut reclaim, Instant::now() + Duration::from_secs(3601));
        }
        {
            let m = maps.lock().unwrap();
            assert_eq!(m.forgotten, [c]);
            assert!(!m.oom.contains_key(&c) && !m.net.contains_key(&c) && !m.cpu.contains_key(&c));
        }
        let text = collector.scrape().unwrap();
        assert_eq!(sample(&text, oom, "/pod/c", ""), None, "{text}");
        check(&text, "/pod", 1.0, 1001.0, 300.0);
        check(&text, "/", 1.0, 1001.0, 300.0);
        assert_eq!(
            sample(
                &text,
                "container_cpu_usage_seconds_total",
                "/pod",
                ",cpu=\"total\""
            ),
            Some(2.0)
        );

        // The pod goes too: everything moves on to the root.
        fs::remove_dir(unified.join("pod")).unwrap();
        collector.scrape().unwrap();
        {
            let mut reclaim = collector.reclaim.lock().unwrap();
            collector.sweep_locked(&mut reclaim, Instant::now() + Duration::from_secs(3601));
        }
        let text = collector.scrape().unwrap();
        assert_eq!(sample(&text, oom, "/pod", ""), None, "{text}");
        check(&text, "/", 1.0, 1001.0, 300.0);
        assert_eq!(maps.lock().unwrap().forgotten, [c, pod]);
    }

    #[test]
    fn kubelet_filter_keeps_root_kubepods_and_the_runtime() {
        let filter = RowFilter::Kubelet {
            extra: vec!["/system.slice/containerd.service".to_owned()],
        };
        for keep in [
            "/",
            "/kubepods",
            "/kubepods/burstable/pod0d5c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/system.slice/containerd.service",
            "/system.slice/containerd.service/shim",
        ] {
            assert!(filter.keeps(keep), "{keep}");
        }
        for drop in [
            "/system.slice",
            "/system.slice/containerd.service2",
            "/user.slice",
            "/machine.slice/libpod-x.scope",
        ] {
            assert!(!filter.keeps(drop), "{drop}");
        }
        assert!(RowFilter::All.keeps("/user.slice"));
    }
}
