//! The container runtime hung (SIGSTOP), killed and restarted while containers come
//! and go: metrics keep flowing, the error metrics count it, labels recover.
use std::time::{Duration, Instant};

use kadvisor_tests::{
    cgroup::v2_root,
    containerd::{self, Containerd, Cri},
    exclusive_cpu,
    kadvisor::Kadvisor,
    scrape::Scrape,
};

const USAGE: &str = "container_cpu_usage_seconds_total";
const NAMESPACE: &str = "kadvisor-test";

fn labelled(scrape: &Scrape, id: &str, container: &str) -> bool {
    scrape
        .find(
            USAGE,
            &[
                ("id", id),
                ("namespace", NAMESPACE),
                ("container", container),
            ],
        )
        .len()
        == 1
}

fn runtime_errors(scrape: &Scrape) -> f64 {
    scrape
        .find("kadvisor_runtime_errors_total", &[])
        .iter()
        .map(|s| s.value)
        .sum()
}

/// Removes the pod's cgroups (and the stand-in container's) even when an assertion fails.
struct Cleanup<'a> {
    pod: &'a containerd::Pod,
    extra: std::path::PathBuf,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.extra);
        containerd::remove_pod_cgroups(self.pod);
    }
}

#[test]
fn a_hung_then_killed_runtime_costs_labels_only_while_it_is_down() {
    if kadvisor_tests::ignore::because(kadvisor_tests::containerd::unavailable()) {
        return;
    }
    let _cpu = exclusive_cpu();
    let mut containerd = Containerd::start();
    let socket = containerd.socket();
    let endpoint = socket.to_str().unwrap().to_owned();
    let kadvisor = Kadvisor::start(&["--cri_endpoints", &endpoint, "--runtime_timeout_ms", "500"]);
    let mut cri = Cri::connect(&socket);
    let pod = cri.run_pod("faults-0", NAMESPACE, &containerd.log_dir());
    // A container cgroup the runtime does not know, created while it hangs: kadvisor
    // must ask about it and fail.
    let stranger = pod.container_cgroup(&"f".repeat(64));
    let cleanup = Cleanup {
        pod: &pod,
        extra: v2_root().join(stranger.trim_start_matches('/')),
    };
    let busy = cri.run_container(&pod, "busy", &["sh", "-c", "while :; do :; done"]);
    let busy_id = pod.container_cgroup(&busy);
    let before = kadvisor.scrape_until(
        Duration::from_secs(30),
        "the busy container's labels",
        |s| labelled(s, &busy_id, "busy"),
    );
    let mut last_usage = before.value(USAGE, &[("id", &busy_id), ("cpu", "total")]);

    // Hung runtime.
    containerd.signal(libc::SIGSTOP);
    std::fs::create_dir(&cleanup.extra).expect("mkdir the stranger's cgroup");
    let hung = Instant::now();
    let mut during = None;
    while hung.elapsed() < Duration::from_secs(15) {
        let asked = Instant::now();
        let scrape = kadvisor.scrape();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "a scrape waited on the hung runtime"
        );
        assert!(
            labelled(&scrape, &busy_id, "busy"),
            "labels already known are kept"
        );
        let usage = scrape.value(USAGE, &[("id", &busy_id), ("cpu", "total")]);
        assert!(
            usage >= last_usage,
            "CPU went backwards: {last_usage} -> {usage}"
        );
        last_usage = usage;
        if runtime_errors(&scrape) > runtime_errors(&before)
            && scrape.value("kadvisor_runtime_up", &[("endpoint", &endpoint)]) == 0.0
        {
            during = Some(scrape);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = during.expect(
        "the hang counted in kadvisor_runtime_errors_total and kadvisor_runtime_up 0 within 15 s",
    );
    assert_eq!(
        during.find(USAGE, &[("id", &stranger)]).len(),
        1,
        "the unknown container's row is served without labels"
    );

    // Resumed, then killed and restarted (shims and containers keep running).
    containerd.signal(libc::SIGCONT);
    containerd.restart();
    let mut cri = Cri::connect(&socket);
    cri.wait_initialized(Duration::from_secs(30));
    let fresh = cri.run_container(&pod, "fresh", &["sleep", "3600"]);
    let fresh_id = pod.container_cgroup(&fresh);
    let after = kadvisor.scrape_until(Duration::from_secs(30), "labels after the restart", |s| {
        labelled(s, &fresh_id, "fresh")
            && labelled(s, &busy_id, "busy")
            && s.value("kadvisor_runtime_up", &[("endpoint", &endpoint)]) == 1.0
    });
    let usage = after.value(USAGE, &[("id", &busy_id), ("cpu", "total")]);
    assert!(
        usage >= last_usage,
        "CPU went backwards: {last_usage} -> {usage}"
    );
    eprintln!(
        "figures: runtime errors before {} during {} after {}; busy CPU {:.2} s",
        runtime_errors(&before),
        runtime_errors(&during),
        runtime_errors(&after),
        usage
    );
    cri.remove_pod(&pod);
    drop(cleanup);
    drop(containerd);
}
