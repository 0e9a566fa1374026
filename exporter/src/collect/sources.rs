//! Stage 2, sources: what the families read, each at most once per scrape. The
//! kernel maps through `KernelSnapshot`; each row's cgroupfs files through
//! `cgroup::files` (one open handle per file, re-read with one `pread`), a quiet
//! row's parsed values from the idle-row cache (`refresh`); each row's
//! `cgroup.procs` once for every family that needs the row's processes.
//!
//! The kernel's scrape-time task pass (`task_pass`: `iter/task` + `iter/task_file`,
//! one typed `bpf::CgroupTasks` per cgroup) feeds the schedstat and process
//! families; the network namespaces still read the rows' pids here (`row_pids`).
use std::{
    cell::{Cell, OnceCell, RefCell},
    collections::HashMap,
};

use super::{Row, kernel::KernelSnapshot, memory, refresh};
use crate::{
    bpf::CgroupPass,
    cgroup::{Controller, ControllerDir, Hierarchies, PathMemory, RetiredTotals, files},
};

/// The series kadvisor's own families write per row (lean by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnFamilies {
    /// `container_crashes_total` split by `signal` (the `crash_signals` group).
    pub crash_signals: bool,
    pub socket: super::net::SocketShape,
    /// The `memory_reclaim` group is on: memory.events is read too.
    pub memory_reclaim: bool,
}

/// What every family collector gets for one scrape.
pub struct ScrapeContext<'a> {
    /// The exported rows, root first: the first `live` are live cgroups, the rest
    /// removed ones inside their grace period (their directories are gone).
    pub rows: &'a [Row],
    pub live: usize,
    /// Where each controller's files live.
    pub hierarchies: &'a Hierarchies,
    /// The kernel programs' maps, each read once per scrape.
    pub kernel: &'a KernelSnapshot<'a>,
    /// id → path of every live and not-yet-retired removed cgroup: for summing
    /// per-cgroup kernel counters up the tree (`cpu::hierarchical_totals`).
    pub paths: &'a PathMemory,
    /// Counters of retired cgroups, folded into their ancestors' paths.
    pub retired: &'a RetiredTotals,
    /// The host's swap in use, for the root row's `container_memory_swap`.
    pub root_swap: memory::RootSwap,
    /// How kadvisor's own families are split (crashes by signal, socket traffic).
    pub own: OwnFamilies,
    pub(super) errors: &'a prometheus::IntCounterVec,
    /// Sources that failed so far this scrape (`container_scrape_error`).
    pub(super) failures: &'a Cell<u32>,
    /// Each row's `cgroup.procs`, read once per scrape for every family that needs it.
    pub(super) row_pids: OnceCell<Vec<Option<Vec<u32>>>>,
    /// Per-row values kept between scrapes (`refresh`); `None` reads every row.
    pub cache: Option<RefCell<&'a mut refresh::RowCache>>,
    /// Rows' ids in v1 hierarchies, kept between scrapes (`hierarchy_id`).
    pub v1_ids: &'a RefCell<V1Ids>,
}

impl ScrapeContext<'_> {
    /// Reports a failed source: counted in `kadvisor_scrape_errors_total{source}` and
    /// logged. The caller skips that source's samples and carries on.
    pub fn failed(&self, source: &str, error: &dyn std::error::Error) {
        self.errors.with_label_values(&[source]).inc();
        self.failures.set(self.failures.get() + 1);
        tracing::warn!(source, error = %crate::error_chain(error), "collection failed");
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

    /// The kernel's task pass per cgroup id, run once per scrape; `None` when it is not
    /// attached or failed (a failure is reported under source `task_pass`, once per
    /// scrape whichever families read it).
    pub fn task_pass(&self) -> Option<&std::collections::HashMap<u64, crate::bpf::CgroupTasks>> {
        self.kernel_pass(self.kernel.task_pass(), "task_pass", || {
            self.kernel.report_task_pass_failure()
        })
    }

    /// The kernel's cgroup pass (memory and pids counters), run once per scrape;
    /// `None` when it is not attached or failed (a failure is reported under source
    /// `cgroup_pass`, once per scrape): the families then read the files.
    pub fn cgroup_pass(&self) -> Option<&CgroupPass> {
        self.kernel_pass(self.kernel.cgroup_pass(), "cgroup_pass", || {
            self.kernel.report_cgroup_pass_failure()
        })
    }

    /// A scrape-time pass's result, or `None` when the pass is not attached or failed;
    /// a failure is reported under `source` when `first_failure()` says it is the
    /// scrape's first.
    fn kernel_pass<'p, T>(
        &self,
        pass: Result<&'p T, &crate::bpf::BpfError>,
        source: &str,
        first_failure: impl FnOnce() -> bool,
    ) -> Option<&'p T> {
        use crate::bpf::BpfError::{NoCgroupPass, NoTaskPass};
        match pass {
            Ok(pass) => Some(pass),
            Err(NoTaskPass | NoCgroupPass) => None,
            Err(e) => {
                if first_failure() {
                    self.failed(source, e);
                }
                None
            }
        }
    }

    /// The id of `row`'s cgroup in the hierarchy of `dir`, `controller`'s directory
    /// for it, as the cgroup pass knows it: the row's own (v2) id on v2; on v1 its
    /// directory's inode, stated once and kept while `known` (the pass has it: a
    /// re-created directory has a new inode). `None`: the directory is gone.
    pub fn hierarchy_id(
        &self,
        controller: Controller,
        row: &Row,
        dir: &ControllerDir,
        known: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let ControllerDir::V1(path) = dir else {
            return Some(row.id);
        };
        let mut ids = self.v1_ids.borrow_mut();
        if let Some(&id) = ids.ids.get(&(controller, row.id))
            && known(id)
        {
            return Some(id);
        }
        let id = files::stat_file(path).ok()?.ino;
        ids.ids.insert((controller, row.id), id);
        Some(id)
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

/// Rows' cgroup ids in the v1 hierarchies, by controller and row (v2) id: on a hybrid
/// host each v1 hierarchy is a tree of its own, whose ids the cgroup pass reports.
#[derive(Debug, Default)]
pub struct V1Ids {
    ids: HashMap<(Controller, u64), u64>,
}

impl V1Ids {
    /// Forgets rows that are gone, once the table holds far more than `rows` (a
    /// table bounded by the rows, without a set of them at every scrape).
    pub fn keep_only(&mut self, rows: &[Row]) {
        if self.ids.len() <= 4 * rows.len() + 64 {
            return;
        }
        let live: std::collections::HashSet<u64> = rows.iter().map(|row| row.id).collect();
        self.ids.retain(|(_, id), _| live.contains(id));
    }
}
