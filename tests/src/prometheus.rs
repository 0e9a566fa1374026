//! A real Prometheus (Debian's `prometheus`) started by a test on loopback, with a
//! config and rule files the test writes, and its HTTP API read the way Grafana
//! and users read it. Stopped (by PID) when dropped.
use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::kadvisor::get;

/// One sample of an instant query: its labels and value.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML text) and `files` (name, text) beside
    /// it, e.g. rule files named in the config. Waits until it is ready.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for prometheus");
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write rule file");
        }
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.path().join("prometheus.yml"))
            .output()
            .expect("run promtool (Debian package prometheus; scripts/setup.sh installs it)");
        assert!(
            check.status.success(),
            "promtool check config:\n{}{}\nconfig:\n{config}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus (Debian package prometheus; scripts/setup.sh installs it)");
        let mut prometheus = Self { child, port, dir };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited during start: {status}");
            }
            if get(self.port, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus not ready within 60 s");
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = get(self.port, &format!("/api/v1/{path}"))
            .unwrap_or_else(|| panic!("GET /api/v1/{path} failed"));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/api/v1/{path}: not JSON ({e}): {body}"));
        assert!(
            status == 200 && json["status"] == "success",
            "/api/v1/{path}: {status} {body}"
        );
        json["data"].clone()
    }

    /// An instant query (vector result) evaluated now.
    pub fn query(&self, expr: &str) -> Vec<Series> {
        let data = self.api(&format!("query?query={}", encode(expr)));
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .expect("result array")
            .iter()
            .map(|r| Series {
                labels: r["metric"]
                    .as_object()
                    .expect("metric object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
                value: r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{expr}: bad value in {r}")),
            })
            .collect()
    }

    /// The one series `expr` returns; panics with the query when there is none or several.
    pub fn query_one(&self, expr: &str) -> Series {
        let mut result = self.query(expr);
        assert_eq!(result.len(), 1, "{expr}: want one series, got {result:?}");
        result.remove(0)
    }

    /// Waits until every scrape target is up and has been scraped `scrapes` times
    /// after that (so rates have samples), or panics naming the targets that are not.
    pub fn wait_targets_up(&self, want: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.api("targets?state=active");
            let active = targets["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let up = active.iter().filter(|t| t["health"] == "up").count();
            if active.len() == want && up == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{up} of {want} targets up after {timeout:?}: {active:#?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every loaded rule by name, with its health and last error.
    pub fn rules(&self) -> Vec<(String, String, String)> {
        let data = self.api("rules");
        let mut out = Vec::new();
        for group in data["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                out.push((
                    rule["name"].as_str().unwrap_or_default().to_owned(),
                    rule["health"].as_str().unwrap_or_default().to_owned(),
                    rule["lastError"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        out
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        crate::terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
