//! kadvisor: cAdvisor's per-container metrics, computed in the kernel.
//!
//! The modules follow the data flow: `bpf` loads the kernel programs and reads their
//! maps, `cgroup` maps cgroup ids to paths and reads their files, `runtime` joins
//! container metadata, `collect` turns them into cAdvisor's metric families at
//! scrape time (its module doc lists the stages), `cost` holds the settings that
//! decide what a scrape collects and emits, `http` serves it. `bpf`, `cgroup` and
//! `runtime` import nothing from `collect` or `cost`.
pub mod bpf;
pub mod cgroup;
pub mod collect;
pub mod config;
pub mod cost;
pub mod heap;
pub mod http;
pub mod profile;
pub mod runtime;
pub mod supported_kernel;

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
