//! Bad input, every flag and config key: empty, negative, huge, wrong type, unknown.
//! Each must end the real binary with exit 2 and one line naming what is wrong:
//! never a panic, never a silent clamp to something else. `--check-config` runs the
//! same parsing and validation as a start, without loading BPF.
use std::process::Output;

use kadvisor_tests::kadvisor::run_to_exit;

/// Flags and bad values: (flag, value).
const BAD_FLAGS: &[(&str, &str)] = &[
    ("--listen_ip", ""),
    ("--listen_ip", "localhost:80"),
    ("--listen_ip", "300.1.1.1"),
    ("--port", ""),
    ("--port", "-1"),
    ("--port", "65536"),
    ("--port", "http"),
    ("--cgroup_root", ""),
    ("--btf_path", ""),
    ("--max_cgroups", ""),
    ("--max_cgroups", "-5"),
    ("--max_cgroups", "0"),
    ("--max_cgroups", "99999999999"),
    ("--max_cgroups", "many"),
    ("--pod_cidr", ""),
    ("--pod_cidr", "10.0.0.1/8"),
    ("--pod_cidr", "10.0.0.0/33"),
    ("--service_cidr", "fd00::/129"),
    ("--node_cidr", "node"),
    ("--cri_endpoints", ""),
    ("--runtime_timeout_ms", ""),
    ("--runtime_timeout_ms", "0"),
    ("--runtime_timeout_ms", "-1"),
    ("--runtime_timeout_ms", "18446744073709551615"),
    ("--runtime_timeout_ms", "2s"),
    ("--deleted_grace_seconds", ""),
    ("--deleted_grace_seconds", "-1"),
    ("--deleted_grace_seconds", "1e300"),
    ("--deleted_grace_seconds", "NaN"),
    ("--deleted_grace_seconds", "inf"),
    ("--reconcile_seconds", "0"),
    ("--reconcile_seconds", "-3"),
    ("--reconcile_seconds", "18446744073709551615"),
    ("--kubelet_rows=yes", ""),
    ("--kubelet_extra_cgroups", "system.slice"),
    ("--max_housekeeping_interval", ""),
    ("--max_housekeeping_interval", "-1s"),
    ("--max_housekeeping_interval", "15 parsecs"),
    ("--max_housekeeping_interval", "99999999999999h"),
    ("--log_level", ""),
    ("--log_level", "kadvisor=shout"),
    ("--config", ""),
    ("--config", "/nonexistent/kadvisor.toml"),
    ("--disable_metrics", "cpu,bogus"),
    ("--enable_metrics", "everything"),
    ("--include_cgroups", "/a/***/b"),
    ("--exclude_cgroups", ""),
    ("--include_namespaces", "Kube_System"),
    ("--exclude_namespaces", ""),
    ("--include_pods", "app in"),
    ("--exclude_pods", "=web"),
    ("--aggregation", "cluster"),
    ("--aggregation", ""),
    ("--aggregate", "network"),
    ("--aggregate", "network=rack"),
    ("--aggregate", "bogus=pod"),
    ("--max_series_per_family", "-1"),
    ("--max_series_per_family", "lots"),
    ("--no_such_flag", "1"),
];

/// Config file lines, each alone in a file.
const BAD_KEYS: &[&str] = &[
    "listen_ip = \"\"",
    "listen_ip = 127",
    "port = -1",
    "port = 65536",
    "port = \"80\"",
    "cgroup_root = \"\"",
    "cgroup_root = 5",
    "btf_path = \"\"",
    "max_cgroups = 0",
    "max_cgroups = -1",
    "max_cgroups = 4294967296",
    "max_cgroups = 1.5",
    "pod_cidr = \"10.0.0.0/8\"",
    "pod_cidr = [\"10.0.0.0/40\"]",
    "service_cidr = [\"\"]",
    "node_cidr = [1]",
    "cri_endpoints = [\"\"]",
    "cri_endpoints = \"/run/containerd/containerd.sock\"",
    "runtime_timeout_ms = 0",
    "runtime_timeout_ms = -1",
    "runtime_timeout_ms = 9223372036854775807",
    "runtime_timeout_ms = \"2s\"",
    "deleted_grace_seconds = -0.5",
    "deleted_grace_seconds = 1e300",
    "deleted_grace_seconds = nan",
    "deleted_grace_seconds = \"70\"",
    "reconcile_seconds = 0",
    "reconcile_seconds = 9223372036854775807",
    "kubelet_rows = \"yes\"",
    "kubelet_extra_cgroups = [\"kubelet.service\"]",
    "log_level = \"\"",
    "log_level = \"kadvisor=shout\"",
    "disable_metrics = [\"bogus\"]",
    "enable_metrics = \"cpu\"",
    "include_cgroups = [\"/a/***/b\"]",
    "exclude_cgroups = [\"\"]",
    "include_namespaces = [\"\"]",
    "exclude_namespaces = [\"UPPER\"]",
    "include_pods = \"app in\"",
    "exclude_pods = 3",
    "aggregation = \"cluster\"",
    "aggregate = { network = \"rack\" }",
    "aggregate = { bogus = \"pod\" }",
    "aggregate = \"network=pod\"",
    "max_series_per_family = -1",
    "max_series_per_family = \"10\"",
    "max_housekeeping_interval = \"-1s\"",
    "max_housekeeping_interval = 15",
    "max_housekeeping_interval = \"99999999999999h\"",
    "no_such_key = 1",
    "port = 9100\nport = 9101",
    "port = ",
];

/// Exit 2, exactly one line on stderr naming kadvisor, no panic; `what` for messages.
fn assert_rejected(what: &str, output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: want exit 2, got {:?}; stderr: {stderr}; stdout: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!stderr.contains("panicked"), "{what}: panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: want one line, got: {stderr}");
    assert!(lines[0].starts_with("kadvisor: "), "{what}: {stderr}");
    lines[0].to_owned()
}

#[test]
fn every_bad_flag_value_is_one_line_and_exit_2() {
    let mut table = String::new();
    for (flag, value) in BAD_FLAGS {
        let args: Vec<&str> = if flag.contains('=') {
            vec!["--check-config", flag]
        } else {
            vec!["--check-config", flag, value]
        };
        let output = run_to_exit(&args);
        let line = assert_rejected(&format!("{flag} {value:?}"), &output);
        table.push_str(&format!("| `{flag} {value:?}` | {line} |\n"));
    }
    eprintln!("{table}");
}

#[test]
fn every_bad_config_key_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kadvisor.toml");
    let path_text = path.to_str().expect("utf-8 path");
    let mut table = String::new();
    for text in BAD_KEYS {
        std::fs::write(&path, text).expect("write config");
        let output = run_to_exit(&["--check-config", "--config", path_text]);
        let line = assert_rejected(&format!("config {text:?}"), &output);
        table.push_str(&format!(
            "| `{}` | {} |\n",
            text.replace('\n', "⏎"),
            line.replace(path_text, "FILE")
        ));
    }
    eprintln!("{table}");
}

/// The same values are refused at a real start, not only by --check-config: a start
/// that clamped instead would go on to serve (and this would time out, not exit 2).
#[test]
fn a_start_with_a_bad_value_exits_2_before_loading_anything() {
    for args in [
        ["--runtime_timeout_ms", "0"],
        ["--reconcile_seconds", "0"],
        ["--max_housekeeping_interval", "99999999999999h"],
    ] {
        let output = run_to_exit(&args);
        assert_rejected(&args.join(" "), &output);
    }
}
