//! The container image (`Containerfile`, built by `scripts/image.sh`), run by podman
//! the way `deploy/kube-prometheus/base/daemonset.yaml` runs it: its args, exactly its
//! capabilities (every other one dropped, not `--privileged`), its host mounts
//! read-only, host PID and network namespaces, its seccomp setting and a read-only
//! root filesystem. The running kadvisor must serve this host's cgroups: a cgroup
//! the test creates appears with the CPU time the kernel's `cpu.stat` shows for it.
//!
//! Root, podman (scripts/setup.sh installs it). The first run builds the release
//! binary; later runs reuse it and podman's layer cache.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use kadvisor_tests::{
    assert_close,
    cgroup::TestCgroup,
    containerd::Containerd,
    exclusive_cpu, kadvisor, require_root,
    validators::{self, repo},
};
use serde_json::Value;

const IMAGE: &str = "localhost/kadvisor:test";

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("utf-8 output")
}

/// How the DaemonSet runs the kadvisor container, read from its YAML by the
/// validators' Python, so the test follows the manifest.
fn daemonset_container() -> Value {
    let text = validators::succeeded(
        "validate.py container",
        &validators::python()
            .arg("container")
            .output()
            .expect("run validate.py"),
    );
    serde_json::from_str(&text).expect("container JSON")
}

/// Capability numbers (linux/capability.h) of the names a pod spec uses.
fn capability_bit(name: &str) -> u32 {
    match name {
        "DAC_READ_SEARCH" => 2,
        "NET_ADMIN" => 12,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} not in the test's table"),
    }
}

/// The image's whole filesystem, mounted read-only by podman while this lives.
struct MountedImage(PathBuf);

impl MountedImage {
    fn new() -> Self {
        Self(PathBuf::from(
            stdout(Command::new("podman").args(["image", "mount", IMAGE])).trim(),
        ))
    }

    fn files(&self) -> Vec<(String, u64)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
            for entry in std::fs::read_dir(dir).expect("read image directory") {
                let entry = entry.expect("directory entry");
                let meta = std::fs::symlink_metadata(entry.path()).expect("stat image file");
                if meta.is_dir() {
                    walk(root, &entry.path(), out);
                } else {
                    let path = entry
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .display()
                        .to_string();
                    out.push((path, meta.len()));
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.0, &self.0, &mut files);
        files.sort();
        files
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["image", "unmount", IMAGE])
            .output();
    }
}

/// The runtimes' default seccomp profile as the DaemonSet's supported runtimes ship
/// it: this host's podman default (`/usr/share/containers/seccomp.json`, a
/// containers-common from before 0.60) with the one change containers-common 0.60
/// made and containerd made in 1.6.9: `bpf(2)` is allowed with `CAP_BPF` and
/// `perf_event_open(2)` with `CAP_PERFMON`, not only with `CAP_SYS_ADMIN`. Older
/// profiles refuse both without `CAP_SYS_ADMIN`, and kadvisor then refuses to start
/// ("failed to create map ...: Operation not permitted"). The real containerd's own
/// default is tested by `serves_under_containerds_runtime_default_seccomp_profile`.
fn runtime_default_profile() -> tempfile::NamedTempFile {
    const GATED: [(&str, &str); 2] = [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")];
    let text = std::fs::read_to_string("/usr/share/containers/seccomp.json")
        .expect("read podman's default seccomp profile");
    let mut profile: Value = serde_json::from_str(&text).expect("seccomp JSON");
    let syscalls = profile["syscalls"].as_array_mut().expect("syscalls");
    for rule in syscalls.iter_mut() {
        // The rule refusing them to a container without CAP_SYS_ADMIN.
        if rule["action"] == "SCMP_ACT_ERRNO"
            && let Some(names) = rule["names"].as_array_mut()
        {
            names.retain(|n| !GATED.iter().any(|(name, _)| n == name));
        }
    }
    for (name, cap) in GATED {
        syscalls.push(serde_json::json!({
            "names": [name],
            "action": "SCMP_ACT_ALLOW",
            "includes": { "caps": [cap] },
        }));
    }
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    serde_json::to_writer(&mut file, &profile).expect("write the profile");
    file
}

/// A container this test started, removed (by its unique name) when dropped.
struct Container {
    name: String,
    port: u16,
    /// The seccomp profile file podman was given, kept while the container lives.
    _seccomp: Option<tempfile::NamedTempFile>,
}

impl Container {
    fn start(spec: &Value) -> Self {
        let name = format!("kadvisor-test-{}", std::process::id());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut podman = Command::new("podman");
        podman.args(["run", "--detach", "--replace", "--name", &name]);
        assert_eq!(spec["privileged"], false, "the DaemonSet is not privileged");
        assert_eq!(spec["drop"], serde_json::json!(["ALL"]));
        podman.arg("--cap-drop=ALL");
        for cap in spec["add"].as_array().unwrap() {
            podman.arg(format!("--cap-add={}", cap.as_str().unwrap()));
        }
        if spec["host_pid"] == true {
            podman.arg("--pid=host");
        }
        if spec["host_network"] == true {
            podman.arg("--network=host");
        }
        if let Some(user) = spec["run_as_user"].as_u64() {
            podman.arg(format!("--user={user}"));
        }
        if spec["read_only_root"] == true {
            // Kubernetes mounts no tmpfs on a read-only root; podman would.
            podman.args(["--read-only", "--read-only-tmpfs=false"]);
        }
        if spec["no_new_privileges"] == true {
            podman.args(["--security-opt", "no-new-privileges"]);
        }
        let seccomp = match spec["seccomp"].as_str().unwrap() {
            "Unconfined" => {
                podman.args(["--security-opt", "seccomp=unconfined"]);
                None
            }
            "RuntimeDefault" => {
                let profile = runtime_default_profile();
                podman.arg(format!(
                    "--security-opt=seccomp={}",
                    profile.path().display()
                ));
                Some(profile)
            }
            other => panic!("seccomp profile {other} not handled by the test"),
        };
        // Kubernetes runtimes pass their own (high) rlimits to containers; podman's
        // default asks for 1048576 open files, more than this sandbox lets root
        // raise to without CAP_SYS_RESOURCE. The test's own limits stand in.
        let nofile = rlimit(libc::RLIMIT_NOFILE);
        podman.arg(format!("--ulimit=nofile={nofile}:{nofile}"));
        podman.arg("--ulimit=nproc=4096:4096");
        for mount in spec["mounts"].as_array().unwrap() {
            let host = mount["host"].as_str().unwrap();
            // The DaemonSet mounts containerd's socket for runtime labels; a host
            // without containerd running has none, and kadvisor skips it.
            if !Path::new(host).exists() {
                eprintln!("{host} does not exist here: not mounted");
                continue;
            }
            let mode = if mount["read_only"] == true {
                "ro"
            } else {
                "rw"
            };
            podman.arg(format!(
                "--volume={host}:{}:{mode}",
                mount["path"].as_str().unwrap()
            ));
        }
        podman.arg(IMAGE);
        for arg in spec["args"].as_array().unwrap() {
            let arg = arg.as_str().unwrap();
            if arg.starts_with("--port=") {
                // Another kadvisor may hold the DaemonSet's port on this shared host.
                podman.arg(format!("--port={port}"));
            } else if arg == "--kubelet_rows" {
                // The test's cgroup is not a pod's; with the kubelet's rows only it
                // would not be a row. Every other argument is the DaemonSet's.
                eprintln!("--kubelet_rows left out: the test cgroup is not under kubepods");
            } else {
                podman.arg(arg);
            }
        }
        run(&mut podman);
        let container = Self {
            name,
            port,
            _seccomp: seccomp,
        };
        container.wait_ready();
        container
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if kadvisor::get(self.port, "/readyz").is_some_and(|(status, _)| status == 200) {
                return;
            }
            let state = stdout(Command::new("podman").args([
                "inspect",
                "--format",
                "{{.State.Status}}",
                &self.name,
            ]));
            assert_eq!(
                state.trim(),
                "running",
                "kadvisor's container stopped:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "kadvisor in the container not ready within 60 s:\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let output = Command::new("podman")
            .args(["logs", &self.name])
            .output()
            .expect("podman logs");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// Host PID of kadvisor inside the container.
    fn pid(&self) -> u32 {
        stdout(Command::new("podman").args(["inspect", "--format", "{{.State.Pid}}", &self.name]))
            .trim()
            .parse()
            .expect("container PID")
    }

    fn scrape(&self) -> kadvisor_tests::scrape::Scrape {
        let (status, body) = kadvisor::get(self.port, "/metrics").expect("scrape the container");
        assert_eq!(status, 200, "{body}");
        kadvisor_tests::scrape::Scrape::parse(body)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "5", &self.name])
            .output();
    }
}

fn rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct that we own.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    assert_eq!(rc, 0, "getrlimit");
    limit.rlim_cur
}

#[test]
fn image_holds_the_binary_its_libraries_and_licences_only() {
    if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_program(
        "podman",
        "builds and runs the container image; the binary in it is the one every other test runs",
    )) {
        return;
    }
    require_root();
    build_image();
    let image = MountedImage::new();
    let files = image.files();
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    for (path, _) in &files {
        let allowed = path == "usr/bin/kadvisor"
            || path.starts_with("usr/share/licenses/")
            || ((path.starts_with("lib") || path.starts_with("usr/lib")) && path.contains(".so"));
        assert!(allowed, "unexpected file in the image: {path}\n{files:#?}");
    }
    for want in [
        "usr/bin/kadvisor",
        "usr/share/licenses/kadvisor/LICENSE",
        "usr/share/licenses/debian/libc6.copyright",
        "usr/share/licenses/rust/CRATES.txt",
    ] {
        assert!(
            files.iter().any(|(p, _)| p == want),
            "{want} missing: {files:#?}"
        );
    }
    // Every crate compiled in is listed with its licence; aya and tokio ship texts.
    let crates =
        std::fs::read_to_string(image.0.join("usr/share/licenses/rust/CRATES.txt")).unwrap();
    for name in ["aya ", "tokio ", "hyper ", "kadvisor "] {
        assert!(
            crates.lines().any(|l| l.starts_with(name)),
            "{name}not listed:\n{crates}"
        );
    }
    assert!(
        files
            .iter()
            .any(|(p, _)| p.starts_with("usr/share/licenses/rust/tokio-"))
    );
    let binary = files
        .iter()
        .find(|(p, _)| p == "usr/bin/kadvisor")
        .unwrap()
        .1;
    println!(
        "image: {} files, {total} bytes, of which the binary {binary}",
        files.len()
    );
    assert!(
        total < binary + 16 * 1024 * 1024,
        "image is {total} bytes, binary {binary}"
    );
}

#[test]
fn image_serves_the_hosts_cgroups_with_the_daemonsets_capabilities() {
    if kadvisor_tests::ignore::because(kadvisor_tests::ignore::needs_program(
        "podman",
        "builds and runs the container image; the binary in it is the one every other test runs",
    )) {
        return;
    }
    require_root();
    let _cpu = exclusive_cpu();
    build_image();
    let spec = daemonset_container();
    let container = Container::start(&spec);

    // Exactly the DaemonSet's capabilities, effective and bounding.
    let want: u64 = spec["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| 1u64 << capability_bit(c.as_str().unwrap()))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{}/status", container.pid())).unwrap();
    for field in ["CapEff:", "CapBnd:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let got = u64::from_str_radix(line[field.len()..].trim(), 16).unwrap();
        assert_eq!(
            got, want,
            "{field} {got:#x} of kadvisor in the container, DaemonSet: {want:#x}"
        );
    }
    assert_eq!(want & (1 << capability_bit("SYS_ADMIN")), 0);

    // A cgroup of this host, made after kadvisor started, with a busy process.
    let mut cgroup = TestCgroup::new("image");
    cgroup.spawn_busy();
    // Until it has run 0.3 s of CPU (the shared machine may give it little).
    let deadline = Instant::now() + Duration::from_secs(30);
    while cgroup.cpu_stat_usage_seconds() < 0.3 {
        assert!(
            Instant::now() < deadline,
            "the busy loop got under 0.3 s of CPU in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cgroup.stop_all();
    let kernel = cgroup.cpu_stat_usage_seconds();
    let usage = |scrape: &kadvisor_tests::scrape::Scrape| {
        scrape
            .find("container_cpu_usage_seconds_total", &[("id", cgroup.id())])
            .first()
            .map(|s| s.value)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = loop {
        let scrape = container.scrape();
        if let Some(value) = usage(&scrape) {
            break value;
        }
        assert!(
            Instant::now() < deadline,
            "{} not served:\n{}",
            cgroup.id(),
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_close(
        "container_cpu_usage_seconds_total vs cpu.stat",
        ours,
        kernel,
        0.02,
    );
    // The root row is the host's, not the container's own cgroup.
    let root = container.scrape();
    assert!(
        !root
            .find("container_cpu_usage_seconds_total", &[("id", "/")])
            .is_empty()
    );
    assert!(!root.find("machine_cpu_cores", &[]).is_empty());
    drop(container);

    // The same image under containerd's own default seccomp profile. Part of this
    // test (not one of its own) because neither podman nor containerd is in the
    // kernel matrix's initramfs, which leaves this test out by name.
    serves_under_containerds_runtime_default_seccomp_profile(&spec);
}

/// Capabilities `ctr run` gives a container by default (containerd 1.6
/// `oci.defaultUnixCaps`), dropped to leave exactly the DaemonSet's.
const CTR_DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The image under this host's real containerd 1.6 with containerd's own default
/// seccomp profile and exactly the DaemonSet's capabilities: it loads and attaches
/// its programs and serves the host. `ctr run --seccomp` builds the profile with the
/// function the CRI plugin uses for a pod's `RuntimeDefault`
/// (`contrib/seccomp.DefaultProfile`, from the container's capabilities): since
/// containerd 1.6.9 it allows `bpf(2)` with `CAP_BPF` and `perf_event_open(2)` with
/// `CAP_PERFMON`. Not reproduced through ctr: host PID namespace (the podman run of
/// the same test has it), the read-only root.
fn serves_under_containerds_runtime_default_seccomp_profile(spec: &Value) {
    assert_eq!(
        spec["seccomp"], "RuntimeDefault",
        "what the DaemonSet asks for"
    );
    let containerd = Containerd::start();
    let ctr = || {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(containerd.socket())
            .args(["--namespace", "default"]);
        command
    };
    let archive = tempfile::NamedTempFile::new().expect("temp file");
    let archive_path = archive.path().to_str().expect("utf-8 path").to_owned();
    run(Command::new("podman").args([
        "save",
        "--format",
        "oci-archive",
        "-o",
        &archive_path,
        IMAGE,
    ]));
    run(ctr().args([
        "images",
        "import",
        "--base-name",
        "localhost/kadvisor",
        &archive_path,
    ]));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let id = format!("kadvisor-test-{}-seccomp", std::process::id());
    struct Removed<'a>(&'a Containerd, &'a str);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            self.0.ctr_remove(self.1);
        }
    }
    let mut command = ctr();
    command.args(["run", "--detach", "--seccomp", "--net-host"]);
    for cap in CTR_DEFAULT_CAPS {
        command.args(["--cap-drop", cap]);
    }
    for cap in spec["add"].as_array().unwrap() {
        command.args(["--cap-add", &format!("CAP_{}", cap.as_str().unwrap())]);
    }
    for dir in ["/sys/fs/cgroup", "/sys/kernel/btf"] {
        command.args([
            "--mount",
            &format!("type=bind,src={dir},dst={dir},options=rbind:ro"),
        ]);
    }
    command.args([
        IMAGE,
        &id,
        "/usr/bin/kadvisor",
        "--listen_ip",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    run(&mut command);
    let _removed = Removed(&containerd, &id);
    let port: u16 = port.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while kadvisor::get(port, "/readyz").is_none_or(|(status, _)| status != 200) {
        let tasks = stdout(ctr().args(["tasks", "ls"]));
        assert!(
            tasks
                .lines()
                .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
            "kadvisor's task under containerd's default seccomp profile stopped:\n{tasks}"
        );
        assert!(Instant::now() < deadline, "kadvisor not ready within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }

    let tasks = stdout(ctr().args(["tasks", "ls"]));
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("kadvisor's task");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Seccomp:"), "2", "a seccomp filter is in force");
    let want: u64 = spec["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| 1u64 << capability_bit(c.as_str().unwrap()))
        .sum();
    assert_eq!(
        u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        want,
        "exactly the DaemonSet's capabilities"
    );
    let (_, body) = kadvisor::get(port, "/metrics").expect("scrape");
    let scrape = kadvisor_tests::scrape::Scrape::parse(body);
    assert!(
        !scrape
            .find("container_cpu_usage_seconds_total", &[("id", "/")])
            .is_empty(),
        "the host's root row"
    );
    // Served only when its kernel programs are attached (bpf(2) and the perf events
    // of the tracing attachments both went through the filter).
    assert!(
        !scrape
            .find("container_oom_events_total", &[("id", "/")])
            .is_empty(),
        "the OOM family, whose programs are attached:\n{}",
        scrape.text
    );
}

/// `scripts/image.sh localhost/kadvisor:test`: the same command a user runs.
fn build_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        run(Command::new(repo().join("scripts/image.sh"))
            .arg(IMAGE)
            .current_dir(repo()));
    });
}
