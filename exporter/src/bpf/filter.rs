//! The kernel side of the cgroup selection (`cost::Selection`): the
//! `CGROUP_EXCLUDED` denylist every hook consults (kernel/src/maps.rs `excluded`).
use std::{collections::HashSet, os::fd::OwnedFd, sync::Mutex};

use super::{BpfError, raw};

/// Adds cgroup ids to the kernel's denylist. Shared by the discovery callback (path
/// patterns, decided at mkdir) and the scrape (namespaces, decided when the runtime
/// has answered).
#[derive(Debug)]
pub struct CgroupFilter {
    excluded: OwnedFd,
    /// The counter maps whose entries of a newly excluded cgroup are deleted (what
    /// was counted before the cgroup was excluded).
    counters: Vec<(&'static str, OwnedFd)>,
    ids: Mutex<HashSet<u64>>,
}

impl CgroupFilter {
    pub(super) fn new(excluded: OwnedFd, counters: Vec<(&'static str, OwnedFd)>) -> Self {
        Self {
            excluded,
            counters,
            ids: Mutex::default(),
        }
    }

    /// A filter whose every kernel update fails (its map is `/dev/null`), like a
    /// full or broken denylist: for tests of what its callers do then.
    #[cfg(test)]
    pub fn failing() -> Self {
        let not_a_map = std::fs::File::open("/dev/null").expect("open /dev/null");
        Self::new(not_a_map.into(), Vec::new())
    }

    /// Stops counting `id` in the kernel and deletes what was counted for it. `Ok(false)`
    /// when it was excluded already.
    pub fn exclude(&self, id: u64) -> Result<bool, BpfError> {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.contains(&id) {
            return Ok(false);
        }
        raw::update_u64_key_u8(&self.excluded, id, 1).map_err(|source| BpfError::Raw {
            name: "CGROUP_EXCLUDED",
            source,
        })?;
        ids.insert(id);
        for (name, fd) in &self.counters {
            raw::delete_u64_key(fd, id).map_err(|source| BpfError::Raw { name, source })?;
        }
        Ok(true)
    }

    /// Whether `id` is excluded.
    pub fn is_excluded(&self, id: u64) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }

    /// Forgets a removed cgroup (its denylist entry is deleted with the other
    /// per-cgroup entries when it is retired, see `PER_CGROUP_MAPS`).
    pub fn forget(&self, id: u64) {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }
}
