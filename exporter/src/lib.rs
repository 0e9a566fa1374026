//! kadvisor: cAdvisor's per-container metrics, computed in the kernel.
//!
//! The modules follow the data flow: `bpf` loads the kernel programs and reads their
//! maps, `cgroup` maps cgroup ids to paths, `runtime`
//! joins container metadata, `collect` turns both into cAdvisor's
//! metric families at scrape time, `http` serves them.
pub mod bpf;
pub mod cgroup;
pub mod collect;
pub mod config;
pub mod cost;
pub mod heap;
pub mod http;
pub mod runtime;
