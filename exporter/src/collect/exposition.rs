//! Prometheus text format 0.0.4, written straight into one buffer.
//!
//! Container rows carry the same six labels in every family, so each row's label set
//! is escaped and rendered once per scrape (`render_labels`) and reused by every
//! family, instead of allocating a label pair per sample as the prometheus crate's
//! model does. At 1000 containers and ~40 families that is the difference between
//! tens of thousands of allocations per scrape and a few thousand.
use std::fmt::Write as _;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// The body of one scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    buf: String,
    /// Series written per family, in order (`kadvisor_series`).
    series: Vec<(String, usize)>,
}

impl Exposition {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: String::with_capacity(bytes),
            series: Vec::new(),
        }
    }

    /// Starts a family: its HELP and TYPE lines. All its samples must follow before
    /// the next family starts.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) {
        let _infallible = writeln!(self.buf, "# HELP {name} {}", escape_help(help));
        let _infallible = writeln!(self.buf, "# TYPE {name} {}", kind.as_str());
        self.count_family(name);
    }

    /// One sample. `labels` is a label set rendered by `render_labels` (may be empty);
    /// `extra` labels follow it.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &[(&str, &str)], value: f64) {
        self.count_sample();
        self.buf.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            self.buf.push('{');
            self.buf.push_str(labels);
            for (i, (key, val)) in extra.iter().enumerate() {
                if i > 0 || !labels.is_empty() {
                    self.buf.push(',');
                }
                push_label(&mut self.buf, key, val);
            }
            self.buf.push('}');
        }
        self.buf.push(' ');
        push_value(&mut self.buf, value);
        self.buf.push('\n');
    }

    /// Appends text that is already in the exposition format (the prometheus crate's
    /// encoder output for kadvisor's own metrics).
    pub fn append_encoded(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    /// Starts counting the series of `family` (a header written by other means).
    pub fn count_family(&mut self, family: &str) {
        self.series.push((family.to_owned(), 0));
    }

    fn count_sample(&mut self) {
        if let Some((_, count)) = self.series.last_mut() {
            *count += 1;
        }
    }

    /// Appends one sample line already in the exposition format (without newline).
    pub fn append_sample_line(&mut self, line: &str) {
        self.count_sample();
        self.buf.push_str(line);
        self.buf.push('\n');
    }

    /// Appends `count` sample lines already in the exposition format (each ending in
    /// a newline).
    pub fn append_samples(&mut self, text: &str, count: usize) {
        if let Some((_, n)) = self.series.last_mut() {
            *n += count;
        }
        self.buf.push_str(text);
    }

    /// Series written per family so far, in the order the families started.
    pub fn series_counts(&self) -> &[(String, usize)] {
        &self.series
    }

    pub fn into_string(self) -> String {
        self.buf
    }

    pub fn as_str(&self) -> &str {
        &self.buf
    }
}

/// Renders `key="value"` pairs, comma-separated, values escaped, in the given order.
pub fn render_labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_label(&mut out, key, value);
    }
    out
}

fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust prints the shortest representation that round-trips, which Prometheus
        // parses exactly.
        let _infallible = write!(out, "{value}");
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_with_shared_and_extra_labels() {
        let labels = render_labels(&[("container", ""), ("id", "/a\"b"), ("pod", "p\\1\n")]);
        let mut out = Exposition::default();
        out.family("x_seconds_total", "Some help.", MetricType::Counter);
        out.sample("x_seconds_total", &labels, &[("cpu", "total")], 1.5);
        out.sample("x_seconds_total", "", &[], 0.000_001);
        out.family("up", "Line\nbreak", MetricType::Gauge);
        out.sample("up", "", &[("a", "b")], 1e21);
        assert_eq!(
            out.as_str(),
            "# HELP x_seconds_total Some help.\n\
             # TYPE x_seconds_total counter\n\
             x_seconds_total{container=\"\",id=\"/a\\\"b\",pod=\"p\\\\1\\n\",cpu=\"total\"} 1.5\n\
             x_seconds_total 0.000001\n\
             # HELP up Line\\nbreak\n\
             # TYPE up gauge\n\
             up{a=\"b\"} 1000000000000000000000\n"
        );
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        let mut out = Exposition::default();
        out.sample("a", "", &[], f64::NAN);
        out.sample("b", "", &[], f64::INFINITY);
        out.sample("c", "", &[], f64::NEG_INFINITY);
        assert_eq!(out.as_str(), "a NaN\nb +Inf\nc -Inf\n");
    }
}
