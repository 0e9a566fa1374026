//! Phase 5: what the cost controls save at 1000 containers. The same population is
//! scraped by kadvisor with its defaults and with a cost-conscious configuration:
//! schedstat off (`--disable_metrics sched`: three programs fewer, three families
//! fewer), network rows at pod level (`--aggregate network=pod`), and a tenth of the
//! containers excluded (`--exclude_cgroups`, the same kernel denylist and row drop a
//! `--exclude_namespaces` uses once the runtime has named the namespace).
//!
//! Both configurations run with `--max_housekeeping_interval 0` (every row read at
//! every scrape, the idle-row cache out of the picture).
//!
//! The bench's cgroups belong to no pod (there is no runtime to label them), so the
//! pod-level network setting aggregates nothing here: it only adds the cost of the
//! post-pass that aggregation and the budget run over the scrape.
use std::time::Duration;

use kadvisor_tests::kadvisor::Kadvisor;

use crate::{Report, cgroups, http, percentile, proc};

const COST_CONSCIOUS: &[&str] = &[
    "--disable_metrics",
    "sched",
    "--aggregate",
    "network=pod",
    "--exclude_cgroups",
    "/kadvisor-bench-cost/c00*",
];

struct Measured {
    series: usize,
    body_kib: usize,
    cpu_ms: f64,
    p50_ms: f64,
}

fn measure(args: &[&str], scrapes: usize) -> Measured {
    // Every row read at every scrape (what a single scraper at a 15–30 s interval
    // gets): with the idle-row cache on, back-to-back scrapes of these idle cgroups
    // would read almost nothing in either configuration and hide the difference.
    let mut all = vec!["--log_level", "warn", "--max_housekeeping_interval", "0"];
    all.extend(args);
    let kadvisor = Kadvisor::start(&all);
    let port = kadvisor.port();
    let _warm = http::get(port, "/metrics", false);
    std::thread::sleep(Duration::from_millis(200));
    let cpu_before = proc::cpu_seconds(kadvisor.pid());
    let mut latencies: Vec<f64> = (0..scrapes)
        .map(|_| http::get(port, "/metrics", false).latency.as_secs_f64() * 1e3)
        .collect();
    let cpu_ms = (proc::cpu_seconds(kadvisor.pid()) - cpu_before) / scrapes as f64 * 1e3;
    let body = http::get(port, "/metrics", false).body;
    let text = String::from_utf8_lossy(&body);
    // Only the population's own rows: other cgroups on a shared machine come and go
    // between the runs.
    let series = text
        .lines()
        .filter(|l| l.starts_with("container_") && l.contains("id=\"/kadvisor-bench-cost/"))
        .count();
    Measured {
        series,
        body_kib: body.len() / 1024,
        cpu_ms,
        p50_ms: percentile(&mut latencies, 0.5),
    }
}

pub fn cost_controls(report: &mut Report, count: usize, scrapes: usize) {
    let population = cgroups::Population::create("kadvisor-bench-cost", count);
    // Interleaved, twice each, to spread the shared machine's noise over both.
    let mut default = Vec::new();
    let mut frugal = Vec::new();
    for _ in 0..2 {
        default.push(measure(&[], scrapes));
        frugal.push(measure(COST_CONSCIOUS, scrapes));
    }
    let best = |runs: &[Measured]| -> (usize, usize, f64, f64) {
        let cpu = runs.iter().map(|m| m.cpu_ms).fold(f64::INFINITY, f64::min);
        let p50 = runs.iter().map(|m| m.p50_ms).fold(f64::INFINITY, f64::min);
        (runs[0].series, runs[0].body_kib, cpu, p50)
    };
    let (d_series, d_kib, d_cpu, d_p50) = best(&default);
    let (f_series, f_kib, f_cpu, f_p50) = best(&frugal);
    let n = format!("{count} cgroups, cost controls");
    report.add(
        format!(
            "{n}: container_* series of the 1000 cgroups, defaults → `{}`",
            COST_CONSCIOUS.join(" ")
        ),
        format!(
            "{d_series} → {f_series} ({:.0} % fewer)",
            100.0 * (1.0 - f_series as f64 / d_series.max(1) as f64)
        ),
    );
    report.add(
        format!("{n}: response size plain, defaults → cost-conscious"),
        format!("{d_kib} KiB → {f_kib} KiB"),
    );
    report.add(
        format!("{n}: kadvisor CPU per scrape (best of 2 runs), defaults → cost-conscious"),
        format!("{d_cpu:.2} ms → {f_cpu:.2} ms"),
    );
    report.add(
        format!("{n}: scrape latency p50 (best of 2 runs), defaults → cost-conscious"),
        format!("{d_p50:.2} ms → {f_p50:.2} ms"),
    );
    drop(population);
}
