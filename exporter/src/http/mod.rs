//! The admin surface: one HTTP/1 service.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /metrics` | every family, text format 0.0.4, gzip when the client accepts it |
//! | `GET /metrics/cadvisor` | the same (the kubelet's path, for drop-in scrape configs) |
//! | `GET /healthz` | 200 with the age of the last completed collection; 503 when it is older than `Limits::max_age` and a new one cannot complete |
//! | `GET /readyz` | 200 once programs are attached, the first cgroup walk is done and health is good, 503 before |
//! | `GET /` and `GET /ui/...` | the web UI and its JSON snapshot (`ui`) |
//!
//! Anything else is 404; a method other than GET or HEAD is 405. Scrapes and UI
//! snapshots go through admission control ([`admission`]): one collection at a time,
//! shared by concurrent requests, waiters bounded (503 with `Retry-After`).
//! Connections are bounded (`MAX_CONNECTIONS`; beyond, new ones wait in the listen
//! backlog); headers must arrive within `HEADER_READ_TIMEOUT`, and a read or write
//! that makes no progress for `IDLE_TIMEOUT` / `WRITE_TIMEOUT` ends the connection
//! ([`deadline`]). Shutdown drains in-flight requests for at most `DRAIN_TIMEOUT`.
pub mod admission;
pub mod deadline;
use std::{
    convert::Infallible,
    future::Future,
    io::Write as _,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Bytes,
    header::{
        ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
        HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS,
    },
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use admission::{Collections, Refused};

use crate::collect::{Collector, render::CONTENT_TYPE as METRICS_CONTENT_TYPE};

pub mod ui;

/// Far above what Prometheus (one connection per replica), the kubelet's probes and
/// a few curls need, so that a burst of stalled clients does not fill it; each idle
/// connection costs a socket and a few KiB, bodies are shared (see `admission`).
const MAX_CONNECTIONS: usize = 512;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Between requests on a keep-alive connection (Prometheus reconnects if closed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A reply the client does not read for this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by every request.
pub struct Admin {
    collections: Arc<Collections>,
    /// For what a route needs beside the collection (the UI's live cgroup paths).
    collector: Arc<Collector>,
    ready: AtomicBool,
}

impl Admin {
    pub fn new(collections: Arc<Collections>, collector: Arc<Collector>) -> Self {
        Self {
            collections,
            collector,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The admission-controlled collection handle, for routes that serve the same
    /// data in another shape (the web UI's JSON endpoint).
    pub fn collections(&self) -> &Arc<Collections> {
        &self.collections
    }
}

/// Answers one request. Public so tests can call the service without a socket.
pub async fn respond<B>(admin: Arc<Admin>, request: Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/metrics" | "/metrics/cadvisor" => {
            let gzip = accepts_gzip(&request);
            match admin.collections.fresh().await {
                Ok(collection) => metrics_response(collection, gzip).await,
                Err(refused) => refused_response(&refused),
            }
        }
        ui::SNAPSHOT_PATH => {
            let gzip = accepts_gzip(&request);
            ui_snapshot(&admin, gzip).await
        }
        "/healthz" => health(&admin.collections).await,
        "/readyz" if admin.ready.load(Ordering::Acquire) => health(&admin.collections).await,
        "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        path => {
            ui::asset(path).map_or_else(|| plain(StatusCode::NOT_FOUND, "not found\n"), ui_asset)
        }
    }
}

/// Good while the last completed collection is younger than `max_age`; when it is
/// older (nobody scraped lately, or collections hang), runs one through admission
/// control and is good if it completes.
async fn health(collections: &Collections) -> Response<Full<Bytes>> {
    let max_age = collections.limits().max_age;
    if let Some(age) = collections.age().filter(|age| *age <= max_age) {
        return text(
            StatusCode::OK,
            format!(
                "ok: last collection completed {:.1}s ago\n",
                age.as_secs_f64()
            ),
        );
    }
    match collections.fresh().await {
        Ok(c) => text(
            StatusCode::OK,
            format!(
                "ok: last collection completed {:.1}s ago\n",
                c.finished.elapsed().as_secs_f64()
            ),
        ),
        Err(refused) => {
            let age = collections.age().map_or_else(
                || "never".to_owned(),
                |a| format!("{:.1}s ago", a.as_secs_f64()),
            );
            tracing::warn!(last_completed = %age, error = %refused, "unhealthy: no recent collection");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: last collection completed {age}; {refused}\n"),
            )
        }
    }
}

/// `GET /ui/snapshot`: the collection's rows as JSON (`ui::snapshot`), made from a
/// collection that goes through the same admission control as `/metrics` (and is
/// shared with the scrapes waiting for it).
async fn ui_snapshot(admin: &Arc<Admin>, gzip: bool) -> Response<Full<Bytes>> {
    let discovery = Arc::clone(admin.collector.discovery());
    let view = move |samples: &crate::collect::SampleSet| {
        let live: std::collections::HashSet<String> =
            discovery.state().live.keys().cloned().collect();
        ui::snapshot::Snapshot::build(samples, &live)
    };
    let (collection, snapshot) = match admin.collections.fresh_with(view).await {
        Ok(viewed) => viewed,
        Err(refused) => return refused_response(&refused),
    };
    // Stamped with the collection's own start, however long this request waited for it.
    let started = std::time::SystemTime::now()
        .checked_sub(collection.started.elapsed())
        .unwrap_or(std::time::UNIX_EPOCH);
    let snapshot = snapshot.stamped(started, collection.cpu);
    // Encoding and compression are blocking work: not on the reactor.
    let encoded = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&snapshot).map(|json| compressed(json, gzip))
    })
    .await;
    match encoded {
        Ok(Ok(mut response)) => {
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "snapshot encoding failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "snapshot failed\n")
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot task failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "snapshot failed\n")
        }
    }
}

fn ui_asset(asset: &'static ui::Asset) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ui::CONTENT_SECURITY_POLICY),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Embedded in the binary: a new binary may serve other files at the same paths.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn accepts_gzip<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.trim().split(';').next() == Some("gzip"))
}

async fn metrics_response(
    collection: Arc<admission::Collection>,
    gzip: bool,
) -> Response<Full<Bytes>> {
    let mut response = if gzip {
        // Compressing a multi-MiB body takes milliseconds: not on the reactor.
        match tokio::task::spawn_blocking(move || collection.gzip()).await {
            Ok(compressed) if !compressed.is_empty() => {
                let mut r = Response::new(Full::new(compressed));
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n"),
        }
    } else {
        Response::new(Full::new(collection.text.clone()))
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    response
}

/// `body`, gzipped when the client accepts it (and compression works).
fn compressed(body: Vec<u8>, gzip: bool) -> Response<Full<Bytes>> {
    if !gzip {
        return Response::new(Full::new(Bytes::from(body)));
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(compressed) => {
            let mut r = Response::new(Full::new(Bytes::from(compressed)));
            r.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "gzip failed; sending uncompressed");
            Response::new(Full::new(Bytes::from(body)))
        }
    }
}

fn refused_response(refused: &Refused) -> Response<Full<Bytes>> {
    let mut response = match refused {
        Refused::Busy => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many scrapes waiting\n",
        ),
        Refused::TimedOut(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "collection timed out\n"),
        Refused::Failed => plain(StatusCode::INTERNAL_SERVER_ERROR, "collection failed\n"),
    };
    if matches!(refused, Refused::Busy | Refused::TimedOut(_)) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    text(status, body.to_owned())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Logs a warning when `ip` is reachable beyond this host: /metrics names every
/// container, pod and image on the node, and has no authentication of its own.
pub fn warn_if_exposed(ip: IpAddr) {
    if !ip.is_loopback() {
        tracing::warn!(
            listen_ip = %ip,
            "listening beyond loopback: anyone who reaches this address can read every container's, pod's and image's name and can load the node with scrapes; keep --listen_ip=127.0.0.1 behind an authenticating proxy (the DaemonSet's kube-rbac-proxy) unless a firewall restricts it"
        );
    }
}

/// Serves `admin` on `listener` until `shutdown` completes, then drains.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's backlog
        // (Prometheus' among them) while held ones finish, give up or hit their
        // deadlines, instead of being reset.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning.
                    if !admin.collections.note_fd_limit("accept", &e) {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admin = Arc::clone(&admin);
        let service = service_fn(move |request| {
            let admin = Arc::clone(&admin);
            async move { Ok::<_, Infallible>(respond(admin, request).await) }
        });
        let stream = deadline::Deadlined::new(stream, IDLE_TIMEOUT, WRITE_TIMEOUT);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http_body_util::BodyExt as _;
    use kadvisor_common::KernelError;

    use super::*;
    use crate::{
        bpf::{BpfError, ProgramStats},
        cgroup::CgroupTree,
        collect::KernelSource,
    };

    /// Fixed kernel counters: 2 s of CPU in the fixture's `/a`.
    struct FixedKernel {
        a_id: u64,
    }

    impl KernelSource for FixedKernel {
        fn cgroup_cpu(&self) -> Result<HashMap<u64, kadvisor_common::CgroupCpu>, BpfError> {
            Ok(HashMap::from([(
                self.a_id,
                kadvisor_common::CgroupCpu {
                    runtime_ns: 2_000_000_000,
                    runqueue_ns: 500_000_000,
                    run_periods: 7,
                },
            )]))
        }
        fn cgroup_crashes(&self) -> Result<HashMap<u64, kadvisor_common::CgroupCrashes>, BpfError> {
            Ok(HashMap::new())
        }
        fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
            Ok(KernelError::ALL.iter().map(|&e| (e, 0)).collect())
        }
        fn program_stats(&self) -> Vec<ProgramStats> {
            ["oom_kill_signal", "mark_oom_victim"]
                .into_iter()
                .map(|name| ProgramStats {
                    name,
                    family: "oom",
                    attached: true,
                    run_count: 0,
                    run_time_ns: 0,
                })
                .collect()
        }
        fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
            Ok(HashMap::from([(self.a_id, 1)]))
        }
        fn cgroup_net(&self) -> Result<HashMap<u64, kadvisor_common::CgroupNet>, BpfError> {
            Ok(HashMap::new())
        }
    }

    fn admin(ready: bool) -> (tempfile::TempDir, Arc<Admin>) {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let a_id = std::fs::metadata(dir.path().join("a")).unwrap().ino();
        let tree = CgroupTree::at(dir.path().to_owned());
        let hierarchies =
            crate::cgroup::Hierarchies::from_parts(Some(dir.path().to_owned()), HashMap::new())
                .unwrap();
        let collector =
            Arc::new(Collector::new(Box::new(FixedKernel { a_id }), tree, hierarchies).unwrap());
        let collections = Collections::new(
            Arc::clone(&collector) as Arc<dyn admission::Source>,
            admission::Limits::default(),
        )
        .unwrap();
        let admin = Arc::new(Admin::new(Arc::new(collections), collector));
        if ready {
            admin.set_ready();
        }
        (dir, admin)
    }

    fn get(path: &str, gzip: bool) -> Request<()> {
        let mut builder = Request::get(path);
        if gzip {
            builder = builder.header(ACCEPT_ENCODING, "deflate, gzip;q=0.9");
        }
        builder.body(()).unwrap()
    }

    async fn body(response: Response<Full<Bytes>>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn metrics_serve_rows_in_text_format() {
        let (_dir, admin) = admin(true);
        for path in ["/metrics", "/metrics/cadvisor"] {
            let response = respond(Arc::clone(&admin), get(path, false)).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; version=0.0.4; charset=utf-8"
            );
            let text = String::from_utf8(body(response).await).unwrap();
            assert!(text.contains("container_cpu_usage_seconds_total{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\",cpu=\"total\"} 2\n"), "{text}");
            assert!(
                text.contains(
                    "id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\",cpu=\"total\"} 2\n"
                ),
                "root includes /a: {text}"
            );
            assert!(
                text.contains("kadvisor_kernel_errors_total{reason=\"map_full\"} 0"),
                "{text}"
            );
            assert!(text.contains("process_resident_memory_bytes"), "{text}");
        }
    }

    #[tokio::test]
    async fn metrics_are_gzipped_when_asked() {
        let (_dir, admin) = admin(true);
        let response = respond(admin, get("/metrics", true)).await;
        assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
        let compressed = body(response).await;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut text,
        )
        .unwrap();
        assert!(text.contains("container_cpu_usage_seconds_total"), "{text}");
    }

    #[tokio::test]
    async fn page_is_served_with_its_policy() {
        let (_dir, admin) = admin(true);
        let response = respond(Arc::clone(&admin), get("/", false)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            response.headers()[CONTENT_SECURITY_POLICY],
            ui::CONTENT_SECURITY_POLICY
        );
        let page = String::from_utf8(body(response).await).unwrap();
        assert!(page.contains("/ui/uPlot.iife.min.js"), "{page}");
        let script = respond(admin, get("/ui/uPlot.iife.min.js", false)).await;
        assert_eq!(
            script.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn snapshot_has_the_rows_of_the_metrics_collection() {
        let (_dir, admin) = admin(true);
        let response = respond(Arc::clone(&admin), get(ui::SNAPSHOT_PATH, true)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
        let compressed = body(response).await;
        let json: serde_json::Value =
            serde_json::from_reader(flate2::read::GzDecoder::new(&compressed[..])).unwrap();
        assert_eq!(json["version"], ui::snapshot::FORMAT_VERSION);
        assert!(json["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let rows = json["rows"].as_array().unwrap();
        let a = rows.iter().find(|r| r["id"] == "/a").expect("row /a");
        assert_eq!(a["removed"], false);
        assert_eq!(a["values"]["cpu_seconds"], 2.0, "the value /metrics serves");
        assert_eq!(a["values"]["oom_kills"], 1.0);
        assert_eq!(rows[0]["id"], "/", "root first");
    }

    #[tokio::test]
    async fn health_readiness_and_unknown_paths() {
        let (_dir, admin) = admin(false);
        let status = |r: Response<Full<Bytes>>| r.status();
        assert_eq!(
            status(respond(Arc::clone(&admin), get("/healthz", false)).await),
            StatusCode::OK
        );
        assert_eq!(
            status(respond(Arc::clone(&admin), get("/readyz", false)).await),
            StatusCode::SERVICE_UNAVAILABLE
        );
        admin.set_ready();
        assert_eq!(
            status(respond(Arc::clone(&admin), get("/readyz", false)).await),
            StatusCode::OK
        );
        assert_eq!(
            status(respond(Arc::clone(&admin), get("/nope", false)).await),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/metrics").body(()).unwrap();
        assert_eq!(
            status(respond(admin, post).await),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
