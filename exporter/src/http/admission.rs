//! Admission control for collections: one collection runs at a time, and every
//! request that arrived while it was queued shares its result.
//!
//! A request joins the collection in flight when that one started at most
//! `Limits::share_window` before the request arrived; otherwise it waits for the gate,
//! and if the collection that finished while it waited started after it arrived, it
//! takes that one, else it starts the next. So a request never gets data older than
//! the share window, N concurrent scrapes cost one or two collections, a client that
//! gave up does not make the next one wait for two, and a connect/GET/close loop
//! cannot queue collections nobody reads. Sequential requests (one client) always get
//! a collection that started after they arrived.
//! Waiters are bounded (`Limits::max_waiters`, beyond that [`Refused::Busy`], served as
//! 503 with `Retry-After`), and so is the wait (`Limits::wait`).
//!
//! The collection's body is one reference-counted buffer shared by every response
//! that carries it (and its gzip, made once, off the async thread), so slow readers
//! pin one body, not one each. [`Collections`] is the handle other routes use (the
//! web UI's JSON endpoint): [`Collections::fresh`] goes through the same gate.
use std::{
    future::Future,
    io::Write as _,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::body::Bytes;

use crate::{
    collect::{CollectError, Collector, SampleSet},
    error_chain,
};

/// What a collection reads from: the collector, or a stand-in in unit tests.
pub trait Source: Send + Sync + 'static {
    /// One collection's body; `view` sees its structured samples on the way.
    fn collect(&self, view: &mut dyn FnMut(&SampleSet)) -> Result<String, CollectError>;

    /// A collection's body as the bytes its responses share.
    fn share(&self, body: String) -> Bytes {
        Bytes::from(body)
    }
}

impl Source for Collector {
    fn collect(&self, view: &mut dyn FnMut(&SampleSet)) -> Result<String, CollectError> {
        self.scrape_with(|set| view(set)).map(|(body, ())| body)
    }

    fn share(&self, body: String) -> Bytes {
        self.share_body(body)
    }
}

/// What a route wants from a collection's structured samples beside its body.
type View = Box<dyn FnOnce(&SampleSet) + Send>;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests waiting for a collection at once; more are refused with 503.
    pub max_waiters: usize,
    /// How long a request waits for its collection before 503.
    pub wait: Duration,
    /// A collection slower than this is counted and logged as an overrun.
    pub overrun: Duration,
    /// A request joins a running collection that started at most this long before it.
    pub share_window: Duration,
    /// Health is bad once the last completed collection is older than this and a
    /// new one cannot complete within `wait`.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Above a burst of 100 concurrent scrapes plus clients that hung up
            // but whose requests were accepted in the same burst; each waiter is a
            // parked future on a connection (at most 512 of them).
            max_waiters: 256,
            wait: Duration::from_secs(20),
            share_window: Duration::from_secs(1),
            overrun: Duration::from_secs(10),
            max_age: Duration::from_secs(60),
        }
    }
}

/// One completed collection, shared by every response that serves it.
pub struct Collection {
    pub text: Bytes,
    gzip: OnceLock<Bytes>,
    pub started: Instant,
    pub finished: Instant,
    /// CPU time the collecting thread spent on it: what the collection cost the
    /// host (its wall time also holds the waits for a CPU on a loaded host).
    pub cpu: Duration,
}

/// CPU time the calling thread has used so far (user and system, including the
/// BPF iterator programs its reads run).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // always available on Linux, and a failure leaves `now` zeroed (cost 0).
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

impl Collection {
    /// The body gzipped (computed once; blocking work: call it off the reactor).
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.text.len() / 8),
                    flate2::Compression::fast(),
                );
                match encoder
                    .write_all(&self.text)
                    .and_then(|()| encoder.finish())
                {
                    Ok(compressed) => Bytes::from(compressed),
                    // Writing to a Vec does not fail; an empty body would be wrong.
                    Err(e) => {
                        tracing::warn!(error = %e, "gzip failed");
                        Bytes::new()
                    }
                }
            })
            .clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many requests waiting for a collection")]
    Busy,
    #[error("no collection completed within {0:?}")]
    TimedOut(Duration),
    #[error("collection failed")]
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("cannot register admission metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("first collection failed")]
    First(#[source] CollectError),
}

struct Metrics {
    registry: prometheus::Registry,
    collections: prometheus::IntCounter,
    refused: prometheus::IntCounterVec,
    overruns: prometheus::IntCounter,
    fd_limit: prometheus::IntCounterVec,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let collections = prometheus::IntCounter::new(
            "kadvisor_collections_total",
            "Collections run; concurrent scrapes share one.",
        )?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "kadvisor_scrapes_refused_total",
                "Scrapes answered 503, by reason: busy (too many waiting) or timeout.",
            ),
            &["reason"],
        )?;
        let overruns = prometheus::IntCounter::new(
            "kadvisor_collection_overruns_total",
            "Collections that took longer than their deadline (10 s).",
        )?;
        let fd_limit = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "kadvisor_fd_limit_reached_total",
                "Operations refused because the open files limit was reached (EMFILE/ENFILE), by where.",
            ),
            &["site"],
        )?;
        fd_limit.with_label_values(&["accept"]);
        registry.register(Box::new(fd_limit.clone()))?;
        registry.register(Box::new(collections.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(overruns.clone()))?;
        for reason in ["busy", "timeout"] {
            refused.with_label_values(&[reason]);
        }
        Ok(Self {
            registry,
            collections,
            refused,
            overruns,
            fd_limit,
        })
    }

    /// These families in text format, appended to each collection's body.
    fn text(&self) -> String {
        let mut out = String::new();
        let _ignored =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

/// The shared "latest collection" handle and its gate.
pub struct Collections {
    source: Arc<dyn Source>,
    gate: Arc<tokio::sync::Mutex<()>>,
    latest: Arc<Mutex<Option<Arc<Collection>>>>,
    /// When the collection in flight started.
    running: Arc<Mutex<Option<Instant>>>,
    /// When the last finished collection started, and whether it succeeded: what
    /// requests that joined it wait for.
    done: Arc<tokio::sync::watch::Sender<Option<(Instant, bool)>>>,
    waiting: AtomicUsize,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// Holds one waiter slot while a request waits.
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Collections {
    pub fn new(source: Arc<dyn Source>, limits: Limits) -> Result<Self, AdmissionError> {
        Ok(Self {
            source,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            latest: Arc::default(),
            running: Arc::default(),
            done: Arc::new(tokio::sync::watch::Sender::new(None)),
            waiting: AtomicUsize::new(0),
            limits,
            metrics: Arc::new(Metrics::new().map_err(AdmissionError::Metrics)?),
        })
    }

    /// Adds kadvisor's own families (degraded modes of other parts) to those
    /// appended to every collection.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), AdmissionError> {
        self.metrics
            .registry
            .register(collector)
            .map_err(AdmissionError::Metrics)
    }

    /// Counts (and logs, the first time and every 100th) an operation refused at
    /// the open files limit. True when `error` was that.
    pub fn note_fd_limit(&self, site: &str, error: &std::io::Error) -> bool {
        if !matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            return false;
        }
        let counter = self.metrics.fd_limit.with_label_values(&[site]);
        if counter.get().is_multiple_of(100) {
            tracing::warn!(site, error = %error, count = counter.get() + 1, "open files limit reached");
        }
        counter.inc();
        true
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs a collection on this thread (before serving, so the first scrape and
    /// health have one).
    pub fn prime(&self) -> Result<(), AdmissionError> {
        let (started, cpu_before) = (Instant::now(), thread_cpu_time());
        let text = self
            .source
            .collect(&mut |_| {})
            .map_err(AdmissionError::First)?;
        let cpu = thread_cpu_time().saturating_sub(cpu_before);
        finish(
            &self.latest,
            &self.metrics,
            &self.limits,
            (started, cpu),
            text,
            self.source.as_ref(),
        );
        Ok(())
    }

    /// The last completed collection, whenever it ran.
    pub fn latest(&self) -> Option<Arc<Collection>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Time since the last collection completed.
    pub fn age(&self) -> Option<Duration> {
        self.latest().map(|c| c.finished.elapsed())
    }

    /// A collection that started after this call or at most `share_window` before it,
    /// shared with every concurrent caller.
    pub async fn fresh(&self) -> Result<Arc<Collection>, Refused> {
        let arrived = Instant::now();
        self.admitted(self.collect_after(arrived)).await
    }

    /// A new collection, through the same gate and bounds, that also hands its
    /// structured samples to `view` (the web UI's snapshot); requests waiting for
    /// the gate meanwhile share it.
    pub async fn fresh_with<T: Send + 'static>(
        &self,
        view: impl FnOnce(&SampleSet) -> T + Send + 'static,
    ) -> Result<(Arc<Collection>, T), Refused> {
        let out = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&out);
        let view: View = Box::new(move |set| {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(view(set));
        });
        let collection = self
            .admitted(async {
                let gate = Arc::clone(&self.gate).lock_owned().await;
                self.run(gate, view).await
            })
            .await?;
        let viewed = out.lock().unwrap_or_else(PoisonError::into_inner).take();
        viewed.map(|v| (collection, v)).ok_or(Refused::Failed)
    }

    /// Takes a waiter slot (or refuses) and bounds the wait.
    async fn admitted<T>(
        &self,
        work: impl Future<Output = Result<T, Refused>>,
    ) -> Result<T, Refused> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiters {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused.with_label_values(&["busy"]).inc();
            return Err(Refused::Busy);
        }
        let _slot = WaitSlot(&self.waiting);
        match tokio::time::timeout(self.limits.wait, work).await {
            Ok(result) => result,
            Err(_) => {
                self.metrics.refused.with_label_values(&["timeout"]).inc();
                Err(Refused::TimedOut(self.limits.wait))
            }
        }
    }

    async fn collect_after(&self, arrived: Instant) -> Result<Arc<Collection>, Refused> {
        let running = *self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(started) = running
            && started + self.limits.share_window >= arrived
        {
            return self.join(started).await;
        }
        let gate = Arc::clone(&self.gate).lock_owned().await;
        if let Some(latest) = self.latest().filter(|c| c.started >= arrived) {
            return Ok(latest);
        }
        self.run(gate, Box::new(|_| {})).await
    }

    /// Runs one collection off the reactor while holding `gate`.
    async fn run(
        &self,
        gate: tokio::sync::OwnedMutexGuard<()>,
        view: View,
    ) -> Result<Arc<Collection>, Refused> {
        let source = Arc::clone(&self.source);
        let latest = Arc::clone(&self.latest);
        let metrics = Arc::clone(&self.metrics);
        let running = Arc::clone(&self.running);
        let done = Arc::clone(&self.done);
        let limits = self.limits;
        // The gate travels with the work: a request that gives up (client gone,
        // timeout) does not let a second collection start beside this one.
        let work = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let cpu_before = thread_cpu_time();
            *running.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);
            let mut view = Some(view);
            let result = source.collect(&mut |set| {
                if let Some(view) = view.take() {
                    view(set);
                }
            });
            let collection = match result {
                Ok(text) => {
                    let cpu = thread_cpu_time().saturating_sub(cpu_before);
                    Ok(finish(
                        &latest,
                        &metrics,
                        &limits,
                        (started, cpu),
                        text,
                        source.as_ref(),
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "collection failed");
                    Err(Refused::Failed)
                }
            };
            *running.lock().unwrap_or_else(PoisonError::into_inner) = None;
            done.send_replace(Some((started, collection.is_ok())));
            drop(gate);
            collection
        });
        work.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "collection task failed");
            Err(Refused::Failed)
        })
    }
}

impl Collections {
    /// Waits for the collection that started at `started` and shares its result.
    async fn join(&self, started: Instant) -> Result<Arc<Collection>, Refused> {
        let mut done = self.done.subscribe();
        let finished = done
            .wait_for(|d| d.is_some_and(|(s, _)| s >= started))
            .await
            .ok()
            .and_then(|d| *d);
        match finished {
            Some((_, true)) => self
                .latest()
                .filter(|c| c.started >= started)
                .ok_or(Refused::Failed),
            _ => Err(Refused::Failed),
        }
    }
}

/// Stores a completed collection as the latest; counts an overrun.
fn finish(
    latest: &Mutex<Option<Arc<Collection>>>,
    metrics: &Metrics,
    limits: &Limits,
    (started, cpu): (Instant, Duration),
    mut text: String,
    source: &dyn Source,
) -> Arc<Collection> {
    let took = started.elapsed();
    metrics.collections.inc();
    if took > limits.overrun {
        metrics.overruns.inc();
        tracing::warn!(took = ?took, deadline = ?limits.overrun, "collection overran its deadline");
    }
    text.push_str(&metrics.text());
    let collection = Arc::new(Collection {
        text: source.share(text),
        gzip: OnceLock::new(),
        started,
        finished: Instant::now(),
        cpu,
    });
    *latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&collection));
    collection
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Counts collections; each takes `delay`.
    struct Slow {
        runs: AtomicU64,
        delay: Duration,
    }

    impl Source for Slow {
        fn collect(&self, _view: &mut dyn FnMut(&SampleSet)) -> Result<String, CollectError> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(self.delay);
            Ok(format!("run {n}\n"))
        }
    }

    fn collections(delay: Duration, limits: Limits) -> (Arc<Slow>, Arc<Collections>) {
        let slow = Arc::new(Slow {
            runs: AtomicU64::new(0),
            delay,
        });
        let source: Arc<dyn Source> = Arc::clone(&slow) as _;
        (slow, Arc::new(Collections::new(source, limits).unwrap()))
    }

    #[tokio::test]
    async fn concurrent_requests_share_at_most_two_collections() {
        let (slow, collections) = collections(Duration::from_millis(200), Limits::default());
        let requests: Vec<_> = (0..50)
            .map(|_| {
                let c = Arc::clone(&collections);
                tokio::spawn(async move { c.fresh().await.map(|c| c.text.clone()) })
            })
            .collect();
        for r in requests {
            let text = r.await.unwrap().unwrap();
            assert!(text.starts_with(b"run "), "{text:?}");
            assert!(
                text.windows(26).any(|w| w == b"kadvisor_collections_total"),
                "own metrics appended"
            );
        }
        let runs = slow.runs.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&runs),
            "50 requests ran {runs} collections"
        );
    }

    #[tokio::test]
    async fn a_request_never_gets_a_collection_older_than_itself() {
        let (_slow, collections) = collections(Duration::from_millis(10), Limits::default());
        let first = collections.fresh().await.unwrap();
        let asked = Instant::now();
        let second = collections.fresh().await.unwrap();
        assert!(second.started >= asked);
        assert!(second.started > first.started);
    }

    #[tokio::test]
    async fn waiters_beyond_the_bound_are_refused() {
        let limits = Limits {
            max_waiters: 3,
            ..Limits::default()
        };
        let (_slow, collections) = collections(Duration::from_millis(300), limits);
        let held: Vec<_> = (0..3)
            .map(|_| {
                let c = Arc::clone(&collections);
                tokio::spawn(async move { c.fresh().await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(collections.fresh().await, Err(Refused::Busy)));
        for h in held {
            assert!(h.await.unwrap());
        }
        assert!(
            collections
                .metrics
                .text()
                .contains("kadvisor_scrapes_refused_total{reason=\"busy\"} 1")
        );
        // The slots are free again.
        assert!(collections.fresh().await.is_ok());
    }

    #[tokio::test]
    async fn a_stuck_collection_times_out_waiters_and_counts_an_overrun() {
        let limits = Limits {
            wait: Duration::from_millis(100),
            overrun: Duration::from_millis(200),
            ..Limits::default()
        };
        let (slow, collections) = collections(Duration::from_millis(400), limits);
        assert!(matches!(
            collections.fresh().await,
            Err(Refused::TimedOut(_))
        ));
        // A second request while the first collection still runs does not start another.
        assert!(matches!(
            collections.fresh().await,
            Err(Refused::TimedOut(_))
        ));
        assert_eq!(slow.runs.load(Ordering::SeqCst), 1, "one at a time");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            collections.age().is_some(),
            "the abandoned collection still completed"
        );
        assert!(
            collections
                .metrics
                .text()
                .contains("kadvisor_collection_overruns_total 1")
        );
    }

    #[tokio::test]
    async fn a_request_joins_the_collection_in_flight() {
        let (slow, collections) = collections(Duration::from_millis(300), Limits::default());
        let first = {
            let c = Arc::clone(&collections);
            tokio::spawn(async move { c.fresh().await.unwrap() })
        };
        // Join once the first collection is running (not after a fixed sleep: on a
        // loaded machine the spawned task may not have started by then). Whether the
        // request joined is shown by the count and the shared result, not by timing.
        while slow.runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let second = collections.fresh().await.unwrap();
        assert!(
            Arc::ptr_eq(&first.await.unwrap(), &second),
            "one result shared"
        );
        assert_eq!(slow.runs.load(Ordering::SeqCst), 1, "no second collection");
    }

    #[test]
    fn gzip_is_made_once_and_decodes_to_the_text() {
        let (_slow, collections) = collections(Duration::ZERO, Limits::default());
        collections.prime().unwrap();
        let latest = collections.latest().unwrap();
        let gz = latest.gzip();
        assert_eq!(gz.as_ptr(), latest.gzip().as_ptr(), "cached");
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
        assert_eq!(text, latest.text);
    }
}
