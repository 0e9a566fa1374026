//! kadvisor's cost benchmark. Run as root with a release build of kadvisor
//! (`scripts/bench.sh` does both). Prints one table, each figure against its target
//! and, where one exists, as a ratio to the cAdvisor-style baseline measured in the
//! same run on the same cgroups.
//!
//! Phases: (1) ns/event of every attached program under a context-switch, a
//! network and an IO load (`kernel.bpf_stats_enabled`); (2) `perf bench sched pipe`
//! and `perf bench sched messaging` (hackbench) with and without kadvisor, interleaved;
//! (3) 100 and 1000 live cgroups (v2 tree + v1 hierarchies) each holding a process:
//! scrape latency p50/p99 over 100 scrapes, CPU per scrape, body size, RSS, map
//! memory; the baseline collector on the same cgroups; (4) kadvisor's CPU over a
//! minute with nobody scraping; (5) series and scrape CPU at 1000 containers with the
//! defaults and with a cost-conscious configuration (`cost.rs`). `--cost-only` runs
//! phase 5 alone. `--engine` runs the scrape-engine figures alone (`engine.rs`: every
//! row fresh; syscalls by kind, CPU per row, fixed cost, peak RSS, idle CPU; before
//! and after when `KADVISOR_BIN_BEFORE` names a second binary).
mod baseline;
mod cgroups;
mod cost;
mod engine;
mod http;
mod proc;

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use kadvisor_tests::{kadvisor::Kadvisor, scrape::Scrape};

pub struct Row {
    what: String,
    value: String,
    target: String,
    verdict: &'static str,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row {
            what: what.into(),
            value: value.into(),
            target: String::new(),
            verdict: "",
        });
    }

    fn check(&mut self, what: impl Into<String>, value: f64, unit: &str, target: f64) {
        self.rows.push(Row {
            what: what.into(),
            value: format!("{value:.3} {unit}"),
            target: format!("≤ {target} {unit}"),
            verdict: if value <= target { "met" } else { "MISSED" },
        });
    }

    fn print(&self) {
        println!("\n| measure | value | target | |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                r.what, r.value, r.target, r.verdict
            );
        }
    }
}

fn main() {
    kadvisor_tests::require_root();
    assert!(
        std::env::var_os("KADVISOR_BIN").is_some(),
        "set KADVISOR_BIN to a release build (scripts/bench.sh does)"
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(count) = option(&args, "--hold") {
        hold(count);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scrape_only = args.iter().any(|a| a == "--scrape-only");
    let mut report = Report::default();
    machine(&mut report);
    if args.iter().any(|a| a == "--engine") {
        engine::engine(
            &mut report,
            if quick { 10 } else { 30 },
            if quick { 20 } else { 60 },
        );
        report.print();
        return;
    }
    if std::env::args().any(|a| a == "--cost-only") {
        cost::cost_controls(&mut report, 1000, if quick { 20 } else { 50 });
        report.print();
        return;
    }
    if !scrape_only {
        ns_per_event(&mut report, quick);
        slowdown(&mut report, if quick { 2 } else { 5 });
    }
    for count in [100, 1000] {
        scrape_cost(&mut report, count, if quick { 20 } else { 100 });
    }
    if !scrape_only {
        idle_cpu(&mut report, if quick { 10 } else { 60 });
        cost::cost_controls(&mut report, 1000, if quick { 20 } else { 50 });
    }
    report.print();
}

/// The value of `--name N` in `args`.
fn option(args: &[String], name: &str) -> Option<usize> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

/// `--hold N`: N live cgroups and a kadvisor, kept until stdin closes or a line is
/// read, for profiling the scrape path by hand (perf record -p, strace -p).
fn hold(count: usize) {
    let population = cgroups::Population::create("kadvisor-bench-hold", count);
    let kadvisor = Kadvisor::start(&["--log_level", "warn"]);
    println!("kadvisor pid {} port {}", kadvisor.pid(), kadvisor.port());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(kadvisor);
    drop(population);
}

fn machine(report: &mut Report) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    report.add("machine", format!("{cpus} CPUs, kernel {}", kernel.trim()));
}

fn metric_by_program(scrape: &Scrape, name: &str) -> BTreeMap<String, f64> {
    scrape
        .find(name, &[])
        .into_iter()
        .map(|s| (s.labels["program"].clone(), s.value))
        .collect()
}

/// A workload that exercises one family of hooks.
type Load = Box<dyn Fn()>;

/// Phase 1: ns per event of every attached program under three loads.
fn ns_per_event(report: &mut Report, quick: bool) {
    let previous =
        std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").expect("enable bpf stats");
    let kadvisor = Kadvisor::start(&["--log_level", "warn"]);
    let scale = if quick { 1 } else { 4 };
    let loads: [(&str, Load); 3] = [
        (
            "context switches (perf bench sched pipe)",
            Box::new(move || {
                let _ = run_perf(&["sched", "pipe", "-l", &(50_000 * scale).to_string()]);
            }),
        ),
        (
            "network (loopback TCP)",
            Box::new(move || loopback_tcp((256 << 20) * scale)),
        ),
        (
            "block IO (dd direct + buffered)",
            Box::new(move || block_io(64 * scale)),
        ),
    ];
    for (load, run) in loads {
        let before = kadvisor.scrape();
        run();
        let after = kadvisor.scrape();
        let runs0 = metric_by_program(&before, "kadvisor_bpf_program_runs_total");
        let runs1 = metric_by_program(&after, "kadvisor_bpf_program_runs_total");
        let time0 = metric_by_program(&before, "kadvisor_bpf_program_run_seconds_total");
        let time1 = metric_by_program(&after, "kadvisor_bpf_program_run_seconds_total");
        for (program, r1) in &runs1 {
            let runs = r1 - runs0.get(program).copied().unwrap_or(0.0);
            if runs < 1000.0 {
                continue;
            }
            let ns = (time1[program] - time0.get(program).copied().unwrap_or(0.0)) * 1e9;
            let what = format!("{program}: ns/event under {load} ({runs:.0} events)");
            if program.starts_with("sched") {
                report.check(what, ns / runs, "ns", 50.0);
            } else {
                report.add(what, format!("{:.1} ns", ns / runs));
            }
        }
    }
    drop(kadvisor);
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", previous.trim());
}

fn run_perf(args: &[&str]) -> Option<f64> {
    let output = Command::new("perf").arg("bench").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Total time:"))
        .and_then(|v| v.trim().split(' ').next()?.parse().ok())
}

/// Sends `bytes` over a loopback TCP connection.
fn loopback_tcp(bytes: usize) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        while stream.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let chunk = vec![7u8; 16 * 1024];
    let mut sent = 0;
    while sent < bytes {
        stream.write_all(&chunk).expect("send");
        sent += chunk.len();
    }
    drop(stream);
    receiver.join().expect("receiver");
}

/// Writes `mib` MiB with O_DIRECT and `mib` MiB buffered, then syncs.
fn block_io(mib: usize) {
    let dir = std::env::temp_dir().join(format!("kadvisor-bench-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let count = format!("count={mib}");
    for (file, flags) in [("direct", "oflag=direct"), ("buffered", "conv=fsync")] {
        let of = format!("of={}", dir.join(file).display());
        let status = Command::new("dd")
            .args(["if=/dev/zero", &of, "bs=1M", &count, flags, "status=none"])
            .status()
            .expect("dd");
        assert!(status.success(), "dd {flags}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

/// Phase 2: scheduler benchmarks with and without kadvisor, interleaved.
fn slowdown(report: &mut Report, pairs: usize) {
    for (name, args, target) in [
        (
            "perf bench sched pipe",
            &["sched", "pipe", "-l", "100000"][..],
            Some(3.0),
        ),
        (
            "hackbench (perf bench sched messaging)",
            &["sched", "messaging", "-g", "4", "-l", "200"][..],
            None,
        ),
    ] {
        let mut ratios = Vec::new();
        for _ in 0..pairs {
            let Some(without) = run_perf(args) else {
                report.add(name, "perf unavailable");
                return;
            };
            let kadvisor = Kadvisor::start(&["--log_level", "warn"]);
            let with = run_perf(args).unwrap_or(f64::NAN);
            drop(kadvisor);
            ratios.push(with / without);
        }
        let slowdown = (median(&mut ratios) - 1.0) * 100.0;
        let what = format!("{name}: slowdown with kadvisor (median of {pairs} interleaved pairs)");
        match target {
            Some(t) => report.check(what, slowdown, "%", t),
            None => report.add(what, format!("{slowdown:.1} %")),
        }
    }
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// What one kadvisor configuration costs on a population.
struct Measured {
    rows: f64,
    p50: f64,
    p99: f64,
    cpu_per_scrape: f64,
    /// Rows whose files were read per scrape (`kadvisor_row_refreshes_total`).
    read_per_scrape: f64,
    plain: usize,
    gzip: usize,
    rss: f64,
    map_kib: f64,
    map_kib_128: f64,
}

/// `scrapes` back-to-back scrapes of a kadvisor started with `args`.
fn measure(args: &[&str], scrapes: usize) -> Measured {
    let mut all = vec!["--log_level", "warn"];
    all.extend(args);
    let kadvisor = Kadvisor::start(&all);
    let port = kadvisor.port();
    let read_rows = |scrape: &Scrape| -> f64 {
        scrape
            .find("kadvisor_row_refreshes_total", &[])
            .iter()
            .map(|s| s.value)
            .sum()
    };
    let warm = kadvisor.scrape();
    let cpu_before = proc::cpu_seconds(kadvisor.pid());
    let mut latencies: Vec<f64> = (0..scrapes)
        .map(|_| http::get(port, "/metrics", false).latency.as_secs_f64() * 1e3)
        .collect();
    let cpu_per_scrape = (proc::cpu_seconds(kadvisor.pid()) - cpu_before) / scrapes as f64 * 1e3;
    let last = kadvisor.scrape();
    // Counted from the warm-up scrape to the one after the timed ones.
    let read_per_scrape = (read_rows(&last) - read_rows(&warm)) / (scrapes + 1) as f64;
    let plain = http::get(port, "/metrics", false).body.len();
    let gzip = http::get(port, "/metrics", true).body.len();
    let rss = proc::rss_bytes(kadvisor.pid()) as f64 / (1 << 20) as f64;
    let maps = proc::bpf_maps(kadvisor.pid());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let map_kib = maps.iter().map(|m| m.memlock).sum::<u64>() as f64 / 1024.0;
    let map_kib_128 = maps
        .iter()
        .map(|m| {
            if proc::is_per_cpu(m.map_type) {
                m.memlock as f64 / cpus * 128.0
            } else {
                m.memlock as f64
            }
        })
        .sum::<f64>()
        / 1024.0;
    // Every cgroup on the host is a row, not only the population (other cgroups of a
    // shared machine add cost the baseline does not pay).
    let rows = last.value("kadvisor_rows", &[("state", "live")]);
    Measured {
        rows,
        p50: percentile(&mut latencies, 0.5),
        p99: percentile(&mut latencies, 0.99),
        cpu_per_scrape,
        read_per_scrape,
        plain,
        gzip,
        rss,
        map_kib,
        map_kib_128,
    }
}

/// Phase 3: scrape cost with `count` live cgroups, and the baseline on the same ones.
/// kadvisor runs twice: with the default `--max_housekeeping_interval` (quiet rows
/// served from their last read for up to 15 s; the population is idle, and the
/// scrapes come back to back, all inside that age) and with 0 (every row read at
/// every scrape, the worst case: every container busy, or scrapes further apart than
/// the maximum age).
fn scrape_cost(report: &mut Report, count: usize, scrapes: usize) {
    let population = cgroups::Population::create(&format!("kadvisor-bench-{count}"), count);
    let cached = measure(&[], scrapes);
    let every = measure(&["--max_housekeeping_interval", "0"], scrapes);

    // The baseline, same cgroups, same number of collections.
    let mounts = baseline::Mounts::detect();
    let containers = population.container_paths();
    let mut base_latencies = Vec::new();
    let base_cpu_before = thread_cpu_seconds();
    let mut base_body = 0;
    for _ in 0..scrapes.min(30) {
        let start = Instant::now();
        base_body = baseline::collect(&mounts, &containers).len();
        base_latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let base_cpu = (thread_cpu_seconds() - base_cpu_before) / base_latencies.len() as f64 * 1e3;
    let base_p50 = percentile(&mut base_latencies, 0.5);

    let n = format!("{count} cgroups");
    report.add(
        format!("{n}: rows kadvisor exported (every cgroup of the host)"),
        format!("{:.0}", cached.rows),
    );
    let with_all =
        |value: f64| format!("(every row read, --max_housekeeping_interval 0: {value:.2} ms)");
    report.add(
        format!("{n}: rows read per scrape (idle rows served from their last read)"),
        format!(
            "{:.1} of {:.0} ({:.1} with --max_housekeeping_interval 0)",
            cached.read_per_scrape, cached.rows, every.read_per_scrape
        ),
    );
    if count <= 100 {
        report.check(format!("{n}: scrape latency p50"), cached.p50, "ms", 3.0);
        report.add(
            format!("{n}: scrape latency p50, every row read"),
            with_all(every.p50),
        );
        report.add(
            format!("{n}: scrape latency p99"),
            format!("{:.2} ms {}", cached.p99, with_all(every.p99)),
        );
    } else {
        report.add(
            format!("{n}: scrape latency p50"),
            format!("{:.2} ms {}", cached.p50, with_all(every.p50)),
        );
        report.check(format!("{n}: scrape latency p99"), cached.p99, "ms", 40.0);
        report.add(
            format!("{n}: scrape latency p99, every row read"),
            with_all(every.p99),
        );
    }
    if count >= 1000 {
        report.check(
            format!("{n}: kadvisor CPU per scrape"),
            cached.cpu_per_scrape,
            "ms",
            20.0,
        );
        report.add(
            format!("{n}: kadvisor CPU per scrape, every row read"),
            with_all(every.cpu_per_scrape),
        );
        report.check(format!("{n}: kadvisor RSS"), cached.rss, "MiB", 24.0);
        report.add(
            format!("{n}: kadvisor RSS, every row read"),
            format!("{:.1} MiB", every.rss),
        );
    } else {
        report.add(
            format!("{n}: kadvisor CPU per scrape"),
            format!(
                "{:.2} ms {}",
                cached.cpu_per_scrape,
                with_all(every.cpu_per_scrape)
            ),
        );
        report.add(
            format!("{n}: kadvisor RSS"),
            format!(
                "{:.1} MiB ({:.1} MiB every row read)",
                cached.rss, every.rss
            ),
        );
    }
    report.add(
        format!("{n}: BASELINE (cAdvisor-style file reads) latency p50 / CPU per collection"),
        format!(
            "{base_p50:.2} ms / {base_cpu:.2} ms → kadvisor is {:.1}x / {:.1}x cheaper \
             ({:.1}x / {:.1}x with every row read)",
            base_p50 / cached.p50,
            base_cpu / cached.cpu_per_scrape.max(0.001),
            base_p50 / every.p50,
            base_cpu / every.cpu_per_scrape.max(0.001),
        ),
    );
    report.add(
        format!("{n}: response size plain / gzip (baseline plain)"),
        format!(
            "{} KiB / {} KiB ({} KiB)",
            cached.plain / 1024,
            cached.gzip / 1024,
            base_body / 1024
        ),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    report.add(
        format!("{n}: kernel memory of maps ({cpus} CPUs → 128 CPUs)"),
        format!("{:.0} KiB → {:.0} KiB", cached.map_kib, cached.map_kib_128),
    );
    drop(population);
}

/// Phase 4: CPU while nobody scrapes.
fn idle_cpu(report: &mut Report, seconds: u64) {
    let kadvisor = Kadvisor::start(&["--log_level", "warn"]);
    let before = proc::cpu_seconds(kadvisor.pid());
    std::thread::sleep(Duration::from_secs(seconds));
    let used = proc::cpu_seconds(kadvisor.pid()) - before;
    report.check(
        format!("kadvisor CPU while nobody scrapes ({seconds} s, per minute)"),
        used * 60.0 / seconds as f64,
        "CPU-s/min",
        0.06,
    );
}
