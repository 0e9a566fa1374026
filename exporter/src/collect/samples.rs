//! The structured sample set of one scrape: families of samples, each sample the row
//! it belongs to (its structured labels, shared), its extra labels and its value.
//!
//! Collectors write here; shaping (`shape`) works on it without parsing text; the
//! text exposition is rendered from it once (`render`). It is public so that other
//! outputs (a JSON endpoint) can serialize the same samples.
use std::{ops::Range, sync::Arc};

use crate::runtime::labels::ContainerLabels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A row's labels, shared by every sample of the row. The exposition text of the
/// label set is made at most once per scrape, by `render` (never parsed back).
#[derive(Debug, Default)]
pub struct RowLabels {
    pub labels: ContainerLabels,
    pub(super) rendered: std::sync::OnceLock<String>,
}

impl RowLabels {
    pub fn new(labels: ContainerLabels) -> Arc<Self> {
        Arc::new(Self {
            labels,
            rendered: std::sync::OnceLock::new(),
        })
    }
}

/// One sample: its row (`None`: a sample without the container labels, such as
/// `machine_*` and `kadvisor_*`), its extra label pairs and its value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub row: Option<Arc<RowLabels>>,
    /// Range of this sample's pairs in `SampleSet::pairs`.
    extra: Range<u32>,
    pub value: f64,
}

/// One family: name, help, type and its samples in order.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

/// A key or value in `SampleSet::text`.
type Span = Range<u32>;

/// Every family of one scrape, in the order they were written.
#[derive(Debug, Default)]
pub struct SampleSet {
    families: Vec<Family>,
    /// Extra label pairs of all samples (key span, value span into `text`), raw
    /// (unescaped): one arena instead of an allocation per pair.
    pairs: Vec<(Span, Span)>,
    text: String,
    /// The scrape's row count: the room a family's samples get at its first row
    /// sample, so a family of 1,000 rows is one allocation, not ten doublings.
    rows: usize,
}

fn span(text: &mut String, s: &str) -> Span {
    let start = u32::try_from(text.len()).unwrap_or(u32::MAX);
    text.push_str(s);
    start..u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl SampleSet {
    /// An empty set for a scrape of `rows` rows.
    pub fn for_rows(rows: usize) -> Self {
        Self {
            rows,
            ..Self::default()
        }
    }

    /// Empties the set, keeping its buffers for the next scrape at the size the
    /// last one used (a burst of rows does not pin its peak memory).
    pub fn clear(&mut self) {
        let (families, pairs, text) = (self.families.len(), self.pairs.len(), self.text.len());
        self.families.clear();
        self.families.shrink_to(families);
        self.pairs.clear();
        self.pairs.shrink_to(pairs);
        self.text.clear();
        self.text.shrink_to(text);
    }

    /// Starts a family. All its samples follow before the next family starts.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) {
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        });
    }

    /// One sample of the current family (`name` is the family's: kept at the call
    /// sites so each line reads like the sample it writes).
    pub fn sample(
        &mut self,
        name: &str,
        row: Option<&Arc<RowLabels>>,
        extra: &[(&str, &str)],
        value: f64,
    ) {
        debug_assert_eq!(
            self.families.last().map(|f| f.name.as_str()),
            Some(name),
            "sample outside its family"
        );
        let extra = self.push_pairs(extra.iter().copied());
        if let Some(family) = self.families.last_mut() {
            // Host-wide families (`machine_*`, `kadvisor_*`) keep to their few samples.
            if row.is_some() && family.samples.capacity() == 0 {
                family.samples.reserve(self.rows);
            }
            family.samples.push(Sample {
                row: row.cloned(),
                extra,
                value,
            });
        }
    }

    fn push_pairs<'p>(&mut self, pairs: impl Iterator<Item = (&'p str, &'p str)>) -> Range<u32> {
        let start = u32::try_from(self.pairs.len()).unwrap_or(u32::MAX);
        for (key, value) in pairs {
            let key = span(&mut self.text, key);
            let value = span(&mut self.text, value);
            self.pairs.push((key, value));
        }
        start..u32::try_from(self.pairs.len()).unwrap_or(u32::MAX)
    }

    fn str_of(&self, span: &Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// The extra label pairs of `sample` (raw values), in order.
    pub fn extra<'a>(&'a self, sample: &Sample) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.pairs
            .get(sample.extra.start as usize..sample.extra.end as usize)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (self.str_of(k), self.str_of(v)))
    }

    /// A sample of the current set with different row and value (aggregation):
    /// its extra pairs are shared, not copied.
    pub fn derived(sample: &Sample, row: Option<Arc<RowLabels>>, value: f64) -> Sample {
        Sample {
            row,
            extra: sample.extra.clone(),
            value,
        }
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The families, to rewrite (shaping).
    pub fn families_mut(&mut self) -> &mut Vec<Family> {
        &mut self.families
    }

    /// Series per family, in order (`kadvisor_series`).
    pub fn series_counts(&self) -> Vec<(String, usize)> {
        self.families
            .iter()
            .map(|f| (f.name.clone(), f.samples.len()))
            .collect()
    }

    /// The set rendered alone (tests and small outputs).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        super::render::render(self, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_their_row_and_extra_labels_structured() {
        let row = RowLabels::new(ContainerLabels {
            pod: "p".to_owned(),
            ..ContainerLabels::for_path("/a")
        });
        let mut set = SampleSet::default();
        set.family("x_total", "X.", MetricType::Counter);
        set.sample(
            "x_total",
            Some(&row),
            &[("cpu", "total"), ("k", "v\"")],
            2.0,
        );
        set.sample("x_total", None, &[], 1.0);
        let family = &set.families()[0];
        assert_eq!(family.samples.len(), 2);
        let first = &family.samples[0];
        assert_eq!(first.row.as_ref().unwrap().labels.pod, "p");
        assert_eq!(
            set.extra(first).collect::<Vec<_>>(),
            [("cpu", "total"), ("k", "v\"")]
        );
        assert_eq!(set.extra(&family.samples[1]).count(), 0);
        assert_eq!(set.series_counts(), [("x_total".to_owned(), 2)]);
        set.clear();
        assert!(set.families().is_empty());
    }
}
