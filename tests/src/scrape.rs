//! Reading a scrape the way a user reads it: by metric name and labels.
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed text-format scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable line: {l}")))
            .collect();
        Self { text, samples }
    }

    /// Samples of metric `name` whose labels include every `(key, value)` of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample matching; panics when there is none or several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).as_slice() {
            [one] => one.value,
            [] => panic!("no sample {name}{labels:?} in scrape:\n{}", self.text),
            many => panic!("{} samples match {name}{labels:?}: {many:?}", many.len()),
        }
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name: name.to_owned(),
                labels: BTreeMap::new(),
                value: parse_value(value)?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        let start = chars.peek()?.0;
        if rest[start..].starts_with('}') {
            let value = rest[start + 1..].trim();
            return Some(Sample {
                name: name.to_owned(),
                labels,
                value: parse_value(value.split(' ').next()?)?,
            });
        }
        let eq = rest[start..].find("=\"")? + start;
        let key = rest[start..eq].trim_start_matches(',').to_owned();
        while chars.peek()?.0 < eq + 2 {
            chars.next();
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek()?.1 == ',' {
            chars.next();
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let s =
            Scrape::parse("# HELP x y\nx{a=\"1\",b=\"q\\\"u\\\\o,te}\"} 2.5\nup 1\n".to_owned());
        assert_eq!(s.value("x", &[("a", "1")]), 2.5);
        assert_eq!(s.find("x", &[])[0].labels["b"], "q\"u\\o,te}");
        assert_eq!(s.value("up", &[]), 1.0);
    }
}
