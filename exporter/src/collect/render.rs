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
    } else if let Some(integer) = exact_integer(value) {
        // Most samples are counts and byte sizes: the same digits `{value}` prints,
        // without the float formatter.
        push_integer(out, integer);
    } else {
        // Rust prints the shortest representation that round-trips, which Prometheus
        // parses exactly.
        let _infallible = write!(out, "{value}");
    }
}

/// `value` as an integer when it is one that `f64` holds exactly (|v| < 2^53), so
/// its decimal digits are what `{value}` prints; `-0.0` (printed "-0") is not.
fn exact_integer(value: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let exact = value.trunc() == value
        && value.abs() < EXACT
        && !(value == 0.0 && value.is_sign_negative());
    // The cast is exact: an integral value below 2^53 in magnitude.
    #[allow(clippy::cast_possible_truncation)]
    exact.then_some(value as i64)
}

fn push_integer(out: &mut String, value: i64) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        // A digit 0..=9: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (rest % 10) as u8;
        digits[at] = b'0' + digit;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push('-');
    }
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
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
    fn integers_print_as_the_float_formatter_prints_them() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            9.0,
            10.0,
            4096.0,
            -123_456_789.0,
            1e15,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_993.0,
            1.8446744073709552e19,
            1e21,
            0.5,
            2.25,
            1e-7,
        ];
        for value in values {
            let mut out = String::new();
            push_value(&mut out, value);
            assert_eq!(out, format!("{value}"), "{value:?}");
        }
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
