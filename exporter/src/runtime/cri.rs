//! A CRI v1 client over a unix socket (containerd's CRI plugin, CRI-O, cri-dockerd):
//! one call lists every pod sandbox and container with what the kubelet's labels need.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxState, PodSandboxStatusRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::{ContainerMeta, PodMeta, RuntimeError};

/// How a runtime names its sandbox rows (compat section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// containerd: `name` = id, sandbox `container=""`.
    Containerd,
    /// CRI-O and cri-dockerd: docker-style `k8s_…` names, sandbox `container="POD"`.
    DockerStyle,
}

impl Flavor {
    fn from_runtime_name(name: &str) -> Self {
        match name {
            "cri-o" | "docker" => Self::DockerStyle,
            _ => Self::Containerd,
        }
    }
}

/// `name` and `container` labels of a pod sandbox row.
///
/// The kubelet's cAdvisor labels a row with `name` = the container's first alias
/// and `container` = its `io.kubernetes.container.name` label. containerd's handler
/// aliases a container by its id, and the CRI plugin gives sandboxes no container
/// name label. CRI-O (server/naming.go `makeSandboxContainerName`, infra container
/// labelled `io.kubernetes.container.name=POD` in server/sandbox_run_linux.go) and
/// cri-dockerd (core/naming.go `makeSandboxName`, as dockershim did) name the
/// infra container `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`, which cAdvisor's
/// crio and docker handlers use as the first alias. Not checked against a real
/// CRI-O or cri-dockerd: neither is packaged for this machine's Debian 12.
fn sandbox_names(
    flavor: Flavor,
    id: &str,
    md: &k8s_cri::v1::PodSandboxMetadata,
) -> (String, String) {
    match flavor {
        Flavor::Containerd => (id.to_owned(), String::new()),
        Flavor::DockerStyle => (
            format!(
                "k8s_POD_{}_{}_{}_{}",
                md.name, md.namespace, md.uid, md.attempt
            ),
            "POD".to_owned(),
        ),
    }
}

/// `name` label of an app container row: the id for containerd; for CRI-O
/// (server/naming.go `makeContainerName`) and cri-dockerd (core/naming.go
/// `makeContainerName`) `k8s_<container>_<pod>_<namespace>_<pod uid>_<container
/// attempt>`. See `sandbox_names`.
fn container_name(
    flavor: Flavor,
    id: &str,
    md: &k8s_cri::v1::ContainerMetadata,
    pod: &PodMeta,
    uid: &str,
) -> String {
    match flavor {
        Flavor::Containerd => id.to_owned(),
        Flavor::DockerStyle => format!(
            "k8s_{}_{}_{}_{}_{}",
            md.name, pod.pod, pod.namespace, uid, md.attempt
        ),
    }
}

/// What a listing learns, handed over one at a time so that whatever was learnt
/// before a slow or failing call is kept.
#[derive(Debug)]
pub enum Found {
    Pod {
        uid: String,
        pod: PodMeta,
    },
    Container {
        id: String,
        meta: ContainerMeta,
    },
    /// A lookup of one container failed; the others go on.
    Failed(RuntimeError),
}

/// A reply may be as large as the kubelet accepts from its runtime (16 MiB,
/// `maxMsgSize` in the kubelet's remote runtime client), not tonic's default 4 MiB:
/// a node with thousands of containers lists more than 4 MiB.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A gRPC channel over the unix socket `socket`, every call bounded by `timeout`.
pub async fn connect_channel(socket: &Path, timeout: Duration) -> Result<Channel, RuntimeError> {
    let path = socket.to_owned();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://[::1]:50051")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| RuntimeError::Connect {
            endpoint: socket.display().to_string(),
            source,
        })
}

pub struct CriClient {
    client: RuntimeServiceClient<Channel>,
    endpoint: String,
}

/// Gone between the listing and its status call: not an error.
fn vanished(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
}

impl CriClient {
    /// Connects to the CRI socket at `socket`; every call is bounded by `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, RuntimeError> {
        Ok(Self {
            client: RuntimeServiceClient::new(connect_channel(socket, timeout).await?)
                .max_decoding_message_size(MAX_REPLY_BYTES),
            endpoint: socket.display().to_string(),
        })
    }

    fn call_err(&self, op: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError + '_ {
        move |source| RuntimeError::Call {
            endpoint: self.endpoint.clone(),
            op,
            source: Box::new(source),
        }
    }

    /// Lists sandboxes and containers, handing each to `found` as soon as it is
    /// known. Only containers not in `known` cost a status call (for the image
    /// name); exited ones only if `wanted` names them (their cgroup is still
    /// exported), so the cache does not refill with what the runtime keeps listing
    /// after exit. A container removed between the listing and its status call is
    /// skipped; any other failed status call is handed over as `Found::Failed` and
    /// the rest go on. Errs only when the runtime cannot be listed at all.
    pub async fn list(
        &mut self,
        known: &HashSet<String>,
        wanted: &HashSet<String>,
        found: &mut (dyn FnMut(Found) + Send),
    ) -> Result<(), RuntimeError> {
        let version = self
            .client
            .version(VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map_err(self.call_err("version"))?
            .into_inner();
        let flavor = Flavor::from_runtime_name(&version.runtime_name);
        let sandboxes = self
            .client
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(self.call_err("list_pod_sandbox"))?
            .into_inner()
            .items;
        let containers = self
            .client
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map_err(self.call_err("list_containers"))?
            .into_inner()
            .containers;

        let mut pod_of_sandbox: HashMap<String, (PodMeta, String)> = HashMap::new();
        let mut new_sandboxes = Vec::new();
        for sandbox in sandboxes {
            let Some(md) = sandbox.metadata else {
                found(Found::Failed(RuntimeError::Garbage {
                    endpoint: self.endpoint.clone(),
                    what: "pod sandbox without metadata",
                }));
                continue;
            };
            let pod = PodMeta {
                pod: md.name.clone(),
                namespace: md.namespace.clone(),
                labels: std::sync::Arc::new(
                    sandbox
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            };
            found(Found::Pod {
                uid: md.uid.clone(),
                pod: pod.clone(),
            });
            pod_of_sandbox.insert(sandbox.id.clone(), (pod.clone(), md.uid.clone()));
            let ready = sandbox.state == PodSandboxState::SandboxReady as i32;
            if known.contains(&sandbox.id) || !(ready || wanted.contains(&sandbox.id)) {
                continue;
            }
            new_sandboxes.push((sandbox.id, md, pod));
        }
        for (id, md, pod) in new_sandboxes {
            let image = match self.sandbox_image(&id).await {
                Ok(image) => image,
                Err(RuntimeError::Call { source, .. }) if vanished(&source) => continue,
                Err(e) => {
                    found(Found::Failed(e));
                    continue;
                }
            };
            let (name, container) = sandbox_names(flavor, &id, &md);
            found(Found::Container {
                id,
                meta: ContainerMeta {
                    name,
                    image,
                    container,
                    pod: pod.pod,
                    namespace: pod.namespace,
                },
            });
        }
        for c in containers {
            let exited = c.state == ContainerState::ContainerExited as i32;
            if known.contains(&c.id) || (exited && !wanted.contains(&c.id)) {
                continue;
            }
            let Some(md) = c.metadata else {
                found(Found::Failed(RuntimeError::Garbage {
                    endpoint: self.endpoint.clone(),
                    what: "container without metadata",
                }));
                continue;
            };
            let status = match self
                .client
                .container_status(ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(status) => status.into_inner(),
                Err(status) if vanished(&status) => continue,
                Err(status) => {
                    found(Found::Failed(self.call_err("container_status")(status)));
                    continue;
                }
            };
            // The status carries the image's repo tag (what the user wrote); the
            // listing may only have the image id.
            let image = status
                .status
                .and_then(|s| s.image)
                .or(c.image)
                .map(|i| i.image)
                .unwrap_or_default();
            let (pod, uid) = pod_of_sandbox
                .get(&c.pod_sandbox_id)
                .cloned()
                .unwrap_or_default();
            let name = container_name(flavor, &c.id, &md, &pod, &uid);
            found(Found::Container {
                id: c.id,
                meta: ContainerMeta {
                    name,
                    image,
                    container: md.name,
                    pod: pod.pod,
                    namespace: pod.namespace,
                },
            });
        }
        Ok(())
    }

    /// The sandbox's (pause) image: containerd and CRI-O put it in the verbose
    /// status's `info` JSON as `image`; `""` when the runtime does not say.
    async fn sandbox_image(&mut self, id: &str) -> Result<String, RuntimeError> {
        let response = self
            .client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(self.call_err("pod_sandbox_status"))?
            .into_inner();
        Ok(response
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .and_then(|v| v.get("image")?.as_str().map(str::to_owned))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{ContainerMetadata, PodSandboxMetadata};

    use super::*;

    const UID: &str = "0d5c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d";

    fn pod() -> (PodSandboxMetadata, PodMeta) {
        let md = PodSandboxMetadata {
            name: "web-0".to_owned(),
            uid: UID.to_owned(),
            namespace: "shop".to_owned(),
            attempt: 1,
        };
        let meta = PodMeta {
            pod: md.name.clone(),
            namespace: md.namespace.clone(),
            ..PodMeta::default()
        };
        (md, meta)
    }

    #[test]
    fn runtime_names_pick_the_flavor() {
        // RuntimeName of the CRI Version call: CRI-O says "cri-o", cri-dockerd
        // "docker", containerd "containerd".
        assert_eq!(Flavor::from_runtime_name("cri-o"), Flavor::DockerStyle);
        assert_eq!(Flavor::from_runtime_name("docker"), Flavor::DockerStyle);
        assert_eq!(Flavor::from_runtime_name("containerd"), Flavor::Containerd);
    }

    #[test]
    fn crio_and_cri_dockerd_rows_are_named_like_the_kubelet_shows_them() {
        let (md, meta) = pod();
        assert_eq!(
            sandbox_names(Flavor::DockerStyle, "f00d", &md),
            (format!("k8s_POD_web-0_shop_{UID}_1"), "POD".to_owned())
        );
        let app = ContainerMetadata {
            name: "nginx".to_owned(),
            attempt: 3,
        };
        assert_eq!(
            container_name(Flavor::DockerStyle, "beef", &app, &meta, UID),
            format!("k8s_nginx_web-0_shop_{UID}_3"),
            "the container's attempt, not the sandbox's"
        );
    }

    #[test]
    fn containerd_rows_are_named_by_id() {
        let (md, meta) = pod();
        assert_eq!(
            sandbox_names(Flavor::Containerd, "f00d", &md),
            ("f00d".to_owned(), String::new())
        );
        let app = ContainerMetadata {
            name: "nginx".to_owned(),
            attempt: 3,
        };
        assert_eq!(
            container_name(Flavor::Containerd, "beef", &app, &meta, UID),
            "beef"
        );
    }
}
