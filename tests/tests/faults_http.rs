//! The HTTP surface under load and abuse: Prometheus keeps getting its scrape while
//! many clients scrape at once, stall, or connect and hang up; memory stays bounded.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kadvisor_tests::{
    cgroup::TestCgroup,
    kadvisor::{ALL_GROUPS, Kadvisor, open_fds, rss_bytes},
};

/// The DaemonSet's memory limit (deploy/kube-prometheus/base/daemonset.yaml).
const MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// One HTTP/1.1 GET on a fresh connection, as Prometheus sends it (gzip accepted),
/// bounded by `timeout`: the status and the body's length.
fn scrape_like_prometheus(port: u16, timeout: Duration) -> Result<(u16, usize), String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read after {:?}: {e}", started.elapsed()))?;
    if started.elapsed() > timeout {
        return Err(format!("took {:?}", started.elapsed()));
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((status, response.len() - head_end - 4))
}

/// 100 concurrent scrapers, 64 connections that send a request and never read, and
/// a connect/GET/close loop, for 30 s. A scraper like Prometheus (one request a
/// second) must get its 200 every time, within its 10 s timeout or, where one
/// collection is slow (a guest under emulation shares its two CPUs with the load),
/// within the time of a few collections: admission control makes a request wait for
/// at most the collection in flight and its own, never for the other clients (without
/// it, behind a hundred collections or a stalled writer); and RSS stays under the
/// DaemonSet's limit.
#[test]
fn prometheus_is_served_through_concurrent_stalled_and_abandoned_scrapes() {
    // Rows and groups enough that one body (over 1 MB) exceeds what loopback socket
    // buffers absorb, so the never-reading clients really stall the writes: every
    // metric group on (the lean defaults serve too little per row).
    let parent = TestCgroup::new("faults-http");
    let rows: Vec<TestCgroup> = (0..400).map(|i| parent.child(&format!("r{i}"))).collect();
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let port = kadvisor.port();
    let pid = kadvisor.pid();
    let started = Instant::now();
    let body = kadvisor.get("/metrics").1.len();
    // The connect/GET/close loop runs at a pace relative to how fast this node serves
    // one scrape (about 600 a second on the 6.18 host; at full speed in an emulated
    // guest, where a scrape is 25 times slower but connect() is not, it filled the
    // listen backlog at kadvisor's connection cap and a new connection's SYN waited
    // for retransmits: 18.9 s, seen on 6.1 under TCG).
    let abandon_every = started.elapsed() / 20;
    assert!(
        body > 1_000_000,
        "body of {body} bytes is too small to stall a socket"
    );
    let rss_start = rss_bytes(pid);
    let fds_start = open_fds(pid);
    let collected = |metrics: &kadvisor_tests::scrape::Scrape| {
        (
            metrics.value("kadvisor_scrape_duration_seconds_sum", &[]),
            metrics.value("kadvisor_scrape_duration_seconds_count", &[]),
        )
    };
    let collected_before = collected(&kadvisor.scrape());

    let stop = Arc::new(AtomicBool::new(false));
    let concurrent_ok = Arc::new(AtomicU64::new(0));
    let concurrent_refused = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..100 {
        let (stop, ok, refused) = (
            Arc::clone(&stop),
            Arc::clone(&concurrent_ok),
            Arc::clone(&concurrent_refused),
        );
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match scrape_like_prometheus(port, Duration::from_secs(60)) {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    {
        // Send a request, never read; replaced every 10 s so the pressure stays on
        // after kadvisor's deadlines close them.
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let stalled: Vec<TcpStream> = (0..64)
                    .filter_map(|_| {
                        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                            .ok()?;
                        Some(s)
                    })
                    .collect();
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(stalled);
            }
        }));
    }
    {
        let (stop, abandoned) = (Arc::clone(&stop), Arc::clone(&abandoned));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
                    abandoned.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(abandon_every);
            }
        }));
    }

    let mut failures = Vec::new();
    let mut latencies = Vec::new();
    let mut rss_max = rss_start;
    let mut fds_max = fds_start;
    for attempt in 0..30 {
        let tick = Instant::now();
        // The socket's timeout is long: the bound is checked below, once the
        // collections' own time under this load is known.
        match scrape_like_prometheus(port, Duration::from_secs(120)) {
            Ok((200, len)) if len > 0 => latencies.push((attempt, tick.elapsed())),
            other => failures.push(format!("scrape {attempt}: {other:?}")),
        }
        rss_max = rss_max.max(rss_bytes(pid));
        fds_max = fds_max.max(open_fds(pid));
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let health = kadvisor.get("/healthz");
    let metrics = kadvisor.scrape();
    // kadvisor's own measure of its collections during the load (the histogram's
    // sum and count; the last scrape's collection is included, a slight overestimate).
    let collected_after = collected(&metrics);
    let collection_mean = Duration::from_secs_f64(
        (collected_after.0 - collected_before.0)
            / (collected_after.1 - collected_before.1).max(1.0),
    );
    // Prometheus's default scrape timeout; or, when collections are slow here,
    // five of them: the one in flight, its own, and slack for the load's jitter.
    let bound = Duration::from_secs(10).max(collection_mean * 5);
    let slow: Vec<_> = latencies.iter().filter(|(_, l)| *l > bound).collect();
    let mut sorted: Vec<Duration> = latencies.iter().map(|(_, l)| *l).collect();
    sorted.sort();
    eprintln!(
        "figures: body {body} B; collection mean {collection_mean:?} under load, bound {bound:?}; \
         prometheus-like scrapes ok {}/30, latency p50 {:?} max {:?}; \
         concurrent scrapes ok {} refused {}; abandoned requests {}; RSS start {} KiB max {} KiB; \
         fds start {fds_start} max {fds_max} end {}; abandoned every {abandon_every:?}; collections {}; {}",
        sorted.len(),
        sorted.get(sorted.len() / 2),
        sorted.last(),
        concurrent_ok.load(Ordering::Relaxed),
        concurrent_refused.load(Ordering::Relaxed),
        abandoned.load(Ordering::Relaxed),
        rss_start / 1024,
        rss_max / 1024,
        open_fds(pid),
        metrics.value("kadvisor_collections_total", &[]),
        health.1.trim(),
    );
    assert!(
        failures.is_empty(),
        "Prometheus-like scrapes failed: {failures:#?}"
    );
    assert!(
        slow.is_empty(),
        "Prometheus-like scrapes slower than {bound:?} (collections took {collection_mean:?} \
         on average under this load): {slow:?}"
    );
    assert!(
        rss_max < MEMORY_LIMIT_BYTES,
        "RSS {rss_max} B over the DaemonSet limit {MEMORY_LIMIT_BYTES} B"
    );
    assert!(
        concurrent_ok.load(Ordering::Relaxed) > 100,
        "the concurrent scrapers were served too"
    );
    // Shared collections: far fewer than the requests served.
    let served = concurrent_ok.load(Ordering::Relaxed) + 30;
    assert!(
        metrics.value("kadvisor_collections_total", &[]) < served as f64 / 2.0,
        "collections are shared: {} for {served} scrapes",
        metrics.value("kadvisor_collections_total", &[])
    );
    assert_eq!(health.0, 200, "{}", health.1);
    assert!(
        health.1.contains("last collection completed"),
        "{}",
        health.1
    );
    drop(rows);
}
