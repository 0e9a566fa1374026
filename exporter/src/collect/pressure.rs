//! Pressure stall information per cgroup, from the cgroup v2 `cpu.pressure`,
//! `memory.pressure` and `io.pressure` files (cumulative µs). `waiting` is the
//! `some` line (at least one task stalled), `stalled` the `full` line (every non-idle
//! task stalled), as cAdvisor maps them. A file or line the kernel lacks (no PSI, or
//! `cpu` `full` before 5.13) leaves its series out.
use super::{
    Row, ScrapeContext,
    samples::{MetricType, SampleSet},
};
use crate::cgroup::files::{Pressure, parse_pressure, read_optional};

const RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// PSI totals of one cgroup, indexed like `RESOURCES`.
pub type RowPressure = [Option<Pressure>; 3];

pub fn collect(ctx: &ScrapeContext<'_>, out: &mut SampleSet) {
    let mut rows: Vec<(&Row, RowPressure)> = Vec::with_capacity(ctx.rows.len());
    for (index, row) in ctx.rows.iter().enumerate() {
        let Some(dir) = ctx.hierarchies.v2_dir(&row.path) else {
            continue;
        };
        let mut partial = None;
        let read = || {
            let mut pressure = RowPressure::default();
            let mut complete = true;
            for (slot, resource) in pressure.iter_mut().zip(RESOURCES) {
                match read_optional(&dir.join(format!("{resource}.pressure"))) {
                    Ok(text) => *slot = text.as_deref().and_then(parse_pressure),
                    Err(e) => {
                        ctx.failed("pressure", &e);
                        complete = false;
                    }
                }
            }
            if complete {
                return Some(pressure);
            }
            // A row with a failed file is served once and not kept: re-read next scrape.
            partial = Some(pressure);
            None
        };
        let pressure = ctx.row_value(index, |v| &mut v.pressure, read);
        rows.push((row, pressure.or(partial).unwrap_or_default()));
    }
    write(out, &rows);
}

pub fn write(out: &mut SampleSet, rows: &[(&Row, RowPressure)]) {
    for (index, resource) in RESOURCES.iter().enumerate() {
        let what = match *resource {
            "cpu" => "CPU congestion",
            "memory" => "memory congestion",
            _ => "IO congestion",
        };
        for (kind, help, field) in [
            (
                "waiting",
                "Total time duration tasks in the container have waited due to",
                (|p: &Pressure| Some(p.some_us)) as fn(&Pressure) -> Option<u64>,
            ),
            (
                "stalled",
                "Total time duration no tasks in the container could make progress due to",
                |p: &Pressure| p.full_us,
            ),
        ] {
            let name = format!("container_pressure_{resource}_{kind}_seconds_total");
            out.family(&name, &format!("{help} {what}."), MetricType::Counter);
            for (row, pressure) in rows {
                if let Some(us) = pressure[index].as_ref().and_then(field) {
                    out.sample(&name, Some(&row.labels), &[], us as f64 / 1e6);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs};

    use super::*;
    use crate::cgroup::Hierarchies;

    #[test]
    fn some_is_waiting_full_is_stalled_and_missing_lines_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "").unwrap();
        fs::create_dir(dir.path().join("c")).unwrap();
        fs::write(
            dir.path().join("c/cpu.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("c/io.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=300\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=100\n",
        )
        .unwrap();
        let h = Hierarchies::from_parts(Some(dir.path().to_owned()), HashMap::new()).unwrap();
        let path = h.v2_dir("/c").unwrap();
        let read = |r: &str| {
            read_optional(&path.join(format!("{r}.pressure")))
                .unwrap()
                .as_deref()
                .and_then(parse_pressure)
        };
        let row = Row::new(1, "/c");
        let pressure = [read("cpu"), read("memory"), read("io")];
        let mut out = SampleSet::default();
        write(&mut out, &[(&row, pressure)]);
        let text = out.to_text();
        let sample = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        assert_eq!(
            sample("container_pressure_cpu_waiting_seconds_total").as_deref(),
            Some("2.5")
        );
        assert_eq!(
            sample("container_pressure_cpu_stalled_seconds_total"),
            None,
            "{text}"
        );
        assert_eq!(
            sample("container_pressure_memory_waiting_seconds_total"),
            None
        );
        assert_eq!(
            sample("container_pressure_io_waiting_seconds_total").as_deref(),
            Some("0.0003")
        );
        assert_eq!(
            sample("container_pressure_io_stalled_seconds_total").as_deref(),
            Some("0.0001")
        );
        assert!(text.contains("# TYPE container_pressure_memory_stalled_seconds_total counter"));
    }
}
