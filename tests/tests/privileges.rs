//! The least privilege kadvisor runs with: the DaemonSet's capability set, and no
//! other, serves what full root serves; without any one of them something a user
//! would see is lost. The real binary runs as root with its bounding set cut to the
//! set (`setpriv`, util-linux), as a container runtime does for `capabilities:
//! {drop: [ALL], add: [...]}`.
use std::{process::Command, time::Duration};

use kadvisor_tests::{
    cgroup::TestCgroup,
    kadvisor::{ALL_GROUPS, Kadvisor},
    scrape::Scrape,
};

/// deploy/kube-prometheus/base/daemonset.yaml, the kadvisor container's `capabilities.add`.
const DAEMONSET_CAPABILITIES: &[&str] = &["bpf", "perfmon"];
/// What enabling the opt-in `socket` group adds to them (its cgroup_skb programs),
/// as docs/kube-prometheus.md tells.
const SOCKET_CAPABILITY: &str = "net_admin";

fn setpriv(capabilities: &[&str]) -> Vec<String> {
    let set: String = capabilities.iter().map(|c| format!(",+{c}")).collect();
    vec![
        "setpriv".to_owned(),
        format!("--bounding-set=-all{set}"),
        "--inh-caps=-all".to_owned(),
    ]
}

/// What a user sees of one run: programs attached, the workload's file descriptors
/// (a process of another user, like the node's containers), failed sources.
#[derive(Debug, PartialEq)]
struct Served {
    attached: Vec<String>,
    workload_fds: Option<f64>,
    failed_sources: Vec<String>,
}

fn served(scrape: &Scrape, id: &str) -> Served {
    Served {
        attached: scrape
            .find("kadvisor_bpf_program_attached", &[])
            .iter()
            .filter(|s| s.value == 1.0)
            .map(|s| s.labels["program"].clone())
            .collect(),
        workload_fds: scrape
            .find("container_file_descriptors", &[("id", id)])
            .first()
            .map(|s| s.value),
        failed_sources: scrape
            .find("kadvisor_scrape_errors_total", &[])
            .iter()
            .filter(|s| s.value > 0.0)
            .map(|s| format!("{:?}", s.labels))
            .collect(),
    }
}

/// Starts kadvisor through `wrapper`, or its one-line error if it refuses to start.
fn run(wrapper: &[String], args: &[&str], id: &str) -> Result<Served, String> {
    // A start that fails exits 1 with one line; find it without the harness' panic.
    let wrapped: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = Command::new(wrapped[0])
        .args(&wrapped[1..])
        .arg(kadvisor_tests::kadvisor::binary())
        .args([
            "--listen_ip",
            "127.0.0.1",
            "--port",
            "0",
            "--btf_path",
            "/sys/kernel/btf/vmlinux",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kadvisor");
    let pid = probe.id();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill() with the PID of the process this test spawned.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let output = probe.wait_with_output().expect("wait kadvisor");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(line) = stderr.lines().find(|l| l.starts_with("kadvisor: ")) {
        return Err(line.to_owned());
    }
    let kadvisor = Kadvisor::start_wrapped(&wrapped, args);
    let scrape = kadvisor.scrape_until(Duration::from_secs(10), "the workload's row", |s| {
        !s.find("container_cpu_usage_seconds_total", &[("id", id)])
            .is_empty()
    });
    Ok(served(&scrape, id))
}

/// A workload of another user holding two extra descriptors.
fn workload() -> TestCgroup {
    let mut cgroup = TestCgroup::new("privileges");
    cgroup.spawn(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        // One process with a fixed set of descriptors: a shell loop's `sleep`
        // children came and went, so the count was 5 or 10 by timing (6.1 guest).
        "exec 3</dev/null 4</dev/null; exec sleep 2147483647",
    ]));
    cgroup
}

/// kadvisor run with `args` and exactly `capabilities` serves what full root serves,
/// and without any one of them loses something (or refuses to start).
fn assert_least_privilege(capabilities: &[&str], args: &[&str], id: &str) {
    let root = {
        let kadvisor = Kadvisor::start(args);
        let scrape = kadvisor.scrape_until(Duration::from_secs(10), "the workload's fds", |s| {
            !s.find("container_file_descriptors", &[("id", id)])
                .is_empty()
        });
        served(&scrape, id)
    };
    assert!(root.workload_fds.is_some_and(|fds| fds >= 2.0), "{root:?}");

    let granted = run(&setpriv(capabilities), args, id).expect("starts with the granted set");
    assert_eq!(
        granted, root,
        "{capabilities:?} with {args:?} serve what full root serves"
    );

    for dropped in capabilities {
        let kept: Vec<&str> = capabilities
            .iter()
            .copied()
            .filter(|c| c != dropped)
            .collect();
        let finding = match run(&setpriv(&kept), args, id) {
            Err(line) => format!("refuses to start: {line}"),
            Ok(served) if served == root => "nothing lost".to_owned(),
            Ok(served) => format!(
                "programs not attached: {:?}; workload fds: {:?}; failed sources: {:?}",
                root.attached
                    .iter()
                    .filter(|p| !served.attached.contains(p))
                    .collect::<Vec<_>>(),
                served.workload_fds,
                served.failed_sources
            ),
        };
        eprintln!("{args:?} without CAP_{}: {finding}", dropped.to_uppercase());
        assert_ne!(
            finding,
            "nothing lost",
            "CAP_{} is not needed with {args:?}",
            dropped.to_uppercase()
        );
    }
}

#[test]
fn the_daemonset_capabilities_serve_what_root_serves_and_each_is_needed() {
    let cgroup = workload();
    assert_least_privilege(DAEMONSET_CAPABILITIES, &[], cgroup.id());
}

#[test]
fn the_socket_group_needs_net_admin_besides_the_daemonset_capabilities() {
    let cgroup = workload();
    let with_socket: Vec<&str> = [DAEMONSET_CAPABILITIES, &[SOCKET_CAPABILITY]].concat();
    assert_least_privilege(&with_socket, &ALL_GROUPS, cgroup.id());
}
