//! The web UI at `/`, driven in a real headless Chromium (tests/src/browser.rs) against
//! the real kadvisor, with real cgroups and workloads: what a person opening the page
//! sees. Screenshots at 1280×800 go to `target/web-ui/` (paths printed).
//!
//! Not run in the kernel matrix (scripts/kernel-matrix.sh excludes it): the VM's
//! initramfs has no browser, and the page reads the same collection as `/metrics`,
//! whose kernel-specific values the other test binaries check in the VM.
use std::{
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use kadvisor_tests::{
    assert_close,
    browser::Browser,
    cgroup::TestCgroup,
    cpu_stat::{CpuStatSampler, unix_now, usage_at},
    exclusive_cpu,
    kadvisor::{self, Kadvisor},
};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("web-ui").join(name)
}

fn screenshot(browser: &mut Browser, name: &str) {
    let path = screenshot_path(name);
    browser.screenshot(&path);
    println!("screenshot: {}", path.display());
}

/// kadvisor exporting the root and this test process's cgroups only: the machine is
/// shared, and a collection of thousands of other cgroups by a debug build would make
/// the page poll less often (`poll_interval`) than the 2 s the listing is held to.
fn start_kadvisor() -> Kadvisor {
    let mine = format!("/,/kadvisor-test-{}-*", std::process::id());
    Kadvisor::start(&["--include_cgroups", &mine])
}

/// The page, loaded and past its first two snapshots (the first rates).
fn open_page(kadvisor: &Kadvisor) -> Browser {
    let mut browser = Browser::launch(WIDTH, HEIGHT);
    browser.navigate(&format!("http://127.0.0.1:{}/", kadvisor.port()));
    browser.wait_for(
        "the page's first two snapshots",
        Duration::from_secs(20),
        "window.kadvisor !== undefined && kadvisor.state.snapshots >= 2",
    );
    browser
}

fn node(id: &str) -> String {
    format!("document.querySelector('#tree [data-id=\"{id}\"]')")
}

#[test]
fn busy_cgroup_is_listed_within_2s_and_its_cpu_chart_matches_cpu_stat() {
    if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_program(
        "chromium",
        "the page is driven in a real browser; the values it shows are /metrics', checked by the other binaries",
    )) {
        return;
    }
    let _cpu = exclusive_cpu();
    let kadvisor = start_kadvisor();
    let mut browser = open_page(&kadvisor);

    let mut cg = TestCgroup::with_cpu_controller("ui-busy");
    let created = Instant::now();
    let created_at = unix_now();
    let id = cg.id().to_owned();
    // No quota yet: CPU time accrues steadily, so a chart point and the kernel's rate
    // over the same interval compare without the 20 ms bursts a quota makes.
    cg.spawn_busy();
    let sampler = CpuStatSampler::start(cg.path().join("cpu.stat"));

    browser.wait_for(
        "the busy cgroup in the tree",
        Duration::from_secs(10),
        &format!("{} !== null", node(&id)),
    );
    let listed = created.elapsed();
    // Where the time went: from the mkdir to the start of the first collection that
    // held the cgroup (discovery, then waiting for the page's next poll), and from
    // there to the tree showing it (the collection, the fetch, the render).
    let first_seen = browser.eval(&format!("kadvisor.state.rows.get('{id}').firstSeen"));
    let polled = first_seen.as_f64().map_or(f64::NAN, |t| t - created_at);
    let interval_ms = kadvisor::get(kadvisor.port(), "/ui/snapshot")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|snapshot| snapshot["interval_ms"].clone());
    println!(
        "busy cgroup listed {listed:?} after its mkdir: in a collection started {polled:.3} s after it, \
         page polling every {interval_ms:?} ms"
    );
    assert!(
        listed <= Duration::from_secs(2),
        "the page listed the new cgroup after {listed:?} (> 2 s)"
    );

    // Select it with the keyboard: '/' to the filter, its name, down into the tree
    // (the root, then the match), Enter.
    let name = id.trim_start_matches('/');
    browser.press("/");
    browser.type_text(name);
    browser.press("ArrowDown");
    for _ in 0..4 {
        if browser.eval("document.activeElement.dataset.id") == serde_json::json!(id) {
            break;
        }
        browser.press("ArrowDown");
    }
    assert_eq!(
        browser.eval("document.activeElement.dataset.id"),
        serde_json::json!(id),
        "arrow keys reach the cgroup"
    );
    browser.press("Enter");
    browser.wait_for(
        "selection by Enter",
        Duration::from_secs(2),
        &format!("kadvisor.state.selected === '{id}' && document.getElementById('sel-path').textContent === '{id}'"),
    );

    // Let several points accumulate, then compare the latest one with the kernel's
    // rate over the same interval (both clocks are this host's wall clock).
    browser.wait_for(
        "five CPU points",
        Duration::from_secs(15),
        "kadvisor.charts.cpu.plot.data[1].filter(v => v != null).length >= 5",
    );
    let point = browser.eval(
        "(() => { const d = kadvisor.charts.cpu.plot.data; const i = d[0].length - 1;
                 return { t0: d[0][i - 1], t1: d[0][i], cores: d[1][i],
                          shown: document.querySelector('[data-chart=cpu] .now').textContent }; })()",
    );
    std::thread::sleep(Duration::from_millis(100));
    let samples = sampler.finish();
    let (t0, t1) = (point["t0"].as_f64().unwrap(), point["t1"].as_f64().unwrap());
    let kernel = (usage_at(&samples, t1) - usage_at(&samples, t0)) / (t1 - t0);
    let charted = point["cores"].as_f64().expect("a CPU value on the chart");
    println!("CPU chart {charted:.4} cores, cpu.stat {kernel:.4} cores over [{t0:.3}, {t1:.3}]");
    assert_close("CPU chart vs cpu.stat rate", charted, kernel, 0.05);
    let shown: f64 = point["shown"]
        .as_str()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the CPU card's figure: {}", point["shown"]));
    // The card prints two decimals.
    assert!(
        (shown - charted).abs() <= 0.005 + 1e-9,
        "the CPU card shows {shown}, the chart {charted}"
    );

    // A quota of a fifth of a core: the throttling chart appears and shows it.
    assert_eq!(
        browser.eval("kadvisor.charts.throttling.chartEl.hidden"),
        serde_json::json!(true),
        "no throttling chart without a quota"
    );
    if cg.v1_dir("cpu").is_some() {
        cg.write_control("cpu", "cpu.cfs_period_us", "100000");
        cg.write_control("cpu", "cpu.cfs_quota_us", "20000");
    } else {
        cg.write_control("cpu", "cpu.max", "20000 100000");
    }
    let (throttled, _) = browser.wait_for(
        "the throttling chart with most periods throttled",
        Duration::from_secs(15),
        "(() => { const c = kadvisor.charts.throttling; const d = c.plot.data[1];
                 const v = d[d.length - 1];
                 return !c.chartEl.hidden && v > 25 ? v : null; })()",
    );
    println!("throttled in {throttled}% of periods under a 20% quota");
    browser.wait_for(
        "three points at the quota",
        Duration::from_secs(15),
        "(() => { const d = kadvisor.charts.cpu.plot.data; const n = d[0].length;
                 return n > 3 && d[1].slice(n - 3).every(v => v != null && v < 0.25); })()",
    );

    screenshot(&mut browser, "busy-cgroup.png");
}

/// Runs a shell that allocates 1 GiB in `cg` under a 32 MiB limit; the kernel kills it.
fn oom_kill_in(cg: &mut TestCgroup) {
    const MIB: u64 = 1 << 20;
    if cg.v1_dir("memory").is_some() {
        cg.write_control("memory", "memory.limit_in_bytes", &(32 * MIB).to_string());
        cg.write_control(
            "memory",
            "memory.memsw.limit_in_bytes",
            &(32 * MIB).to_string(),
        );
    } else {
        cg.write_control("memory", "memory.max", &(32 * MIB).to_string());
        cg.write_control("memory", "memory.swap.max", "0");
    }
    cg.spawn(Command::new("sh").args([
        "-c",
        r#"x=$(head -c 1073741824 /dev/zero | tr '\0' a); echo survived"#,
    ]));
    let statuses = cg.wait_all();
    assert_eq!(
        statuses.iter().map(|s| s.signal()).collect::<Vec<_>>(),
        [Some(libc::SIGKILL)],
        "the workload should have been OOM-killed"
    );
}

#[test]
fn short_lived_cgroup_is_marked_gone_and_an_oom_kill_is_on_the_timeline() {
    if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_program(
        "chromium",
        "the page is driven in a real browser; the values it shows are /metrics', checked by the other binaries",
    )) {
        return;
    }
    let _cpu = exclusive_cpu();
    let kadvisor = start_kadvisor();
    let mut browser = open_page(&kadvisor);

    // A cgroup that lives one second.
    let brief_id = {
        let mut brief = TestCgroup::new("ui-brief");
        brief.spawn(Command::new("sleep").arg("30"));
        std::thread::sleep(Duration::from_secs(1));
        brief.id().to_owned()
    };
    let removed = Instant::now();
    browser.wait_for(
        "the 1 s cgroup in the tree, marked gone",
        Duration::from_secs(10),
        &format!("{n} !== null && {n}.dataset.state === 'gone' && {n}.querySelector('.tag.gone') !== null", n = node(&brief_id)),
    );
    println!(
        "1 s cgroup shown as gone {:?} after its rmdir",
        removed.elapsed()
    );
    browser.wait_for(
        "the 1 s cgroup in the events list",
        Duration::from_secs(5),
        &format!("document.querySelector('#events li[data-id=\"{brief_id}\"]') !== null"),
    );

    let mut victim = TestCgroup::with_v1_controllers("ui-oom", &["memory"]);
    let victim_id = victim.id().to_owned();
    oom_kill_in(&mut victim);
    let killed = Instant::now();
    let oom_event =
        format!("document.querySelector('#events li[data-kind=\"oom\"][data-id=\"{victim_id}\"]')");
    browser.wait_for(
        "the OOM kill in the events list",
        Duration::from_secs(10),
        &format!("{oom_event} !== null"),
    );
    println!("OOM kill listed {:?} after the kill", killed.elapsed());
    // Only the victim's row carries it, not its ancestors (counters are hierarchical).
    assert_eq!(
        browser.eval("document.querySelectorAll('#events li[data-kind=\"oom\"]').length"),
        serde_json::json!(1),
        "one OOM event"
    );
    browser.eval(&format!("{oom_event}.querySelector('button').click()"));
    // Lane 2 of the timeline (data[2]) is OOM kills.
    browser.wait_for(
        "the OOM kill on the victim's timeline and its OOM tag in the tree",
        Duration::from_secs(5),
        &format!(
            "kadvisor.state.selected === '{victim_id}' && kadvisor.charts.timeline.plot.data[2].some(v => v != null) && {n}.querySelector('.tag.oom') !== null",
            n = node(&victim_id)
        ),
    );
    // A few seconds of history on the victim's charts for the picture.
    browser.wait_for(
        "five points on the victim's memory chart",
        Duration::from_secs(15),
        "kadvisor.charts.memory.plot.data[0].length >= 5",
    );
    screenshot(&mut browser, "oom-kill.png");

    // The host view: every event of the window on the root's timeline.
    browser.eval("document.querySelector('#tree [data-id=\"/\"]').click()");
    browser.wait_for(
        "the host's timeline with the OOM kill and the short-lived cgroup",
        Duration::from_secs(5),
        "kadvisor.state.selected === '/' && kadvisor.charts.timeline.plot.data[2].some(v => v != null) && kadvisor.charts.timeline.plot.data[3].some(v => v != null)",
    );
    screenshot(&mut browser, "host.png");
}
