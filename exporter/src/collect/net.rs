//! Network families.
//!
//! **Per container, new** (`container_socket_*`): bytes and packets of each cgroup's
//! sockets from the `cgroup_skb` programs (kernel/src/net.rs), summed up the tree like
//! CPU time, transmitted traffic split by `destination` class. These work for
//! hostNetwork pods and for containers sharing a pod network namespace, which
//! cAdvisor cannot separate; they have their own names so that `sum by (pod)` over
//! the compatible families below does not double count.
//!
//! **Compatible** (`container_network_*{interface}`): interface counters of a network
//! namespace, from `/proc/<pid>/net/dev` (no setns needed), skipping `lo`, `veth*`,
//! `docker*`, `nerdctl*` as cAdvisor does. The root row gets the host's namespace
//! (kadvisor's own: it runs with host networking). Any other network namespace is shown on exactly one row, so summing
//! rows never double counts (see `netns_owners`).
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use kadvisor_common::{CgroupNet, DEST_EXTERNAL, DEST_NODE, DEST_POD, DEST_SERVICE};

use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::{
    bpf::add_net,
    cgroup::{PathMemory, RetiredTotals, ancestors, files::read_optional},
};

/// `destination` label values by `DEST_*` index.
pub const DESTINATIONS: [(u32, &str); 4] = [
    (DEST_POD, "pod"),
    (DEST_SERVICE, "service"),
    (DEST_NODE, "node"),
    (DEST_EXTERNAL, "external"),
];

/// A family: name, help, and the field it reads.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Interface name prefixes cAdvisor leaves out (loopback, host-side veths, bridges).
const IGNORED_INTERFACE_PREFIXES: [&str; 4] = ["lo", "veth", "docker", "nerdctl"];

/// Which socket series each row gets: lean by default (bytes received and sent, 2
/// series), packets (`socket_packets` group) and the destination split of sent
/// traffic (only meaningful once CIDRs are configured) when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketShape {
    pub packets: bool,
    pub destinations: bool,
}

/// Writes both groups. `memory` must already hold this scrape's live cgroups
/// (`cpu::collect` updates it first).
pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let memory = ctx.paths;
    if ctx.kernel.family_attached("socket") {
        match ctx.kernel.cgroup_net() {
            Ok(per_cgroup) => {
                let totals = hierarchical_net(per_cgroup, memory, ctx.retired);
                write_socket(out, ctx.rows, &totals, ctx.own.socket);
            }
            Err(e) => ctx.failed("socket", &e),
        }
    }
    collect_interfaces(ctx, Path::new("/proc"), out);
}

use crate::bpf::counters::{
    NET_RX_BYTES as RX_BYTES_COUNTER, NET_RX_PACKETS as RX_PACKETS_COUNTER,
    NET_TX_BYTES as TX_BYTES_COUNTERS, NET_TX_PACKETS as TX_PACKETS_COUNTERS,
};

/// Like `cpu::hierarchical_totals`, for every field of `CgroupNet`: live and
/// grace-period cgroups from the map, retired ones from `retired` (already folded
/// into an ancestor's path).
pub fn hierarchical_net<'a>(
    per_cgroup: &HashMap<u64, CgroupNet>,
    memory: &'a PathMemory,
    retired: &'a RetiredTotals,
) -> HashMap<&'a str, CgroupNet> {
    let mut totals: HashMap<&str, CgroupNet> = HashMap::new();
    let mut add_retired = |counter: &'a str, field: &dyn Fn(&mut CgroupNet) -> &mut u64| {
        for (path, value) in retired.of(counter) {
            for ancestor in ancestors(path) {
                let slot = field(totals.entry(ancestor).or_default());
                *slot = slot.wrapping_add(value);
            }
        }
    };
    add_retired(RX_BYTES_COUNTER, &|n| &mut n.rx_bytes);
    add_retired(RX_PACKETS_COUNTER, &|n| &mut n.rx_packets);
    for class in 0..TX_BYTES_COUNTERS.len() {
        add_retired(TX_BYTES_COUNTERS[class], &|n| &mut n.tx_bytes[class]);
        add_retired(TX_PACKETS_COUNTERS[class], &|n| &mut n.tx_packets[class]);
    }
    for (id, value) in per_cgroup {
        match memory.path(*id) {
            Some(path) => {
                for ancestor in ancestors(path) {
                    add_net(totals.entry(ancestor).or_default(), value);
                }
            }
            None => add_net(totals.entry("/").or_default(), value),
        }
    }
    totals
}

#[expect(
    clippy::cast_precision_loss,
    reason = "byte counters stay exact in f64 up to 8 PiB"
)]
pub fn write_socket(
    out: &mut SampleSet,
    rows: &[Row],
    totals: &HashMap<&str, CgroupNet>,
    shape: SocketShape,
) {
    let zero = CgroupNet::default();
    let get = |row: &Row| totals.get(row.path.as_str()).unwrap_or(&zero);
    let plain: [Family<CgroupNet, u64>; 2] = [
        (
            "container_socket_receive_bytes_total",
            "Bytes received by the container's sockets: IP packets including IP headers, GRO aggregates counted as their segments (cgroup_skb ingress).",
            |n| n.rx_bytes,
        ),
        (
            "container_socket_receive_packets_total",
            "IP packets received by the container's sockets (cgroup_skb ingress).",
            |n| n.rx_packets,
        ),
    ];
    for (name, help, field) in plain {
        if !shape.packets && name.ends_with("_packets_total") {
            continue;
        }
        out.family(name, help, MetricType::Counter);
        for row in rows {
            out.sample(name, Some(&row.labels), &[], field(get(row)) as f64);
        }
    }
    let by_class: [Family<CgroupNet, [u64; 4]>; 2] = [
        (
            "container_socket_transmit_bytes_total",
            "Bytes sent by the container's sockets by destination class (pod/service/node CIDR flags, else external): IP packets including IP headers, GSO aggregates counted as their segments (cgroup_skb egress).",
            |n| n.tx_bytes,
        ),
        (
            "container_socket_transmit_packets_total",
            "IP packets sent by the container's sockets by destination class (cgroup_skb egress).",
            |n| n.tx_packets,
        ),
    ];
    for (name, help, field) in by_class {
        if !shape.packets && name.ends_with("_packets_total") {
            continue;
        }
        out.family(name, help, MetricType::Counter);
        for row in rows {
            let values = field(get(row));
            if !shape.destinations {
                let sum: u64 = values.iter().sum();
                out.sample(name, Some(&row.labels), &[], sum as f64);
                continue;
            }
            for (class, label) in DESTINATIONS {
                let value = values.get(class as usize).copied().unwrap_or(0);
                out.sample(
                    name,
                    Some(&row.labels),
                    &[("destination", label)],
                    value as f64,
                );
            }
        }
    }
}

/// One line of `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`, leaving out the interfaces cAdvisor ignores.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if IGNORED_INTERFACE_PREFIXES
                .iter()
                .any(|p| name.starts_with(p))
            {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes
            // packets errs drop fifo colls carrier compressed.
            (v.len() >= 16).then(|| InterfaceStats {
                name: name.to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// A row whose process lives in a network namespace other than the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsCandidate {
    /// Index into the rows.
    pub row: usize,
    /// Network namespace inode.
    pub netns: u64,
    /// One process of the row's own cgroup (the task pass's lowest-numbered one, or
    /// the first of `cgroup.procs`).
    pub pid: u32,
    /// Depth of the row's path (`/` = 0).
    pub depth: usize,
    /// Start time of `pid` (clock ticks since boot).
    pub start_time: u64,
    /// Whether runtime metadata says this row is a pod sandbox; `None` while
    /// unknown. Issue 6 (runtime metadata) fills it in; until then the structural
    /// rule below decides.
    pub sandbox: Option<bool>,
}

/// Which row shows each non-host network namespace. Exactly one per namespace:
/// 1. a row known to be a pod sandbox (runtime metadata) wins;
/// 2. else the shallowest row (a pod-level cgroup holding a process of the
///    namespace beats its containers; a nested cgroup never repeats its parent's);
/// 3. else the row whose first process started first: the sandbox's pause process
///    starts before the containers that join its namespace;
/// 4. else the smaller row index (stable).
pub fn netns_owners(mut candidates: Vec<NetnsCandidate>) -> Vec<NetnsCandidate> {
    candidates.sort_by_key(|c| {
        (
            c.netns,
            c.sandbox != Some(true),
            c.depth,
            c.start_time,
            c.row,
        )
    });
    candidates.dedup_by_key(|c| c.netns);
    candidates.sort_by_key(|c| c.row);
    candidates
}

fn netns_inode(proc_root: &Path, pid: &str) -> Option<u64> {
    fs::metadata(proc_root.join(pid).join("ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name).
fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

/// Network namespace inode by pid, of the first processes seen at the last scrape.
static NETNS_BY_PID: std::sync::LazyLock<std::sync::Mutex<HashMap<u32, u64>>> =
    std::sync::LazyLock::new(std::sync::Mutex::default);

/// One process of each row's own cgroup (not its descendants'), in row order: the
/// lowest-numbered one from the kernel's task pass when it ran (no file read), else
/// the first of the row's `cgroup.procs`.
fn row_processes(ctx: &ScrapeContext<'_>) -> Vec<Option<u32>> {
    if let Some(pass) = ctx.task_pass() {
        return ctx
            .rows
            .iter()
            .map(|row| pass.get(&row.id).and_then(|tasks| tasks.lowest_tgid))
            .collect();
    }
    ctx.row_pids()
        .iter()
        .map(|pids| pids.as_ref().and_then(|pids| pids.first().copied()))
        .collect()
}

fn candidates(ctx: &ScrapeContext<'_>, proc_root: &Path, host_netns: u64) -> Vec<NetnsCandidate> {
    let mut out = Vec::new();
    let row_processes = row_processes(ctx);
    let mut known = NETNS_BY_PID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut seen = HashMap::with_capacity(known.len());
    for (index, row) in ctx.rows.iter().enumerate().skip(1) {
        let Some(pid) = row_processes[index] else {
            continue;
        };
        // A process keeps its namespace (a pause process, a container's init): one
        // stat per new first process, not per scrape.
        let netns = match known.get(&pid) {
            Some(&netns) => Some(netns),
            None => netns_inode(proc_root, &pid.to_string()),
        };
        let Some(netns) = netns else {
            continue;
        };
        seen.insert(pid, netns);
        if netns == host_netns {
            continue;
        }
        out.push(NetnsCandidate {
            row: index,
            netns,
            pid,
            depth: row.path.matches('/').count() - usize::from(row.path == "/"),
            start_time: start_time(proc_root, pid).unwrap_or(u64::MAX),
            sandbox: None,
        });
    }
    *known = seen;
    out
}

fn collect_interfaces(ctx: &ScrapeContext<'_>, proc_root: &Path, out: &mut SampleSet) {
    // kadvisor runs in the host's network namespace (hostNetwork as a DaemonSet):
    // its own namespace is the host's. PID 1's is often unreadable in sandboxes.
    let Some(host_netns) = netns_inode(proc_root, "self") else {
        return;
    };
    let mut per_row: Vec<(usize, Vec<InterfaceStats>)> = Vec::new();
    let mut read = |index: usize, file: PathBuf| match read_optional(&file) {
        Ok(Some(text)) => per_row.push((index, parse_net_dev(&text))),
        Ok(None) => {}
        Err(e) => ctx.failed("network", &e),
    };
    read(0, proc_root.join("self/net/dev"));
    for owner in netns_owners(candidates(ctx, proc_root, host_netns)) {
        read(
            owner.row,
            proc_root.join(owner.pid.to_string()).join("net/dev"),
        );
    }
    write_interfaces(out, ctx.rows, &per_row);
}

#[expect(
    clippy::cast_precision_loss,
    reason = "interface counters stay exact in f64 up to 8 PiB"
)]
pub fn write_interfaces(
    out: &mut SampleSet,
    rows: &[Row],
    per_row: &[(usize, Vec<InterfaceStats>)],
) {
    let families: [Family<InterfaceStats, u64>; 8] = [
        (
            "container_network_receive_bytes_total",
            "Cumulative count of bytes received",
            |s| s.rx_bytes,
        ),
        (
            "container_network_receive_packets_total",
            "Cumulative count of packets received",
            |s| s.rx_packets,
        ),
        (
            "container_network_receive_packets_dropped_total",
            "Cumulative count of packets dropped while receiving",
            |s| s.rx_dropped,
        ),
        (
            "container_network_receive_errors_total",
            "Cumulative count of errors encountered while receiving",
            |s| s.rx_errors,
        ),
        (
            "container_network_transmit_bytes_total",
            "Cumulative count of bytes transmitted",
            |s| s.tx_bytes,
        ),
        (
            "container_network_transmit_packets_total",
            "Cumulative count of packets transmitted",
            |s| s.tx_packets,
        ),
        (
            "container_network_transmit_packets_dropped_total",
            "Cumulative count of packets dropped while transmitting",
            |s| s.tx_dropped,
        ),
        (
            "container_network_transmit_errors_total",
            "Cumulative count of errors encountered while transmitting",
            |s| s.tx_errors,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, help, MetricType::Counter);
        for (index, interfaces) in per_row {
            let Some(row) = rows.get(*index) else {
                continue;
            };
            for s in interfaces {
                out.sample(
                    name,
                    Some(&row.labels),
                    &[("interface", &s.name)],
                    field(s) as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Cgroup;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  391412    2277    0    0    0     0          0         0   391412    2277    0    0    0     0       0          0
  eth0: 262433804   10446    1    2    0     0          0         0   629161    6563    3    4    0     0       0          0
vethab12:  5  1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
docker0:  5  1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
";

    #[test]
    fn net_dev_skips_what_cadvisor_skips() {
        let stats = parse_net_dev(NET_DEV);
        assert_eq!(stats.len(), 1, "{stats:?}");
        assert_eq!(
            stats[0],
            InterfaceStats {
                name: "eth0".to_owned(),
                rx_bytes: 262_433_804,
                rx_packets: 10446,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 629_161,
                tx_packets: 6563,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    fn cand(row: usize, netns: u64, depth: usize, start_time: u64) -> NetnsCandidate {
        NetnsCandidate {
            row,
            netns,
            pid: 100 + row as u32,
            depth,
            start_time,
            sandbox: None,
        }
    }

    #[test]
    fn one_row_per_namespace() {
        // Pod with sandbox (row 3, started first) and two app containers (4, 5) in
        // netns 7; a standalone container (row 6) alone in netns 8; a nested cgroup
        // (row 9) below row 6 in the same netns.
        let owners = netns_owners(vec![
            cand(4, 7, 3, 200),
            cand(3, 7, 3, 100),
            cand(5, 7, 3, 300),
            cand(6, 8, 1, 50),
            cand(9, 8, 2, 10),
        ]);
        let rows: Vec<usize> = owners.iter().map(|c| c.row).collect();
        assert_eq!(rows, [3, 6]);
    }

    #[test]
    fn runtime_sandbox_mark_wins() {
        let mut app = cand(4, 7, 3, 100);
        app.sandbox = Some(false);
        let mut sandbox = cand(3, 7, 3, 200);
        sandbox.sandbox = Some(true);
        let owners = netns_owners(vec![app, sandbox]);
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].row, 3);
    }

    #[test]
    fn socket_counters_roll_up_and_split_by_destination() {
        let mut memory = PathMemory::default();
        let live = [
            Cgroup {
                id: 1,
                path: "/".to_owned(),
            },
            Cgroup {
                id: 2,
                path: "/a".to_owned(),
            },
            Cgroup {
                id: 3,
                path: "/a/b".to_owned(),
            },
        ];
        memory.update(&live, |_| true);
        let mut b = CgroupNet {
            rx_bytes: 100,
            rx_packets: 2,
            ..CgroupNet::default()
        };
        b.tx_bytes[DEST_POD as usize] = 60;
        b.tx_bytes[DEST_EXTERNAL as usize] = 40;
        let a = CgroupNet {
            rx_bytes: 1,
            rx_packets: 1,
            ..CgroupNet::default()
        };
        let per = HashMap::from([(2, a), (3, b), (99, a)]);
        let none = RetiredTotals::default();
        let totals = hierarchical_net(&per, &memory, &none);
        assert_eq!(totals["/a"].rx_bytes, 101);
        assert_eq!(totals["/"].rx_bytes, 102, "unknown ids roll into the root");

        // /a/gone was retired: its counters were folded into /a, and count there and
        // in the root, every field and class.
        let mut gone = CgroupNet {
            rx_bytes: 7,
            rx_packets: 3,
            ..CgroupNet::default()
        };
        gone.tx_bytes[DEST_SERVICE as usize] = 11;
        gone.tx_packets[DEST_SERVICE as usize] = 2;
        let mut retired = RetiredTotals::default();
        retired.retire("/a/gone", &crate::bpf::counters::net_counters(&gone));
        let with_retired = hierarchical_net(&per, &memory, &retired);
        let mut expected_a = totals["/a"];
        add_net(&mut expected_a, &gone);
        assert_eq!(with_retired["/a"], expected_a);
        assert_eq!(with_retired["/"].rx_bytes, 109);
        assert_eq!(with_retired["/"].tx_packets[DEST_SERVICE as usize], 2);
        assert!(!with_retired.contains_key("/a/b/gone"));
        assert_eq!(with_retired["/a/b"], b, "siblings are not touched");

        let rows = vec![Row::new(2, "/a")];
        let mut out = SampleSet::default();
        let full = SocketShape {
            packets: true,
            destinations: true,
        };
        write_socket(&mut out, &rows, &totals, full);
        let text = out.to_text();
        assert!(text.contains("container_socket_transmit_bytes_total{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\",destination=\"pod\"} 60\n"), "{text}");
        assert!(text.contains("destination=\"external\"} 40\n"), "{text}");
        assert!(text.contains("container_socket_receive_bytes_total{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 101\n"), "{text}");
    }
}
