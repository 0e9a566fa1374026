//! Machine families against what the host reports independently: /proc/meminfo and
//! the CPU topology as /proc/cpuinfo lists it.
use std::{collections::HashSet, fs};

use kadvisor_tests::kadvisor::Kadvisor;

fn meminfo_bytes(key: &str) -> f64 {
    let text = fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/meminfo"));
    (kib * 1024) as f64
}

fn first_line(path: &str) -> String {
    fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

/// (logical CPUs, distinct (socket, core) pairs, distinct sockets) of the online
/// CPUs as /proc/cpuinfo lists them (`processor`, `physical id`, `core id`): the
/// kernel's other view of the topology kadvisor reads from sysfs.
fn cpuinfo_topology() -> (f64, f64, f64) {
    let text = fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    let field = |block: &str, key: &str| -> String {
        block
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{key} in /proc/cpuinfo block:\n{block}"))
    };
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| b.contains("processor"))
        .collect();
    let cores: HashSet<(String, String)> = blocks
        .iter()
        .map(|b| (field(b, "physical id"), field(b, "core id")))
        .collect();
    let sockets: HashSet<String> = blocks.iter().map(|b| field(b, "physical id")).collect();
    (
        blocks.len() as f64,
        cores.len() as f64,
        sockets.len() as f64,
    )
}

#[test]
fn machine_metrics_match_meminfo_and_topology() {
    let kadvisor = Kadvisor::start(&[]);
    let scrape = kadvisor.scrape();
    let boot_id = first_line("/proc/sys/kernel/random/boot_id");
    let machine_id = first_line("/etc/machine-id");
    let system_uuid = first_line("/sys/class/dmi/id/product_uuid");
    assert!(!boot_id.is_empty());
    let labels = [
        ("boot_id", boot_id.as_str()),
        ("machine_id", machine_id.as_str()),
        ("system_uuid", system_uuid.as_str()),
    ];
    let (cpus, cores, sockets) = cpuinfo_topology();
    for (name, want) in [
        ("machine_memory_bytes", meminfo_bytes("MemTotal")),
        ("machine_swap_bytes", meminfo_bytes("SwapTotal")),
        ("machine_cpu_cores", cpus),
        ("machine_cpu_physical_cores", cores),
        ("machine_cpu_sockets", sockets),
    ] {
        assert_eq!(scrape.value(name, &labels), want, "{name}");
    }
    assert_eq!(scrape.value("machine_scrape_error", &[]), 0.0);
    assert_eq!(scrape.value("container_scrape_error", &[]), 0.0);
    let kernel = first_line("/proc/sys/kernel/osrelease");
    assert_eq!(
        scrape.value("cadvisor_version_info", &[("kernelVersion", &kernel)]),
        1.0
    );
}
