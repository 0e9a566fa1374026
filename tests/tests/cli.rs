//! What a user sees when kadvisor cannot start: one clear line and a non-zero exit.
use kadvisor_tests::kadvisor::run_to_exit;

fn stderr_line(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{text}");
    lines[0].to_owned()
}

#[test]
fn bad_flag_value_is_one_line_and_exit_2() {
    let output = run_to_exit(&["--port", "eighty"]);
    assert_eq!(output.status.code(), Some(2));
    let line = stderr_line(&output);
    assert!(
        line.starts_with("kadvisor: ") && line.contains("--port"),
        "{line}"
    );
}

#[test]
fn unknown_flag_is_rejected() {
    let output = run_to_exit(&["--no_such_flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_line(&output).contains("--no_such_flag"));
}

#[test]
fn missing_btf_is_named() {
    kadvisor_tests::require_root();
    let output = run_to_exit(&["--btf_path", "/nonexistent/vmlinux"]);
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(
        line.contains("kernel BTF not found at /nonexistent/vmlinux"),
        "{line}"
    );
}

#[test]
fn cgroup_root_that_is_not_cgroup2_is_named() {
    kadvisor_tests::require_root();
    let output = run_to_exit(&["--cgroup_root", "/tmp"]);
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(line.contains("/tmp is not a cgroup2 mount"), "{line}");
}

#[test]
fn without_privileges_says_which_capabilities() {
    kadvisor_tests::require_root();
    // Drop to nobody with no capabilities, as a user running it without sudo would.
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(kadvisor_tests::kadvisor::binary())
        .output()
        .expect("run setpriv (util-linux)");
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(
        line.contains("missing capabilities CAP_BPF and CAP_PERFMON"),
        "{line}"
    );
}

/// Writes `text` as a config file and runs `kadvisor --check-config --config <it>`.
fn check_config(text: &str, flags: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kadvisor.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["--check-config", "--config", path.as_str()];
    args.extend(flags);
    run_to_exit(&args)
}

#[test]
fn config_file_with_an_unknown_key_is_named_and_exit_2() {
    let output = check_config("port = 9100\ndisable_metric = [\"network\"]\n", &[]);
    assert_eq!(output.status.code(), Some(2));
    let line = stderr_line(&output);
    assert!(
        line.starts_with("kadvisor: config file ")
            && line.contains("line 2")
            && line.contains("unknown field `disable_metric`"),
        "{line}"
    );
}

#[test]
fn config_file_with_a_bad_value_names_key_and_value() {
    let output = check_config("disable_metrics = [\"network\", \"cpuu\"]\n", &[]);
    assert_eq!(output.status.code(), Some(2));
    let line = stderr_line(&output);
    assert!(
        line.contains("invalid disable_metrics \"cpuu\": unknown metric group (valid: cpu,"),
        "{line}"
    );
    let output = check_config("port = \"eighty\"\n", &[]);
    assert_eq!(output.status.code(), Some(2));
    let line = stderr_line(&output);
    assert!(line.contains("`port = \"eighty\"`"), "{line}");
    // A bad flag value is reported the same way as a bad file value.
    let output = run_to_exit(&["--check-config", "--aggregation", "cluster"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_line(&output).contains("invalid aggregation \"cluster\""));
}

#[test]
fn valid_config_file_checks_without_loading_bpf() {
    // No root needed and no BPF loaded: --check-config stops after validation (a
    // --btf_path that does not exist would fail the preflight otherwise).
    let output = check_config(
        "btf_path = \"/nonexistent/vmlinux\"\ndisable_metrics = [\"sched\", \"tcp\"]\n\
         exclude_namespaces = [\"kube-system\"]\nexclude_cgroups = [\"/system.slice/**\"]\n\
         max_series_per_family = 5000\n[aggregate]\nnetwork = \"pod\"\n",
        &["--port", "9100"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration is valid"));
}

#[test]
fn example_configs_are_valid() {
    // examples/config/*.toml, the recipes docs/configuration.md links to.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("read examples/config") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let recipe = std::fs::read_to_string(&path).expect("read example");
        let output = check_config(&recipe, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}:\n{}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked} examples in {}", dir.display());
}

#[test]
fn older_kernel_than_the_oldest_tested_is_refused_in_one_line() {
    // The running kernel is supported: the same binary gets past the check here (it
    // then fails on the missing BTF, a later step), so the refusal below is the
    // version's doing.
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let output = run_to_exit(&["--btf_path", "/nonexistent/vmlinux"]);
    assert!(
        !stderr_line(&output).contains("older than"),
        "the running kernel {} is refused",
        running.trim()
    );

    let output = std::process::Command::new(kadvisor_tests::kadvisor::binary())
        .env("KADVISOR_TEST_KERNEL_RELEASE", "5.15.0-91-generic")
        .output()
        .expect("run kadvisor");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_line(&output),
        "kadvisor: kernel 5.15.0-91-generic is older than 6.1, the oldest kernel kadvisor is tested on; refusing to start"
    );
}
