//! The last stage: the sample set rendered once, in the Prometheus text format
//! 0.0.4, into the scrape's body buffer.
//!
//! Container rows carry the same six labels in every family, so each row's label set
//! is escaped and rendered once per scrape (kept in its `RowLabels`) and reused by
//! every family, instead of a label pair per sample.
use std::fmt::Write as _;

use super::samples::{RowLabels, SampleSet};
use crate::runtime::labels::ContainerLabels;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `set` to `out`.
pub fn render(set: &SampleSet, out: &mut String) {
    for family in set.families() {
        let _infallible = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _infallible = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        for sample in &family.samples {
            out.push_str(&family.name);
            let labels = sample.row.as_deref().map(row_labels).unwrap_or_default();
            let mut extra = set.extra(sample).peekable();
            if !labels.is_empty() || extra.peek().is_some() {
                out.push('{');
                out.push_str(labels);
                let mut first = labels.is_empty();
                for (key, value) in extra {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    push_label(out, key, value);
                }
                out.push('}');
            }
            out.push(' ');
            push_value(out, sample.value);
            out.push('\n');
        }
    }
}

/// A row's label set, rendered at its first use in this scrape.
fn row_labels(row: &RowLabels) -> &str {
    row.rendered
        .get_or_init(|| render_container_labels(&row.labels))
}

/// The six container labels, in cAdvisor's (alphabetical) order.
pub fn render_container_labels(labels: &ContainerLabels) -> String {
    let pairs = [
        ("container", labels.container.as_str()),
        ("id", &labels.id),
        ("image", &labels.image),
        ("name", &labels.name),
        ("namespace", &labels.namespace),
        ("pod", &labels.pod),
    ];
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
    use crate::collect::samples::MetricType;

    #[test]
    fn writes_families_with_shared_and_extra_labels() {
        let row = RowLabels::new(ContainerLabels {
            pod: "p\\1\n".to_owned(),
            ..ContainerLabels::for_path("/a\"b")
        });
        let mut set = SampleSet::default();
        set.family("x_seconds_total", "Some help.", MetricType::Counter);
        set.sample("x_seconds_total", Some(&row), &[("cpu", "total")], 1.5);
        set.sample("x_seconds_total", None, &[], 0.000_001);
        set.family("up", "Line\nbreak", MetricType::Gauge);
        set.sample("up", None, &[("a", "b")], 1e21);
        assert_eq!(
            set.to_text(),
            "# HELP x_seconds_total Some help.\n\
             # TYPE x_seconds_total counter\n\
             x_seconds_total{container=\"\",id=\"/a\\\"b\",image=\"\",name=\"\",namespace=\"\",pod=\"p\\\\1\\n\",cpu=\"total\"} 1.5\n\
             x_seconds_total 0.000001\n\
             # HELP up Line\\nbreak\n\
             # TYPE up gauge\n\
             up{a=\"b\"} 1000000000000000000000\n"
        );
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        let mut set = SampleSet::default();
        set.family("a", "A.", MetricType::Gauge);
        set.sample("a", None, &[], f64::NAN);
        set.sample("a", None, &[], f64::INFINITY);
        set.sample("a", None, &[], f64::NEG_INFINITY);
        assert!(set.to_text().ends_with("a NaN\na +Inf\na -Inf\n"));
    }
}
