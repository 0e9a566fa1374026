//! Cgroup path → what the path says about a container, from the naming conventions of
//! the cgroup drivers and runtimes. Pure functions: no runtime is asked here.
//!
//! | layout | container cgroup | pod cgroup |
//! |---|---|---|
//! | systemd driver, containerd | `…/kubepods-burstable-pod<u>.slice/cri-containerd-<id>.scope` | `…/kubepods-burstable-pod<u>.slice` (`_` for `-` in the UID) |
//! | systemd driver, CRI-O | `…/crio-<id>.scope` (`crio-conmon-<id>.scope` is conmon's, not a container) | same |
//! | systemd driver, cri-dockerd | `…/docker-<id>.scope` | same |
//! | cgroupfs driver (any CRI runtime) | `/kubepods/<qos>/pod<uid>/<id>` | `/kubepods/<qos>/pod<uid>` |
//! | podman | `…/libpod-<id>.scope` or `/libpod_parent/libpod-<id>` | |
//! | plain containerd (`ctr run`) | `/<namespace>/<id>` | |

/// Which runtime's naming a container cgroup follows (when the path says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRuntime {
    /// `cri-containerd-<id>.scope`
    Containerd,
    /// `crio-<id>.scope`
    Crio,
    /// `docker-<id>.scope` (cri-dockerd)
    Docker,
    /// `libpod-<id>`
    Podman,
    /// A bare id below a pod cgroup (cgroupfs driver): any CRI runtime.
    Cri,
    /// `/<namespace>/<id>`: a container started through containerd's own API.
    ContainerdNamespace,
}

/// What a cgroup path is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// A pod's cgroup; `uid` with dashes.
    Pod { uid: String },
    /// A container's cgroup (app container or sandbox: only the runtime knows which).
    Container {
        id: String,
        runtime: PathRuntime,
        /// The pod it belongs to, when the parent is a pod cgroup.
        pod_uid: Option<String>,
    },
    /// Anything else: root, QoS slices, system services, the user's own cgroups.
    Other,
}

/// Classifies a cgroup path as written in the `id` label (`/` for the root).
pub fn classify(path: &str) -> PathKind {
    let mut components = path.rsplit('/').filter(|c| !c.is_empty());
    let Some(last) = components.next() else {
        return PathKind::Other;
    };
    let parent = components.next();
    if let Some(uid) = pod_uid(last) {
        return PathKind::Pod { uid };
    }
    let pod_uid = parent.and_then(pod_uid);
    let scoped = |prefix: &str| {
        last.strip_prefix(prefix)
            .map(|rest| rest.strip_suffix(".scope").unwrap_or(rest))
            .filter(|id| is_container_id(id))
    };
    let found = if let Some(id) = scoped("cri-containerd-") {
        Some((id, PathRuntime::Containerd))
    } else if let Some(id) = scoped("crio-") {
        Some((id, PathRuntime::Crio))
    } else if let Some(id) = scoped("docker-") {
        Some((id, PathRuntime::Docker))
    } else if let Some(id) = scoped("libpod-") {
        Some((id, PathRuntime::Podman))
    } else if pod_uid.is_some() && is_container_id(last) {
        Some((last, PathRuntime::Cri))
    } else if depth(path) == 2
        && is_container_id(last)
        && parent.is_some_and(is_containerd_namespace)
    {
        Some((last, PathRuntime::ContainerdNamespace))
    } else {
        None
    };
    match found {
        Some((id, runtime)) => PathKind::Container {
            id: id.to_owned(),
            runtime,
            pod_uid,
        },
        None => PathKind::Other,
    }
}

/// Whether the path belongs to the kubelet's cgroup set: the root and everything under
/// a `kubepods` cgroup (either driver).
pub fn in_kubepods(path: &str) -> bool {
    path == "/"
        || path
            .split('/')
            .any(|c| c == "kubepods" || (c.starts_with("kubepods") && c.ends_with(".slice")))
}

/// The pod UID named by one path component: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<u>.slice` (systemd, `_` in place of `-`).
fn pod_uid(component: &str) -> Option<String> {
    let uid = if let Some(slice) = component.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        if !slice.starts_with("kubepods") {
            return None;
        }
        uid.replace('_', "-")
    } else {
        component.strip_prefix("pod")?.to_owned()
    };
    is_uid(&uid).then_some(uid)
}

/// A Kubernetes UID: 32 hex digits with dashes (RFC 4122 form); static pods use the
/// 32-hex hash of their manifest without dashes.
fn is_uid(text: &str) -> bool {
    let hex = text.chars().filter(|c| *c != '-').count();
    hex == 32 && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) && !text.starts_with('-')
}

/// Container ids of CRI runtimes, docker and podman: 64 hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A containerd namespace name as a first-level cgroup: not a systemd unit and not the
/// kubelet's tree.
fn is_containerd_namespace(name: &str) -> bool {
    !name.contains('.') && !name.starts_with("kubepods") && !name.is_empty()
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f0ca5e3c5d8e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920";
    const UID: &str = "0d5c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    const UID_SYSTEMD: &str = "0d5c1b2a_3e4f_4a5b_8c6d_7e8f9a0b1c2d";

    fn container(runtime: PathRuntime, pod: bool) -> PathKind {
        PathKind::Container {
            id: ID.to_owned(),
            runtime,
            pod_uid: pod.then(|| UID.to_owned()),
        }
    }

    fn pod() -> PathKind {
        PathKind::Pod {
            uid: UID.to_owned(),
        }
    }

    #[test]
    fn systemd_driver_pods_and_containers() {
        let burstable = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice"
        );
        let guaranteed = format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice");
        for pod_path in [&burstable, &guaranteed] {
            assert_eq!(classify(pod_path), pod(), "{pod_path}");
            assert_eq!(
                classify(&format!("{pod_path}/cri-containerd-{ID}.scope")),
                container(PathRuntime::Containerd, true)
            );
            assert_eq!(
                classify(&format!("{pod_path}/crio-{ID}.scope")),
                container(PathRuntime::Crio, true)
            );
            assert_eq!(
                classify(&format!("{pod_path}/docker-{ID}.scope")),
                container(PathRuntime::Docker, true)
            );
            // conmon's own scope is not a container.
            assert_eq!(
                classify(&format!("{pod_path}/crio-conmon-{ID}.scope")),
                PathKind::Other
            );
        }
        assert!(in_kubepods(&burstable));
    }

    #[test]
    fn cgroupfs_driver_pods_and_containers() {
        for qos in ["/kubepods/burstable", "/kubepods/besteffort", "/kubepods"] {
            let pod_path = format!("{qos}/pod{UID}");
            assert_eq!(classify(&pod_path), pod(), "{pod_path}");
            assert_eq!(
                classify(&format!("{pod_path}/{ID}")),
                container(PathRuntime::Cri, true)
            );
            assert!(in_kubepods(&pod_path));
        }
    }

    #[test]
    fn podman_and_plain_containerd() {
        assert_eq!(
            classify(&format!("/machine.slice/libpod-{ID}.scope")),
            container(PathRuntime::Podman, false)
        );
        assert_eq!(
            classify(&format!("/libpod_parent/libpod-{ID}")),
            container(PathRuntime::Podman, false)
        );
        assert_eq!(
            classify(&format!("/libpod_parent/libpod-conmon-{ID}")),
            PathKind::Other
        );
        assert_eq!(
            classify(&format!("/default/{ID}")),
            container(PathRuntime::ContainerdNamespace, false)
        );
        assert_eq!(
            classify(&format!("/system.slice/docker-{ID}.scope")),
            container(PathRuntime::Docker, false)
        );
    }

    #[test]
    fn everything_else_is_other() {
        for path in [
            "/",
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods.slice/kubepods-burstable.slice",
            "/system.slice/containerd.service",
            "/system.slice/kubelet.service",
            "/user.slice/user-1000.slice",
            &format!("/system.slice/{ID}"),
            &format!("/a/b/{ID}"),
            "/kubepods/burstable/podnot-a-uid",
            &format!("/kubepods/burstable/pod{UID}/short-id"),
        ] {
            assert_eq!(classify(path), PathKind::Other, "{path}");
        }
        assert!(!in_kubepods("/system.slice/kubelet.service"));
        assert!(in_kubepods("/"));
    }
}
