//! The adapter between one collection and the snapshot: the samples of the body that
//! `/metrics` serves, as (family, labels, value).
//!
//! The scrape renders straight into exposition text today, so this reads that text
//! back. It is the only place that knows where samples come from: when the scrape
//! yields structured samples, `Samples::parse` is replaced by a view of those and
//! nothing else in `ui` changes.
use std::borrow::Cow;

/// One sample: family name, label pairs in exposition order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub family: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, `""` when absent (as Prometheus treats it).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_ref())
    }
}

/// The samples of one collection.
pub struct Samples<'a> {
    text: &'a str,
}

impl<'a> Samples<'a> {
    /// Samples of an exposition body (text format 0.0.4).
    pub fn parse(text: &'a str) -> Self {
        Self { text }
    }

    /// The samples of the families for which `wanted` holds, in body order. Lines
    /// that do not parse are skipped (the body is our own; a family the UI does not
    /// know is not an error).
    pub fn of(&self, wanted: impl Fn(&str) -> bool) -> impl Iterator<Item = Sample<'a>> {
        self.text.lines().filter_map(move |line| {
            if line.starts_with('#') {
                return None;
            }
            let end = line.find(['{', ' '])?;
            let family = &line[..end];
            if !wanted(family) {
                return None;
            }
            parse_line(family, &line[end..])
        })
    }
}

/// Parses `{k="v",...} value` or ` value` (what follows the family name).
fn parse_line<'a>(family: &'a str, rest: &'a str) -> Option<Sample<'a>> {
    let mut labels = Vec::new();
    let mut rest = rest;
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = rest.split_once("=\"")?;
            let (value, after_value) = unescape_value(after_key)?;
            labels.push((key, value));
            rest = after_value.strip_prefix(',').unwrap_or(after_value);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        family,
        labels,
        value,
    })
}

/// Reads a label value up to its closing quote, undoing `\\`, `\"` and `\n`.
/// Returns the value and the text after the quote.
fn unescape_value(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = owned.map_or(Cow::Borrowed(&text[..i]), Cow::Owned);
                return Some((value, &text[i + 1..]));
            }
            b'\\' => {
                let buf = owned.get_or_insert_with(|| text[..i].to_owned());
                match bytes.get(i + 1)? {
                    b'n' => buf.push('\n'),
                    b'\\' => buf.push('\\'),
                    b'"' => buf.push('"'),
                    _ => return None,
                }
                i += 2;
            }
            _ => {
                let len = text[i..].chars().next()?.len_utf8();
                if let Some(buf) = &mut owned {
                    buf.push_str(&text[i..i + len]);
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
# TYPE container_cpu_usage_seconds_total counter\n\
container_cpu_usage_seconds_total{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\",cpu=\"total\"} 2.5\n\
container_spec_memory_limit_bytes{id=\"/q\\\"uote\\\\d\\n\"} 1e+06\n\
machine_cpu_cores{boot_id=\"b\"} 2\n\
kadvisor_map_entries 3\n";

    #[test]
    fn reads_families_labels_and_values() {
        let samples: Vec<Sample<'_>> = Samples::parse(BODY)
            .of(|family| family != "kadvisor_map_entries")
            .collect();
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].family, "container_cpu_usage_seconds_total");
        assert_eq!(samples[0].label("id"), "/a");
        assert_eq!(samples[0].label("cpu"), "total");
        assert_eq!(samples[0].label("absent"), "");
        assert!((samples[0].value - 2.5).abs() < f64::EPSILON);
        assert_eq!(samples[1].label("id"), "/q\"uote\\d\n");
        assert!((samples[1].value - 1e6).abs() < f64::EPSILON);
        assert_eq!(samples[2].family, "machine_cpu_cores");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let body = "a{id=\"unterminated} 1\nb{id=\"x\"} not-a-number\nc{id=\"\\q\"} 1\nd 4\n";
        let samples: Vec<Sample<'_>> = Samples::parse(body).of(|_| true).collect();
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].family, "d");
    }
}
