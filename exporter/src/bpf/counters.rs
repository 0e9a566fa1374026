//! Names of the per-cgroup kernel counters in the retired-totals store
//! (`cgroup::RetiredTotals`): what a removed cgroup's map entries leave to its parent
//! once they are deleted. Every map in the loader's per-cgroup maps must have its
//! counters here.
use kadvisor_common::{CRASH_SIGNALS, CgroupCpu, CgroupCrashes, CgroupNet};

pub const CPU_NS: &str = "cpu_ns";
pub const RUNQUEUE_NS: &str = "runqueue_ns";
pub const RUN_PERIODS: &str = "run_periods";
pub const OOM_KILLS: &str = "oom_kills";
pub const NET_RX_BYTES: &str = "net_rx_bytes";
pub const NET_RX_PACKETS: &str = "net_rx_packets";
/// By `DEST_*` index, like `CgroupNet::tx_bytes`.
pub const NET_TX_BYTES: [&str; 4] = [
    "net_tx_bytes_pod",
    "net_tx_bytes_service",
    "net_tx_bytes_node",
    "net_tx_bytes_external",
];
pub const NET_TX_PACKETS: [&str; 4] = [
    "net_tx_packets_pod",
    "net_tx_packets_service",
    "net_tx_packets_node",
    "net_tx_packets_external",
];

/// A retired cgroup's socket counters, by name.
pub fn net_counters(net: &CgroupNet) -> Vec<(&'static str, u64)> {
    let mut out = vec![
        (NET_RX_BYTES, net.rx_bytes),
        (NET_RX_PACKETS, net.rx_packets),
    ];
    out.extend(NET_TX_BYTES.iter().copied().zip(net.tx_bytes));
    out.extend(NET_TX_PACKETS.iter().copied().zip(net.tx_packets));
    out
}

/// A retired cgroup's final hierarchical counters, by name: CPU (usage, run-queue
/// time, run periods), crashes per signal, socket traffic and OOM kills.
pub fn retired_counters(
    cpu: &CgroupCpu,
    crashes: &CgroupCrashes,
    net: &CgroupNet,
    oom_kills: u64,
) -> Vec<(&'static str, u64)> {
    let mut out = vec![
        (CPU_NS, cpu.runtime_ns),
        (RUNQUEUE_NS, cpu.runqueue_ns),
        (RUN_PERIODS, cpu.run_periods),
    ];
    for ((_, signal), count) in CRASH_SIGNALS.iter().zip(crashes.by_signal) {
        out.push((*signal, count));
    }
    out.extend(net_counters(net));
    out.push((OOM_KILLS, oom_kills));
    out
}
