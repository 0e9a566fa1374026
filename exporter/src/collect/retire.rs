//! Around the stages: removed cgroups. A removed cgroup's row stays for the grace
//! period with its final values; then its counters are folded into its parent's
//! retired totals and its kernel map entries deleted (`Collector::sweep`).
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use super::Collector;
use crate::{
    cgroup::{RetiredTotals, discovery::TreeState},
    error_chain,
};

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

/// What the sweeps keep between scrapes.
#[derive(Debug, Default)]
pub struct Reclaim {
    /// Shared with the scrape in progress, which reads it after this lock is
    /// released; copied on write only while a scrape holds it.
    pub retired: Arc<RetiredTotals>,
    pub retired_count: u64,
    /// Map ids reclaimed without ever having a known path.
    pub unknown_count: u64,
    /// Ids in the kernel maps unknown to the tree, and since when.
    unknown: HashMap<u64, Instant>,
    last_unknown_scan: Option<Instant>,
}

impl Collector {
    /// Retires removed cgroups whose grace period is over: their final counters are
    /// folded into their parent's retired totals, their entries deleted from every
    /// per-cgroup kernel map, their cached metadata dropped. Also reclaims map entries
    /// of ids the tree never knew. Called before each scrape and by a timer, which
    /// sleeps until the returned time (or until discovery reports a removal,
    /// `Discovery::removals`): the earliest grace-period end or the next idle scan
    /// for unknown ids, at least `MIN_SWEEP_GAP` away (a retirement that failed is
    /// retried then).
    pub fn sweep(&self) -> Instant {
        let mut reclaim = self
            .reclaim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        self.sweep_locked(&mut reclaim, now);
        if self.unknown_scan_due(&reclaim, now, true) {
            match self.kernel.tracked_ids() {
                Ok(tracked) => self.reclaim_unknown(&mut reclaim, tracked, now),
                Err(e) => {
                    reclaim.last_unknown_scan = Some(now);
                    self.scrape_errors.with_label_values(&["retire"]).inc();
                    tracing::warn!(error = %error_chain(&e), "cannot list map keys");
                }
            }
        }
        let next_scan = reclaim.last_unknown_scan.map_or(now, |last| {
            last + IDLE_UNKNOWN_SCAN.max(self.retention.unknown_grace)
        });
        let next_expiry = self
            .discovery
            .state()
            .next_expiry(self.retention.grace)
            .unwrap_or(next_scan);
        next_scan.min(next_expiry).max(now + MIN_SWEEP_GAP)
    }

    pub(super) fn sweep_locked(&self, reclaim: &mut Reclaim, now: Instant) {
        let expired = {
            let mut state = self.discovery.state();
            follow_moves(&mut state, reclaim);
            state.take_expired(self.retention.grace, now)
        };
        let mut retired_now = 0_usize;
        for cgroup in expired {
            match self.kernel.counters_of(cgroup.id) {
                Ok(counters) => Arc::make_mut(&mut reclaim.retired).retire(&cgroup.path, &counters),
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
                // A path moved aside carries `\0<id>` (see discovery::TreeState::move_aside).
                metadata.forget(&crate::cgroup::discovery::real_path(&cgroup.path));
            }
            reclaim.retired_count += 1;
            retired_now += 1;
        }
        if retired_now > 0 {
            // Rows, paths and scrape buffers of the retired cgroups were freed: hand
            // the pages back.
            crate::heap::release_free_memory();
        }
    }

    /// Reclaims map entries of ids the tree never knew (a cgroup created and removed
    /// between two events) once they are older than `unknown_grace`: their counters
    /// are credited to the root. `tracked` is every id in a per-cgroup map: the
    /// scrape passes the keys of the maps it read anyway, so this costs no syscall
    /// unless such ids exist.
    pub(super) fn reclaim_unknown(
        &self,
        reclaim: &mut Reclaim,
        tracked: HashSet<u64>,
        now: Instant,
    ) {
        reclaim.last_unknown_scan = Some(now);
        let unknown: Vec<u64> = {
            let state = self.discovery.state();
            tracked
                .into_iter()
                .filter(|id| state.paths().path(*id).is_none())
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
                Arc::make_mut(&mut reclaim.retired).credit("/", &counters);
                if self.kernel.forget(id).is_ok() {
                    reclaim.unknown.remove(&id);
                    reclaim.unknown_count += 1;
                }
            }
        }
    }

    /// Whether the unknown-id scan is due: a few times per `unknown_grace` while
    /// scrapes come, at most once a minute from the idle timer (listing every map key
    /// costs a syscall per entry).
    pub(super) fn unknown_scan_due(&self, reclaim: &Reclaim, now: Instant, idle: bool) -> bool {
        let every = if idle {
            IDLE_UNKNOWN_SCAN.max(self.retention.unknown_grace)
        } else {
            self.retention.unknown_grace / 4
        };
        reclaim
            .last_unknown_scan
            .is_none_or(|last| now.saturating_duration_since(last) >= every)
    }
}

/// Moves the retired totals of recreated paths' old cgroups aside as the tree did
/// their paths: under both locks, so no scrape reads one moved and not the other.
pub(super) fn follow_moves(state: &mut TreeState, reclaim: &mut Reclaim) {
    let moves = state.take_moved_aside();
    if !moves.is_empty() {
        let retired = Arc::make_mut(&mut reclaim.retired);
        for (from, to) in moves {
            retired.move_aside(&from, &to);
        }
    }
}

/// How often the timer lists the kernel maps for unknown ids when nobody scrapes.
const IDLE_UNKNOWN_SCAN: Duration = Duration::from_secs(60);
/// The shortest wait between two timer sweeps.
const MIN_SWEEP_GAP: Duration = Duration::from_secs(1);
