//! A real containerd (Debian's containerd 1.6 + runc) started by a test with a
//! private config, root, state and socket under a temp dir, the CRI plugin enabled
//! (`restrict_oom_score_adj`, host networking, no CNI) and locally built images:
//! a busybox-static rootfs turned into an OCI archive and imported with `ctr`, and a
//! "pause" image (the same static busybox, sleeping) as `sandbox_image`.
//!
//! [`Cri`] drives it over the CRI v1 API the way the kubelet does, with the cgroup
//! driver a node of this kind uses ([`CgroupDriver::of_host`]): systemd on a pure v2
//! host with systemd as PID 1 (pods in
//! `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`,
//! containers in `cri-containerd-<id>.scope`, runc's `SystemdCgroup = true`), else
//! cgroupfs (pods under `/kubepods/besteffort/pod<uid>`, containers in `<pod>/<id>`).
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_cri::v1::{self as cri, runtime_service_client::RuntimeServiceClient};
use tonic::transport::{Channel, Endpoint, Uri};

/// Where Debian's containernetworking-plugins installs the CNI plugins.
pub const CNI_PLUGINS: &str = "/usr/lib/cni";

/// The app image every test container runs.
pub const BUSYBOX_IMAGE: &str = "docker.io/kadvisor/busybox:test";
/// The sandbox image.
pub const PAUSE_IMAGE: &str = "docker.io/kadvisor/pause:test";

/// `Some(reason)` when this host has no containerd or runc (the kernel matrix's
/// busybox node has neither), for the tests that run real containers to say so.
pub fn unavailable() -> Option<String> {
    ["containerd", "runc", "ctr"].iter().find_map(|program| {
        crate::ignore::needs_program(
            program,
            "real containers through containerd's CRI; what these tests check (CRI labels, \
             pod rows) is not kernel-specific, and the kernel side of every row runs here \
             through the cgroup-only tests",
        )
    })
}

pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    /// Starts containerd and imports both images. Panics with containerd's log on
    /// failure.
    pub fn start() -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("kadvisor-test-containerd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for sub in ["root", "state", "logs", "cni-bin", "cni-conf", "opt"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = {systemd}
"#,
            d = d.display(),
            systemd = CgroupDriver::of_host() == CgroupDriver::Systemd,
        );
        fs::write(d.join("config.toml"), config).expect("write config");
        let log = fs::File::create(d.join("containerd.log")).expect("log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (scripts/setup.sh installs it)");
        let mut containerd = Self { dir, child };
        containerd.wait_for_socket();
        containerd.import("k8s.io", BUSYBOX_IMAGE, &[], &[]);
        containerd.import("k8s.io", PAUSE_IMAGE, &["/bin/sleep", "2147483647"], &[]);
        containerd
    }

    /// containerd's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to this containerd (SIGSTOP hangs it, SIGCONT resumes it).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill() with the PID of the containerd this helper started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// SIGKILLs containerd (its shims and containers keep running, as when a node's
    /// runtime crashes) and starts it again on the same root, state and socket.
    pub fn restart(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        let _ = fs::remove_file(self.socket());
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .append(true)
            .open(d.join("containerd.log"))
            .expect("log file");
        self.child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("restart containerd");
        self.wait_for_socket();
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll containerd") {
                panic!("containerd exited: {status}\n{}", self.log());
            }
            // Accepting, not only present: containerd binds the socket before it
            // listens, and a connect in between is refused (seen after a restart in an
            // emulated guest: the test's CRI client got ECONNREFUSED).
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "containerd socket did not accept connections\n{}",
            self.log()
        );
    }

    /// Builds a one-layer image from busybox-static (entrypoint `entrypoint`) as an
    /// OCI archive and imports it into the k8s.io namespace.
    fn import(&self, namespace: &str, name: &str, entrypoint: &[&str], cmd: &[&str]) {
        let work = self
            .dir
            .path()
            .join(format!("image-{namespace}-{}", sha256_str(name)));
        let rootfs = work.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
        for sub in ["proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(sub)).expect("mkdir rootfs");
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("copy /bin/busybox (busybox-static, scripts/setup.sh)");
        for applet in ["sh", "sleep", "cat", "true", "head", "dd"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("symlink applet");
        }
        let blobs = work.join("archive/blobs/sha256");
        fs::create_dir_all(&blobs).expect("mkdir blobs");
        let layer = work.join("layer.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("--owner=0")
            .arg("--group=0")
            .arg("-cf")
            .arg(&layer)
            .arg("."));
        let layer_bytes = fs::read(&layer).expect("read layer");
        let layer_digest = sha256(&layer_bytes);
        fs::write(blobs.join(&layer_digest), &layer_bytes).expect("write layer blob");
        let json_list = |items: &[&str]| {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Entrypoint":{},"Cmd":{}}},"rootfs":{{"type":"layers","diff_ids":["sha256:{layer_digest}"]}}}}"#,
            json_list(entrypoint),
            json_list(cmd)
        );
        let config_digest = sha256(config.as_bytes());
        fs::write(blobs.join(&config_digest), &config).expect("write config blob");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer_bytes.len()
        );
        let manifest_digest = sha256(manifest.as_bytes());
        fs::write(blobs.join(&manifest_digest), &manifest).expect("write manifest blob");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}},"annotations":{{"io.containerd.image.name":"{name}","org.opencontainers.image.ref.name":"test"}}}}]}}"#,
            manifest.len()
        );
        fs::write(work.join("archive/index.json"), index).expect("write index");
        fs::write(
            work.join("archive/oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write oci-layout");
        let archive = work.join("image.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(work.join("archive"))
            .arg("-cf")
            .arg(&archive)
            .arg("."));
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", namespace, "images", "import"])
            .arg(&archive)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images import {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Runs `command` in a container of containerd's own API (`ctr run`, no CRI) in
    /// namespace `default`; its cgroup is `/default/<id>`. Returns the id.
    pub fn ctr_run(&self, command: &[&str]) -> String {
        static IMPORTED: std::sync::Once = std::sync::Once::new();
        IMPORTED.call_once(|| self.import("default", BUSYBOX_IMAGE, &[], &[]));
        let id = sha256(random_uid().as_bytes());
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", "default", "run", "-d", BUSYBOX_IMAGE, &id])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr run: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        id
    }

    /// Kills and removes a `ctr run` container, and its cgroups.
    pub fn ctr_remove(&self, id: &str) {
        let ctr = |args: &[&str]| {
            let _ = Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["--namespace", "default"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        ctr(&["task", "kill", "-s", "SIGKILL", id]);
        std::thread::sleep(Duration::from_millis(200));
        ctr(&["task", "rm", "-f", id]);
        ctr(&["container", "rm", id]);
        for root in cgroup_roots() {
            let _ = fs::remove_dir(root.join("default").join(id));
            let _ = fs::remove_dir(root.join("default"));
        }
    }

    /// Lets pods have their own network namespace (the kubelet's default): a CNI
    /// config for this containerd only, the `ptp` plugin (a veth pair per pod, the
    /// host end holding `gateway`, no bridge, no masquerading) with `host-local`
    /// addresses from `subnet`, its state under this containerd's temp dir. Pods opt
    /// in with [`pod_network`]; without it they keep host networking. containerd
    /// picks the config up by watching its CNI conf dir.
    pub fn enable_pod_network(&self, subnet: &str, gateway: &str) {
        let d = self.dir.path();
        for plugin in ["ptp", "host-local", "loopback"] {
            let link = d.join("cni-bin").join(plugin);
            if !link.exists() {
                std::os::unix::fs::symlink(Path::new(CNI_PLUGINS).join(plugin), &link).expect(
                    "link a CNI plugin (Debian containernetworking-plugins, scripts/setup.sh)",
                );
            }
        }
        let config = format!(
            r#"{{"cniVersion":"0.4.0","name":"kadvisor-test","plugins":[{{"type":"ptp","ipMasq":false,"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}","gateway":"{gateway}"}}]]}}}}]}}"#,
            d.join("cni-ipam").display()
        );
        fs::write(d.join("cni-conf/10-kadvisor-test.conflist"), config).expect("write CNI config");
    }

    /// Shim processes whose command line names this containerd's socket
    /// (`containerd-shim-runc-v2 ... -address <socket>`).
    fn shims_by_address(&self) -> Vec<i32> {
        let address = self.socket().display().to_string();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-address" && w[1] == address.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Shim processes this containerd started (from its state dir).
    fn shim_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let base = self
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task/k8s.io");
        for entry in fs::read_dir(base).into_iter().flatten().flatten() {
            if let Ok(text) = fs::read_to_string(entry.path().join("shim.pid"))
                && let Ok(pid) = text.trim().parse()
            {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let shims = self.shim_pids();
        // SAFETY: kill() with the PID of the containerd this helper started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        for pid in shims {
            // SAFETY: kill() with a shim PID our containerd wrote into its own state dir.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Shims whose task was deleted are gone from the state dir but may still run
        // (containerd did not get to shut them down): found by our socket address.
        for pid in self.shims_by_address() {
            // SAFETY: kill() with the PID of a shim started by this containerd (its
            // command line carries our private socket address).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Snapshot mounts under our root.
        let root = self.dir.path().join("root");
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&root)
            .stderr(Stdio::null())
            .status();
        if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
            for mount_point in mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|m| m.starts_with(self.dir.path().to_str().unwrap_or("/nonexistent")))
            {
                let _ = Command::new("umount").args(["-l", mount_point]).status();
            }
        }
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), bytes).expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

fn sha256_str(text: &str) -> String {
    sha256(text.as_bytes())[..12].to_owned()
}

/// A random RFC 4122 style UID.
pub fn random_uid() -> String {
    let bytes = fs::read("/proc/sys/kernel/random/uuid").expect("read a uuid");
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// A synchronous CRI client for tests.
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

/// How pod and container cgroups are named and made, as the kubelet's
/// `cgroupDriver` and runc's `SystemdCgroup` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Directories made by runc: `/kubepods/besteffort/pod<uid>/<id>`.
    Cgroupfs,
    /// Units made by systemd over D-Bus: slices for the QoS class and the pod, a
    /// scope per container.
    Systemd,
}

impl CgroupDriver {
    /// The kubelet's choice on a node like this host: systemd where systemd is PID 1
    /// on a pure cgroup v2 host (every production node today), cgroupfs elsewhere
    /// (this project's hybrid dev host has no systemd).
    pub fn of_host() -> Self {
        let systemd = Path::new("/run/systemd/system").exists();
        let pure_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if systemd && pure_v2 {
            Self::Systemd
        } else {
            Self::Cgroupfs
        }
    }

    /// The kubepods root and the best-effort QoS cgroup, as kadvisor writes them in `id`.
    pub fn qos_cgroups(self) -> [&'static str; 2] {
        match self {
            Self::Cgroupfs => ["/kubepods", "/kubepods/besteffort"],
            Self::Systemd => [
                "/kubepods.slice",
                "/kubepods.slice/kubepods-besteffort.slice",
            ],
        }
    }

    /// The pod's cgroup (`id`) and the CRI `cgroup_parent` the kubelet passes for it.
    fn pod(self, uid: &str) -> (String, String) {
        match self {
            Self::Cgroupfs => {
                let path = format!("/kubepods/besteffort/pod{uid}");
                (path.clone(), path)
            }
            Self::Systemd => {
                // The kubelet escapes the UID's dashes: a dash means nesting in a slice name.
                let slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
                (
                    format!("/kubepods.slice/kubepods-besteffort.slice/{slice}"),
                    slice,
                )
            }
        }
    }
}

/// A pod sandbox made by [`Cri::run_pod`].
pub struct Pod {
    pub id: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub config: cri::PodSandboxConfig,
}

impl Pod {
    /// The pod's cgroup as kadvisor writes it in `id`.
    pub fn cgroup(&self) -> String {
        CgroupDriver::of_host().pod(&self.uid).0
    }

    /// The cgroup of the pod's container (or sandbox) `id`, as kadvisor writes it.
    pub fn container_cgroup(&self, id: &str) -> String {
        match CgroupDriver::of_host() {
            CgroupDriver::Cgroupfs => format!("{}/{id}", self.cgroup()),
            CgroupDriver::Systemd => format!("{}/cri-containerd-{id}.scope", self.cgroup()),
        }
    }

    /// The sandbox's cgroup.
    pub fn sandbox_cgroup(&self) -> String {
        self.container_cgroup(&self.id)
    }
}

impl Cri {
    pub fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.to_owned();
        let channel = runtime
            .block_on(
                Endpoint::from_static("http://[::1]:50051").connect_with_connector(
                    tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }),
                ),
            )
            .expect("connect to the CRI socket");
        Self {
            runtime,
            client: RuntimeServiceClient::new(channel),
        }
    }

    /// Waits until the CRI plugin answers (after a restart it says "server is not
    /// initialized yet" while it reloads its state).
    pub fn wait_initialized(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.runtime.block_on(
                self.client
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
            );
            match answer {
                Ok(_) => return,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("CRI not initialized within {within:?}: {e}"),
            }
        }
    }

    /// Runs a pod sandbox the way the kubelet does (its labels, cgroup parent, host
    /// network).
    pub fn run_pod(&mut self, name: &str, namespace: &str, log_dir: &Path) -> Pod {
        self.run_pod_with(name, namespace, log_dir, |_| {})
    }

    /// [`Cri::run_pod`] with the sandbox config changed by `configure` before
    /// RunPodSandbox, e.g. [`pod_network`] for a pod with its own network namespace.
    pub fn run_pod_with(
        &mut self,
        name: &str,
        namespace: &str,
        log_dir: &Path,
        configure: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> Pod {
        // Counted before its cgroups exist: see `PODS`.
        *pods() += 1;
        let uid = random_uid();
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_owned(), name.to_owned()),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                namespace.to_owned(),
            ),
            ("io.kubernetes.pod.uid".to_owned(), uid.clone()),
            ("app".to_owned(), "kadvisor-test".to_owned()),
        ]);
        let pod_log_dir = log_dir.join(&uid);
        fs::create_dir_all(&pod_log_dir).expect("pod log dir");
        let mut config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.clone(),
                namespace: namespace.to_owned(),
                attempt: 0,
            }),
            labels,
            log_directory: pod_log_dir.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: CgroupDriver::of_host().pod(&uid).1,
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        configure(&mut config);
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = self
            .runtime
            .block_on(self.client.run_pod_sandbox(request))
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        Pod {
            id,
            uid,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            config,
        }
    }

    /// Creates and starts a container running `command` from the busybox image.
    pub fn run_container(&mut self, pod: &Pod, name: &str, command: &[&str]) -> String {
        self.run_container_with(pod, name, command, |_| {})
    }

    /// Like `run_container`, with a CRI memory limit (bytes) as the kubelet sets it
    /// from the container's `resources.limits.memory`.
    pub fn run_container_limited(
        &mut self,
        pod: &Pod,
        name: &str,
        command: &[&str],
        memory_limit: i64,
    ) -> String {
        self.run_container_with(pod, name, command, |config| {
            if let Some(resources) = config.linux.as_mut().and_then(|l| l.resources.as_mut()) {
                resources.memory_limit_in_bytes = memory_limit;
            }
        })
    }

    /// [`Cri::run_container`] with the kubelet's config changed by `configure` before
    /// CreateContainer, e.g. CPU quota and memory limit in
    /// `linux.resources` (what the kubelet derives from the pod spec's limits).
    pub fn run_container_with(
        &mut self,
        pod: &Pod,
        name: &str,
        command: &[&str],
        configure: impl FnOnce(&mut cri::ContainerConfig),
    ) -> String {
        let labels = HashMap::from([
            ("io.kubernetes.container.name".to_owned(), name.to_owned()),
            ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                pod.namespace.clone(),
            ),
            ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
        ]);
        let mut config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: BUSYBOX_IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            labels,
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        configure(&mut config);
        let id = self
            .runtime
            .block_on(self.client.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }))
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        self.runtime
            .block_on(self.client.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }))
            .expect("StartContainer");
        id
    }

    /// Waits until the container has exited; returns its exit code.
    pub fn wait_exited(&mut self, id: &str, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .runtime
                .block_on(self.client.container_status(cri::ContainerStatusRequest {
                    container_id: id.to_owned(),
                    verbose: false,
                }))
                .expect("ContainerStatus")
                .into_inner()
                .status
                .expect("status");
            if status.state == cri::ContainerState::ContainerExited as i32 {
                return status.exit_code;
            }
            assert!(Instant::now() < deadline, "container {id} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops a running container (SIGTERM, then SIGKILL after `timeout` seconds).
    pub fn stop_container(&mut self, id: &str, timeout: i64) {
        self.runtime
            .block_on(self.client.stop_container(cri::StopContainerRequest {
                container_id: id.to_owned(),
                timeout,
            }))
            .expect("StopContainer");
    }

    pub fn remove_container(&mut self, id: &str) {
        self.runtime
            .block_on(self.client.remove_container(cri::RemoveContainerRequest {
                container_id: id.to_owned(),
            }))
            .expect("RemoveContainer");
    }

    pub fn remove_pod(&mut self, pod: &Pod) {
        let _ = self
            .runtime
            .block_on(self.client.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }));
        let _ = self.runtime.block_on(self.client.remove_pod_sandbox(
            cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            },
        ));
    }
}

/// Puts a pod sandbox (for [`Cri::run_pod_with`]) or a container (for
/// [`Cri::run_container_with`]) in the pod's own network namespace, as the kubelet
/// does for every pod without `hostNetwork` (needs [`Containerd::enable_pod_network`]).
pub fn pod_network(options: &mut Option<cri::NamespaceOption>) {
    options.get_or_insert_with(Default::default).network = cri::NamespaceMode::Pod as i32;
}

/// Lines a container wrote to stdout, from its CRI log (`<time> stdout F <line>`).
pub fn container_stdout(log_dir: &Path, pod: &Pod, name: &str) -> Vec<String> {
    let text =
        fs::read_to_string(log_dir.join(&pod.uid).join(format!("{name}.log"))).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_, stream, _, line) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (stream == "stdout").then(|| line.to_owned())
        })
        .collect()
}

/// Kills whatever still runs in the pod's cgroup (processes of the test's own
/// containers, e.g. after a failed assertion) and removes the pod cgroup directories
/// runc created (every v1 hierarchy and the unified tree), deepest first.
pub fn remove_pod_cgroups(pod: &Pod) {
    let rel = pod.cgroup();
    if CgroupDriver::of_host() == CgroupDriver::Systemd {
        // systemd owns the pod's slice: stopping it kills what is left in it and
        // removes its scopes and the slice.
        let slice = rel.rsplit('/').next().unwrap_or_default().to_owned();
        let _ = Command::new("systemctl").args(["stop", &slice]).status();
        let mut pods = pods();
        *pods = pods.saturating_sub(1);
        return;
    }
    let unified = crate::cgroup::v2_root().join(rel.trim_start_matches('/'));
    if unified.exists() {
        // cgroup.kill (kernel ≥ 5.14) SIGKILLs every process of the subtree: only the
        // containers this test started live there.
        let _ = fs::write(unified.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && fs::read_to_string(unified.join("cgroup.events"))
                .is_ok_and(|e| e.contains("populated 1"))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for root in cgroup_roots() {
        let pod_dir = root.join(rel.trim_start_matches('/'));
        if let Ok(entries) = fs::read_dir(&pod_dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&pod_dir);
    }
    // The QoS and kubepods parents, once no other pod of this test process exists or
    // is being made (tests of one binary run at once).
    let mut pods = pods();
    *pods = pods.saturating_sub(1);
    if *pods == 0 {
        for root in cgroup_roots() {
            let _ = fs::remove_dir(root.join("kubepods/besteffort"));
            let _ = fs::remove_dir(root.join("kubepods"));
        }
    }
}

/// Pods of this test process made and not yet removed, counted from before
/// RunPodSandbox. The kubepods and QoS cgroups are every pod's parents: a test that
/// removed them whenever they were empty could do so while another test's runc was
/// making its sandbox's cgroups, one hierarchy after another (suspected cause of a
/// sandbox with no row in a fresh-clone run on the hybrid host: its pod and app
/// container had theirs). They are removed with the last pod, under this lock.
static PODS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

fn pods() -> std::sync::MutexGuard<'static, usize> {
    PODS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Mount points of every cgroup hierarchy (v1 controllers and the unified tree).
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2") {
                roots.push(PathBuf::from(fields[1]));
            }
        }
    }
    roots
}
