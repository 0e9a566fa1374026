//! Scrape-time collection: reads the kernel maps and the cgroup tree and writes
//! cAdvisor's families. Nothing runs between scrapes. No sample carries a timestamp.
//!
//! One scrape (`Collector::scrape`) is five stages, each a module:
//! 1. `rows`: the tree's cgroups, selected, with the runtime's labels (structured);
//! 2. `sources`: what the families read — each kernel map once (`kernel`), each
//!    row's cgroupfs files once through open handles (`cgroup::files`), a quiet
//!    row's values from the idle-row cache (`refresh`);
//! 3. `families`: the static table of collectors, all `fn(&ScrapeContext, &mut
//!    SampleSet)` (one module per source: `cpu`, `memory`, `blkio`, ...);
//! 4. `shape`: groups, aggregation and the series budget on the `SampleSet`;
//! 5. `render`: the text format, once, into the body.
//!
//! Around them: `retire` (removed cgroups' grace period and reclamation) and
//! `self_metrics` (`kadvisor_*`).
pub mod blkio;
pub mod body;
pub mod cpu;
pub mod cpu_stat;
pub mod crashes;
pub mod diskstats;
pub mod families;
pub mod kernel;
pub mod lifetime;
pub mod machine;
pub mod memory;
pub mod net;
pub mod oom;
pub mod pressure;
pub mod process;
pub mod refresh;
pub mod render;
pub mod retire;
pub mod rows;
pub mod samples;
mod self_metrics;
pub mod shape;
pub mod sources;

use std::{
    cell::{Cell, OnceCell, RefCell},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{Encoder as _, TextEncoder};

pub use kernel::{KernelSnapshot, KernelSource};
pub use retire::Retention;
pub use rows::{Row, RowFilter};
pub use samples::SampleSet;
pub use sources::ScrapeContext;

use crate::{
    bpf::BpfError,
    cgroup::{
        CgroupError, CgroupTree, Hierarchies, PathMemory, RetiredTotals, discovery::Discovery,
    },
    cost::CostControls,
    error_chain,
    runtime::Metadata,
};
use retire::Reclaim;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("kernel maps")]
    Kernel(#[from] BpfError),
    #[error("cgroup tree")]
    Cgroup(#[from] CgroupError),
    #[error("encoding kadvisor's own metrics")]
    SelfMetrics(#[from] prometheus::Error),
}

/// Everything one scrape needs; shared by the HTTP handlers.
pub struct Collector {
    kernel: Box<dyn KernelSource>,
    tree: CgroupTree,
    hierarchies: Hierarchies,
    /// Where /proc, /sys and /etc are read for the machine families.
    host: machine::HostPaths,
    discovery: Arc<Discovery>,
    /// Whether a watcher thread keeps `discovery` current; otherwise each scrape walks.
    watched: bool,
    metadata: Option<Arc<Metadata>>,
    filter: RowFilter,
    retention: Retention,
    /// Serialises scrapes and sweeps; holds what a scrape keeps for the next.
    reclaim: Mutex<Reclaim>,
    /// What a scrape keeps for the next: shaping's counters, the idle-row cache.
    scratch: Mutex<Scratch>,
    registry: prometheus::Registry,
    scrape_errors: prometheus::IntCounterVec,
    scrape_duration: prometheus::Histogram,
    /// Size of the last body, to size the next one.
    last_body: std::sync::atomic::AtomicUsize,
    /// The body buffer, reused across scrapes.
    bodies: body::BodyPool,
    /// Metric groups, cgroup selection, aggregation, series budget (`cost`).
    cost: CostControls,
}

/// What one scrape took under the locks (`Collector::take`).
struct Taken {
    rows: rows::Rows,
    paths: Arc<PathMemory>,
    retired: Arc<RetiredTotals>,
    figures: self_metrics::DiscoveryFigures,
}

/// Kept from one scrape to the next.
struct Scratch {
    shaper: shape::Shaper,
    /// Quiet rows' file-based values (`refresh`).
    row_cache: refresh::RowCache,
    /// Rows' ids in v1 hierarchies (`sources::V1Ids`).
    v1_ids: RefCell<sources::V1Ids>,
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
            host: machine::HostPaths::default(),
            discovery: Arc::new(Discovery::default()),
            watched: false,
            metadata: None,
            filter: RowFilter::All,
            retention: Retention::default(),
            reclaim: Mutex::new(Reclaim::default()),
            scratch: Mutex::new(Scratch {
                shaper: shape::Shaper::default(),
                row_cache: refresh::RowCache::new(Duration::ZERO),
                v1_ids: RefCell::default(),
            }),
            registry,
            scrape_errors,
            scrape_duration,
            last_body: std::sync::atomic::AtomicUsize::new(0),
            bodies: body::BodyPool::default(),
            cost: CostControls::default(),
        })
    }

    /// Applies the cost settings (see `cost`).
    #[must_use]
    pub fn with_cost(mut self, cost: CostControls) -> Self {
        self.cost = cost;
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
        self.scratch
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .row_cache = refresh::RowCache::new(max_age);
        self
    }

    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// A scrape's body as the bytes its responses share; its buffer serves a later
    /// scrape once they are done (`body`).
    pub fn share_body(&self, body: String) -> hyper::body::Bytes {
        self.bodies.share(body)
    }

    /// The tree this collector reads.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// One scrape's exposition body (`scrape_with`).
    pub fn scrape(&self) -> Result<String, CollectError> {
        self.scrape_with(|_| ()).map(|(body, ())| body)
    }

    /// One scrape, stage by stage (see the module doc). A failing source is counted
    /// in `kadvisor_scrape_errors_total` and logged; the families of the other
    /// sources are still served. Returns the body and `view` of the sample set (which
    /// lives for this scrape only): other outputs of the same collection (the web
    /// UI's JSON) read the structured samples instead of parsing the text back.
    pub fn scrape_with<T>(
        &self,
        view: impl FnOnce(&SampleSet) -> T,
    ) -> Result<(String, T), CollectError> {
        let start = Instant::now();
        let kernel = KernelSnapshot::new(self.kernel.as_ref());
        // 1. Rows, and what the scrape reads of discovery's and the sweeper's state,
        // taken under their locks; the locks are released before any cgroupfs, /proc
        // or /sys read, so a read stuck on a hung mount stalls this scrape only: new
        // cgroups are still discovered, removed ones still swept.
        let Taken {
            rows,
            paths,
            retired,
            figures,
        } = self.take(&kernel, start)?;
        let mut scratch = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Scratch {
            shaper,
            row_cache,
            v1_ids,
        } = &mut *scratch;
        v1_ids.get_mut().keep_only(&rows.rows);
        // Made per scrape, not kept: a burst of rows does not pin its peak memory.
        let mut sample_set = SampleSet::for_rows(rows.rows.len());
        let samples = &mut sample_set;
        // Every cgroup file of this scrape is read through its held open file, or
        // opened relative to its directory (`cgroup::files`).
        let _files = crate::cgroup::files::DirScope::enter();
        // Groups aggregated at pod or namespace level see the pod-level rows only:
        // their container rows cost nothing.
        let pod_rows = if self.cost.aggregates() {
            rows::pod_level_rows(&rows)
        } else {
            rows::Rows::default()
        };

        // 2. Sources: which quiet rows the idle-row cache serves.
        // A live row's CPU usage from the kernel's own accounting; removed rows have
        // none and are read every scrape.
        row_cache.begin(
            &rows.rows,
            rows.live,
            |row| {
                cpu::live_usage_ns(&self.hierarchies, &row.path)
                    .ok()
                    .flatten()
            },
            start,
        );
        let host = machine::Machine::read(&self.host);
        let failures = Cell::new(0);
        let ctx = ScrapeContext {
            rows: &rows.rows,
            live: rows.live,
            hierarchies: &self.hierarchies,
            kernel: &kernel,
            paths: &paths,
            retired: &retired,
            root_swap: host.as_ref().ok().map(|m| m.meminfo.swap_used()),
            own: sources::OwnFamilies {
                crash_signals: self.cost.group_on("crash_signals"),
                memory_reclaim: self.cost.group_on("memory_reclaim"),
                socket: net::SocketShape {
                    packets: self.cost.group_on("socket_packets"),
                    destinations: self.cost.shaping.socket_destinations,
                },
            },
            errors: &self.scrape_errors,
            failures: &failures,
            row_pids: OnceCell::new(),
            cache: Some(RefCell::new(row_cache)),
            v1_ids,
        };
        // The row cache is indexed by `rows`: pod-level rows are read every scrape.
        let pod_ctx = ScrapeContext {
            rows: &pod_rows.rows,
            live: pod_rows.live,
            row_pids: OnceCell::new(),
            cache: None,
            ..ctx
        };

        // 3. Families.
        for spec in families::COLLECTORS {
            if !spec.groups.is_empty() && !spec.groups.iter().any(|g| self.cost.group_on(g)) {
                continue;
            }
            let pod_level =
                !spec.levels.is_empty() && spec.levels.iter().all(|g| self.cost.above_container(g));
            (spec.collect)(if pod_level { &pod_ctx } else { &ctx }, samples);
        }
        if let Err(e) = &host {
            self.scrape_errors.with_label_values(&["machine"]).inc();
            tracing::warn!(error = %error_chain(e), "machine collection failed");
        }
        machine::write(
            samples,
            host.as_ref().ok(),
            failures.get() > 0,
            host.is_err(),
        );

        // 4. Shaping; then kadvisor's own families, which are not shaped.
        shaper.shape(&self.cost.shaping, samples);
        shaper.write_self_metrics(self.cost.shaping.max_series_per_family > 0, samples);
        self.write_kernel_self_metrics(&ctx, samples, paths.len());
        self.write_discovery_self_metrics(
            &ctx,
            samples,
            &figures,
            rows.live,
            rows.rows.len() - rows.live,
            retired.len(),
        );
        drop((ctx, pod_ctx));
        row_cache.write_self_metrics(samples);
        self_metrics::write_heap_self_metric(samples);

        // 5. Render into the reused buffer, sized from the previous body: no
        // doubling copies of a multi-MiB buffer.
        self.scrape_duration.observe(start.elapsed().as_secs_f64());
        let last = self.last_body.load(std::sync::atomic::Ordering::Relaxed);
        let mut body = self.bodies.take((last + last / 16).max(64 * 1024));
        render::render(samples, &mut body);
        let mut encoded = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut encoded)?;
        body.push_str(&String::from_utf8_lossy(&encoded));
        self.last_body
            .store(body.len(), std::sync::atomic::Ordering::Relaxed);
        let viewed = view(samples);
        drop(sample_set);
        Ok((body, viewed))
    }

    /// Stage 1 under the sweeper's and the tree's locks: brings the tree up to date
    /// and sweeps, builds and selects the rows, reads the per-cgroup kernel maps (the
    /// `bpf(2)` calls, never blocked by a mount), and takes shared snapshots of the
    /// id → path table and the retired totals. The maps are read here so that they
    /// agree with `retired`: a sweep after the locks are released folds a cgroup's
    /// counters into a retired total this scrape does not see, and deletes its map
    /// entries, which this scrape has already read.
    fn take(&self, kernel: &KernelSnapshot<'_>, start: Instant) -> Result<Taken, CollectError> {
        self.refresh_tree()?;
        let mut reclaim = self
            .reclaim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.sweep_locked(&mut reclaim, start);
        let keeps = |path: &str| self.filter.keeps(path) && self.cost.keeps_path(path);
        let (mut rows, paths, walks, events) = {
            let mut state = self.discovery.state();
            retire::follow_moves(&mut state, &mut reclaim);
            let rows = rows::build(&state, &keeps, self.metadata.as_deref());
            (rows, state.paths_snapshot(), state.walks, state.events)
        };
        rows::select(
            &self.cost,
            &mut rows,
            self.kernel.as_ref(),
            Arc::make_mut(&mut reclaim.retired),
            &|path| self.metadata.as_ref()?.pod_labels(path),
        );
        kernel.read_counter_maps();
        let retired = Arc::clone(&reclaim.retired);
        // Ids the tree never knew, from the maps just read; credited to the root
        // from the next scrape on (this one's `retired` is taken).
        if self.unknown_scan_due(&reclaim, start, false)
            && let Some(tracked) = kernel.tracked_ids()
        {
            self.reclaim_unknown(&mut reclaim, tracked, start);
        }
        Ok(Taken {
            rows,
            paths,
            retired,
            figures: self_metrics::DiscoveryFigures {
                walks,
                events,
                retired_count: reclaim.retired_count,
                unknown_count: reclaim.unknown_count,
            },
        })
    }

    /// Brings the tree up to date: events queued by mkdirs that returned before this
    /// scrape began; a full walk when no watcher keeps it.
    fn refresh_tree(&self) -> Result<(), CollectError> {
        self.discovery.sync();
        if !self.watched {
            self.discovery.reconcile(&self.tree).inspect_err(|e| {
                self.scrape_errors.with_label_values(&["cgroup"]).inc();
                tracing::warn!(error = %error_chain(e), "cgroup walk failed");
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
