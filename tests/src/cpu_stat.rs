//! A cgroup's `cpu.stat` usage sampled every 10 ms against the wall clock, so the
//! kernel's CPU time can be read at any moment another component recorded (a chart
//! point, a Prometheus scrape timestamp) and rates taken over exactly its window.
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Seconds since the Unix epoch, as Prometheus and the page time their samples.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Reads `usage_usec` of one `cpu.stat` every 10 ms until finished.
pub struct CpuStatSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(f64, f64)>>,
}

impl CpuStatSampler {
    /// Starts sampling the (v2) `cpu.stat` file at `stat`.
    pub fn start(stat: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let before = unix_now();
                let text = std::fs::read_to_string(&stat).expect("read cpu.stat");
                let after = unix_now();
                let usec: f64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .expect("usage_usec")
                    .trim()
                    .parse()
                    .expect("usage_usec is a number");
                samples.push(((before + after) / 2.0, usec / 1e6));
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        Self { stop, thread }
    }

    /// Stops sampling: (Unix time, CPU seconds) pairs in time order.
    pub fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler thread")
    }
}

/// CPU seconds at Unix time `t`, interpolated between the samples around it.
pub fn usage_at(samples: &[(f64, f64)], t: f64) -> f64 {
    let after = samples
        .iter()
        .position(|&(at, _)| at >= t)
        .unwrap_or_else(|| panic!("no cpu.stat sample after {t}"));
    assert!(after > 0, "no cpu.stat sample before {t}");
    let (t0, u0) = samples[after - 1];
    let (t1, u1) = samples[after];
    u0 + (u1 - u0) * (t - t0) / (t1 - t0)
}
