//! Container runtime metadata: which container, pod and image a cgroup belongs to.
//!
//! `paths` says what a cgroup path names (container id, pod UID) from the drivers'
//! and runtimes' naming conventions; `cri` asks the runtimes over their CRI sockets.
//! Lookups run in a background task ([`Metadata::run`]) and land in a cache keyed by
//! container id and pod UID; the scrape path only reads the cache and, on a miss,
//! queues a lookup. A runtime that is down, slow or answers garbage costs labels, not
//! metrics: the row keeps its `id`, `kadvisor_runtime_errors_total` counts the failure
//! and a log line names it.
pub mod containerd;
pub mod cri;
pub mod labels;
pub mod paths;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use paths::{PathKind, PathRuntime};

use labels::ContainerLabels;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to runtime socket {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("runtime {endpoint}: {op} failed")]
    Call {
        endpoint: String,
        op: &'static str,
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("runtime {endpoint} answered garbage: {what}")]
    Garbage {
        endpoint: String,
        what: &'static str,
    },
    #[error("runtime {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("cannot register runtime self-metrics")]
    Metrics(#[source] prometheus::Error),
}

impl RuntimeError {
    fn op(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Call { op, .. } => op,
            Self::Garbage { .. } => "garbage",
            Self::Timeout { .. } => "timeout",
            Self::Metrics(_) => "metrics",
        }
    }
}

/// What the kubelet's labels say about one container (sandboxes included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    pub container: String,
    pub pod: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub pod: String,
    pub namespace: String,
    /// The pod's labels as the runtime holds them on its sandbox (the kubelet copies
    /// the pod's labels there), for pod label selectors.
    pub labels: Arc<std::collections::BTreeMap<String, String>>,
}

/// The default CRI sockets: containerd, CRI-O, cri-dockerd. Sockets that do not exist
/// are skipped without an error.
pub const DEFAULT_ENDPOINTS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
];

/// First retry of a key the runtimes did not know (a sandbox's cgroup appears before
/// the runtime lists it); doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One listing round may take this many call timeouts (list calls plus a status
/// call per new container); what it learnt before is kept.
const LIST_BUDGET_CALLS: u32 = 4;
/// Containers held in the cache beyond those a cgroup asked for.
pub const MAX_CACHED_CONTAINERS: usize = 16_384;

#[derive(Debug, Default)]
struct Cache {
    containers: HashMap<String, ContainerMeta>,
    pods: HashMap<String, PodMeta>,
    /// Keys the runtimes did not know: when to ask again, and the current backoff.
    misses: HashMap<String, (Instant, Duration)>,
}

/// The cache key a path's metadata is kept under: the pod UID, the container id, or
/// `<namespace>/<id>` for a container of containerd's own API (asked differently).
fn cache_key(path: &str) -> Option<String> {
    match paths::classify(path) {
        PathKind::Pod { uid } => Some(uid),
        PathKind::Container {
            runtime: PathRuntime::ContainerdNamespace,
            ..
        } => Some(path.trim_start_matches('/').to_owned()),
        PathKind::Container { id, .. } => Some(id),
        PathKind::Other => None,
    }
}

/// The metadata cache and its lookup queue.
pub struct Metadata {
    endpoints: Vec<PathBuf>,
    timeout: Duration,
    cache: RwLock<Cache>,
    pending: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    errors: prometheus::IntCounterVec,
    up: prometheus::IntGaugeVec,
}

impl Metadata {
    /// A cache that asks the CRI sockets `endpoints`, each call bounded by `timeout`.
    pub fn new(endpoints: Vec<PathBuf>, timeout: Duration) -> Result<Self, RuntimeError> {
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "kadvisor_runtime_errors_total",
                "Failed container runtime lookups, by operation; affected rows keep their id but lack runtime labels.",
            ),
            &["op"],
        )
        .map_err(RuntimeError::Metrics)?;
        let up = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "kadvisor_runtime_up",
                "1 when the container runtime at this socket answered its last listing, 0 when it could not be listed (its new containers get no runtime labels).",
            ),
            &["endpoint"],
        )
        .map_err(RuntimeError::Metrics)?;
        Ok(Self {
            endpoints,
            timeout,
            cache: RwLock::default(),
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            errors,
            up,
        })
    }

    /// The `kadvisor_runtime_errors_total` counter, for the collector's registry.
    pub fn error_metric(&self) -> prometheus::IntCounterVec {
        self.errors.clone()
    }

    /// The `kadvisor_runtime_up` gauge (one series per socket that exists).
    pub fn up_metric(&self) -> prometheus::IntGaugeVec {
        self.up.clone()
    }

    /// Labels for each path, from the cache. Misses are queued for the background
    /// task; this never waits on a runtime.
    pub fn labels(&self, paths: &[&str]) -> Vec<ContainerLabels> {
        let now = Instant::now();
        let mut wanted = Vec::new();
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let out = paths
            .iter()
            .map(|path| {
                let mut labels = ContainerLabels::for_path(path);
                let mut want = |key: &str| {
                    if cache.misses.get(key).is_none_or(|(next, _)| *next <= now) {
                        wanted.push(key.to_owned());
                    }
                };
                match paths::classify(path) {
                    PathKind::Pod { uid } => match cache.pods.get(&uid) {
                        Some(pod) => {
                            labels.pod.clone_from(&pod.pod);
                            labels.namespace.clone_from(&pod.namespace);
                        }
                        None => want(&uid),
                    },
                    PathKind::Container { .. } => {
                        let key = cache_key(path).unwrap_or_default();
                        match cache.containers.get(&key) {
                            Some(c) => {
                                labels.name.clone_from(&c.name);
                                labels.image.clone_from(&c.image);
                                labels.container.clone_from(&c.container);
                                labels.pod.clone_from(&c.pod);
                                labels.namespace.clone_from(&c.namespace);
                            }
                            None => want(&key),
                        }
                    }
                    PathKind::Other => {}
                }
                labels
            })
            .collect();
        drop(cache);
        if !wanted.is_empty() && !self.endpoints.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(wanted);
            self.wake.notify_one();
        }
        out
    }

    /// The labels of the pod a cgroup belongs to (its own pod cgroup or its
    /// container's), once the runtime has answered for the pod.
    pub fn pod_labels(
        &self,
        path: &str,
    ) -> Option<Arc<std::collections::BTreeMap<String, String>>> {
        let uid = match paths::classify(path) {
            PathKind::Pod { uid } => uid,
            PathKind::Container { .. } => match paths::classify(path.rsplit_once('/')?.0) {
                PathKind::Pod { uid } => uid,
                _ => return None,
            },
            PathKind::Other => return None,
        };
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.pods.get(&uid).map(|p| Arc::clone(&p.labels))
    }

    /// Queues a lookup for a new cgroup's container or pod (called by discovery as
    /// soon as the cgroup appears, so short-lived containers get labels too).
    pub fn want_path(&self, path: &str) {
        if self.endpoints.is_empty() {
            return;
        }
        let Some(key) = cache_key(path) else {
            return;
        };
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if cache.containers.contains_key(&key) || cache.pods.contains_key(&key) {
                return;
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
        self.wake.notify_one();
    }

    /// Forgets what the cache holds for a removed cgroup's path, so the cache stays
    /// bounded by the live (and grace-period) rows.
    pub fn forget(&self, path: &str) {
        let Some(key) = cache_key(path) else {
            return;
        };
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.containers.remove(&key);
        cache.pods.remove(&key);
        cache.misses.remove(&key);
    }

    /// Entries held: (containers, pods, misses).
    pub fn cached(&self) -> (usize, usize, usize) {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        (cache.containers.len(), cache.pods.len(), cache.misses.len())
    }

    /// The lookup task: waits for queued misses, then asks every runtime socket that
    /// exists. Runs until the runtime shuts down.
    pub async fn run(&self) {
        loop {
            // Woken by new keys, or by the clock when the earliest miss's backoff is
            // over; with nothing queued and no miss, only by new keys (no idle tick).
            match self.next_retry() {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    let _woken = tokio::time::timeout_at(at, self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
            let mut wanted: HashSet<String> =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
            let now = Instant::now();
            wanted.extend(
                self.cache
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .misses
                    .iter()
                    .filter(|(_, (next, _))| *next <= now)
                    .map(|(key, _)| key.clone()),
            );
            if wanted.is_empty() {
                continue;
            }
            self.refresh(&wanted).await;
        }
    }

    /// When the earliest remembered miss may be asked again.
    fn next_retry(&self) -> Option<Instant> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache.misses.values().map(|(next, _)| *next).min()
    }

    async fn refresh(&self, wanted: &HashSet<String>) {
        // `<namespace>/<id>`: containers of containerd's own API, one Get each.
        for key in wanted.iter().filter(|k| k.contains('/')) {
            let Some((namespace, id)) = key.split_once('/') else {
                continue;
            };
            for endpoint in self.endpoints.iter().filter(|e| e.exists()) {
                match containerd::container(endpoint, namespace, id, self.timeout).await {
                    Ok(None) => {}
                    Ok(Some(meta)) => {
                        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                        cache.misses.remove(key);
                        cache.containers.insert(key.clone(), meta);
                        break;
                    }
                    Err(e) => {
                        self.errors.with_label_values(&[e.op()]).inc();
                        tracing::warn!(error = %crate::error_chain(&e), "containerd lookup failed; asked again in a later round");
                    }
                }
            }
        }
        if wanted.iter().all(|k| k.contains('/')) {
            self.note_misses(wanted);
            return;
        }
        for endpoint in &self.endpoints {
            if !endpoint.exists() {
                continue;
            }
            let name = endpoint.display().to_string();
            // Whatever arrives within the budget is kept; the rest stays a miss and
            // is asked again (with backoff) in the next round.
            let budget = self.timeout * LIST_BUDGET_CALLS;
            let result = tokio::time::timeout(budget, self.list(endpoint, wanted)).await;
            let result = result.unwrap_or_else(|_| {
                Err(RuntimeError::Timeout {
                    endpoint: name.clone(),
                    timeout: budget,
                })
            });
            match result {
                Ok(()) => self.set_up(&name, true),
                Err(e) => {
                    self.errors.with_label_values(&[e.op()]).inc();
                    // A listing cut by the budget still answered: the runtime is up.
                    self.set_up(&name, matches!(e, RuntimeError::Timeout { .. }));
                    tracing::warn!(error = %crate::error_chain(&e), "runtime lookup failed; rows keep their id without runtime labels");
                }
            }
        }
        self.note_misses(wanted);
    }

    fn set_up(&self, endpoint: &str, up: bool) {
        let gauge = self.up.with_label_values(&[endpoint]);
        if up && gauge.get() == 0 {
            tracing::info!(endpoint, "container runtime answers");
        }
        gauge.set(i64::from(up));
    }

    /// Commits one thing a listing learnt.
    fn commit(&self, wanted: &HashSet<String>, found: cri::Found) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        match found {
            cri::Found::Container { id, meta } => {
                // Preloading containers no cgroup asked for yet spares a round trip
                // when their cgroup shows up; bounded so a runtime listing thousands
                // of stale entries cannot grow the cache without limit.
                if wanted.contains(&id) || cache.containers.len() < MAX_CACHED_CONTAINERS {
                    cache.misses.remove(&id);
                    cache.containers.insert(id, meta);
                }
            }
            cri::Found::Pod { uid, pod } => {
                // Only pods whose cgroup we exported are kept (bounded cache).
                if wanted.contains(&uid) || cache.pods.contains_key(&uid) {
                    cache.misses.remove(&uid);
                    cache.pods.insert(uid, pod);
                }
            }
            cri::Found::Failed(e) => {
                drop(cache);
                self.errors.with_label_values(&[e.op()]).inc();
                tracing::warn!(error = %crate::error_chain(&e), "one runtime lookup failed; asked again in a later round");
            }
        }
    }

    /// Whatever is still unknown is asked again later, with backoff.
    fn note_misses(&self, wanted: &HashSet<String>) {
        let now = Instant::now();
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        for key in wanted {
            if cache.containers.contains_key(key) || cache.pods.contains_key(key) {
                continue;
            }
            let backoff = cache
                .misses
                .get(key)
                .map_or(FIRST_BACKOFF, |(_, b)| (*b * 2).min(MAX_BACKOFF));
            cache.misses.insert(key.clone(), (now + backoff, backoff));
        }
    }

    async fn list(
        &self,
        endpoint: &std::path::Path,
        wanted: &HashSet<String>,
    ) -> Result<(), RuntimeError> {
        let mut client = cri::CriClient::connect(endpoint, self.timeout).await?;
        let known: HashSet<String> = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .containers
            .keys()
            .cloned()
            .collect();
        client
            .list(&known, wanted, &mut |found| self.commit(wanted, found))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f0ca5e3c5d8e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920";
    const UID: &str = "0d5c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d";

    #[test]
    fn cached_metadata_becomes_labels_and_misses_keep_the_id() {
        let metadata = Metadata::new(Vec::new(), Duration::from_secs(1)).unwrap();
        {
            let mut cache = metadata.cache.write().unwrap();
            cache.containers.insert(
                ID.to_owned(),
                ContainerMeta {
                    name: ID.to_owned(),
                    image: "docker.io/library/app:1".to_owned(),
                    container: "app".to_owned(),
                    pod: "web-0".to_owned(),
                    namespace: "prod".to_owned(),
                },
            );
            cache.pods.insert(
                UID.to_owned(),
                PodMeta {
                    pod: "web-0".to_owned(),
                    namespace: "prod".to_owned(),
                    labels: Arc::new([("app".to_owned(), "web".to_owned())].into()),
                },
            );
        }
        let pod = format!("/kubepods/burstable/pod{UID}");
        let app = format!("{pod}/{ID}");
        let unknown = format!("{pod}/{}", "a".repeat(64));
        let labels = metadata.labels(&[&pod, &app, &unknown, "/"]);
        // The pod's labels, for selectors: from its own cgroup and its containers'.
        for path in [&pod, &app, &unknown] {
            let pod_labels = metadata.pod_labels(path).expect("pod labels");
            assert_eq!(pod_labels.get("app").map(String::as_str), Some("web"));
        }
        assert!(metadata.pod_labels("/").is_none());
        assert_eq!(labels[0].pod, "web-0");
        assert_eq!(labels[0].namespace, "prod");
        assert_eq!(labels[0].container, "");
        assert_eq!(labels[1].container, "app");
        assert_eq!(labels[1].image, "docker.io/library/app:1");
        assert_eq!(labels[1].name, ID);
        assert_eq!(labels[1].id, app);
        assert_eq!(labels[2], ContainerLabels::for_path(&unknown));
        assert_eq!(labels[3], ContainerLabels::for_path("/"));

        metadata.forget(&app);
        metadata.forget(&pod);
        assert_eq!(metadata.cached(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_dead_socket_costs_labels_and_counts_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dead.sock");
        // A socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let metadata = Metadata::new(vec![socket], Duration::from_millis(200)).unwrap();
        let wanted = HashSet::from([ID.to_owned()]);
        metadata.refresh(&wanted).await;
        assert_eq!(metadata.errors.with_label_values(&["connect"]).get(), 1);
        assert_eq!(metadata.cached(), (0, 0, 1), "the miss is remembered");
        let path = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(
            metadata.labels(&[&path])[0],
            ContainerLabels::for_path(&path)
        );
    }
}
