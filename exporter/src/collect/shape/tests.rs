use std::{collections::HashMap, sync::Arc};

use super::*;
use crate::{
    collect::samples::RowLabels,
    cost::{Aggregation, MetricGroups},
    runtime::labels::ContainerLabels,
};

const POD: &str = "/kubepods/burstable/pod1";
const CPU: &str = "container_cpu_usage_seconds_total";
const RSS: &str = "container_memory_rss";

fn row(container: &str, id: &str, name: &str, ns: &str, pod: &str) -> Arc<RowLabels> {
    RowLabels::new(ContainerLabels {
        container: container.to_owned(),
        id: id.to_owned(),
        image: String::new(),
        name: name.to_owned(),
        namespace: ns.to_owned(),
        pod: pod.to_owned(),
    })
}

/// root, pod p1 (3.5) with containers c1 (1.0) and c2 (2.5), container c3 (4.0) of
/// p2 without its pod row; memory for c1 only.
fn set() -> SampleSet {
    let mut set = SampleSet::default();
    set.family(CPU, "CPU.", MetricType::Counter);
    let c1 = row("a", &format!("{POD}/c1"), "c1", "ns", "p1");
    for (labels, v) in [
        (row("", "/", "", "", ""), 10.0),
        (row("", POD, "", "ns", "p1"), 3.5),
        (Arc::clone(&c1), 1.0),
        (row("b", &format!("{POD}/c2"), "c2", "ns", "p1"), 2.5),
        (
            row("c", "/kubepods/burstable/pod2/c3", "c3", "ns", "p2"),
            4.0,
        ),
    ] {
        set.sample(CPU, Some(&labels), &[("cpu", "total")], v);
    }
    set.family(RSS, "RSS.", MetricType::Gauge);
    set.sample(RSS, Some(&c1), &[], 7.0);
    set
}

fn line(labels: &str, value: &str) -> String {
    format!("{CPU}{{{labels},cpu=\"total\"}} {value}\n")
}

fn text_row(container: &str, id: &str, name: &str, ns: &str, pod: &str) -> String {
    format!(
        "container=\"{container}\",id=\"{id}\",image=\"\",name=\"{name}\",namespace=\"{ns}\",pod=\"{pod}\""
    )
}

#[test]
fn pod_level_sums_containers_with_the_pod_row_labels() {
    let shaping = Shaping {
        aggregation: Aggregation {
            default: Level::Pod,
            per_group: HashMap::from([("memory", Level::Container)]),
        },
        ..Shaping::default()
    };
    let mut set = set();
    let dropped = apply(
        &shaping,
        &mut set,
        &mut aggregate::NamespaceCarry::default(),
    );
    let out = set.to_text();
    assert!(dropped.is_empty());
    assert!(
        out.contains(&line(&text_row("", POD, "", "ns", "p1"), "3.5")),
        "{out}"
    );
    assert!(
        out.contains(&line(
            &text_row("", "/kubepods/burstable/pod2", "", "ns", "p2"),
            "4"
        )),
        "{out}"
    );
    assert!(out.contains("id=\"/\",image"), "root kept: {out}");
    assert!(
        !out.contains("name=\"c1\",namespace=\"ns\",pod=\"p1\",cpu"),
        "{out}"
    );
    assert!(
        out.contains("container_memory_rss{container=\"a\""),
        "memory stays per container: {out}"
    );
    assert_eq!(out.matches("container_cpu_usage_seconds_total{").count(), 3);

    let ns = Shaping {
        aggregation: Aggregation {
            default: Level::Namespace,
            ..Aggregation::default()
        },
        ..Shaping::default()
    };
    let mut set = self::set();
    apply(&ns, &mut set, &mut aggregate::NamespaceCarry::default());
    let out = set.to_text();
    assert!(
        out.contains(&line(&text_row("", "", "", "ns", ""), "7.5")),
        "{out}"
    );
}

#[test]
fn budget_caps_exactly_dropping_least_cpu_first() {
    let shaping = Shaping {
        max_series_per_family: 3,
        ..Shaping::default()
    };
    let mut set = set();
    let dropped = apply(
        &shaping,
        &mut set,
        &mut aggregate::NamespaceCarry::default(),
    );
    let out = set.to_text();
    assert_eq!(out.matches("container_cpu_usage_seconds_total{").count(), 3);
    assert_eq!(dropped, vec![(CPU.to_owned(), 2)]);
    // Root and pod rows stay; c1 (1.0) and c2 (2.5) go, c3 (4.0) stays.
    assert!(out.contains("id=\"/\""), "{out}");
    assert!(out.contains(&text_row("", POD, "", "ns", "p1")), "{out}");
    assert!(out.contains("pod2/c3\""), "{out}");
    assert!(!out.contains("c2\""), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with(RSS)).count(),
        1,
        "{out}"
    );
}

#[test]
fn disabled_groups_are_left_out_and_counted() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let shaping = Shaping {
        groups: MetricGroups::from_lists(&[], &s(&["memory"])).unwrap(),
        ..Shaping::default()
    };
    let mut shaper = Shaper::default();
    let mut set = set();
    shaper.shape(&shaping, &mut set);
    assert_eq!(set.series_counts(), [(CPU.to_owned(), 5)]);
    assert!(!set.to_text().contains(RSS));
    let mut own = SampleSet::default();
    shaper.write_self_metrics(false, &mut own);
    assert!(
        own.to_text()
            .contains("kadvisor_series{family=\"container_cpu_usage_seconds_total\"} 5\n")
    );
    // A pass that changes nothing leaves the set as it was.
    let loose = Shaping {
        max_series_per_family: 100,
        ..Shaping::default()
    };
    let before = self::set().to_text();
    let mut set = self::set();
    assert!(apply(&loose, &mut set, &mut aggregate::NamespaceCarry::default()).is_empty());
    assert_eq!(set.to_text(), before);
}

#[test]
fn pod_rows_only_leaves_out_rows_of_no_pod_as_the_stack_drops_them() {
    let shaping = Shaping {
        groups: MetricGroups::all(),
        pod_rows_only: true,
        ..Shaping::default()
    };
    let mut set = set();
    Shaper::default().shape(&shaping, &mut set);
    let out = set.to_text();
    assert!(!out.contains("id=\"/\""), "the root row has no pod: {out}");
    assert!(out.contains(&text_row("", POD, "", "ns", "p1")), "{out}");
    assert_eq!(set.series_counts()[0], (CPU.to_owned(), 4));
}

#[test]
fn a_pods_counter_keeps_an_expired_containers_count() {
    // c1 (1.0 of CPU) has been removed and its row expired; the pod row (3.5, the
    // pod cgroup's hierarchical counter) still holds it. Summing the container rows
    // made the pod's counter fall from 3.5 to 2.5, and the namespace's from 7.5 to 6.5.
    let expired = || {
        let mut set = SampleSet::default();
        set.family(CPU, "CPU.", MetricType::Counter);
        for (labels, v) in [
            (row("", POD, "", "ns", "p1"), 3.5),
            (row("b", &format!("{POD}/c2"), "c2", "ns", "p1"), 2.5),
            (
                row("c", "/kubepods/burstable/pod2/c3", "c3", "ns", "p2"),
                4.0,
            ),
        ] {
            set.sample(CPU, Some(&labels), &[("cpu", "total")], v);
        }
        // A gauge still sums the containers that exist.
        set.family(RSS, "RSS.", MetricType::Gauge);
        set.sample(RSS, Some(&row("", POD, "", "ns", "p1")), &[], 9.0);
        set.sample(
            RSS,
            Some(&row("b", &format!("{POD}/c2"), "c2", "ns", "p1")),
            &[],
            7.0,
        );
        set
    };
    let level = |default| Shaping {
        aggregation: Aggregation {
            default,
            ..Aggregation::default()
        },
        ..Shaping::default()
    };
    let mut set = expired();
    apply(
        &level(Level::Pod),
        &mut set,
        &mut aggregate::NamespaceCarry::default(),
    );
    let out = set.to_text();
    assert!(
        out.contains(&line(&text_row("", POD, "", "ns", "p1"), "3.5")),
        "{out}"
    );
    assert!(
        out.contains(&line(
            &text_row("", "/kubepods/burstable/pod2", "", "ns", "p2"),
            "4"
        )),
        "a pod without its own row keeps its containers' sum: {out}"
    );
    assert!(
        out.contains(&format!(
            "{RSS}{{{}}} 7\n",
            text_row("", POD, "", "ns", "p1")
        )),
        "{out}"
    );
    let mut set = expired();
    apply(
        &level(Level::Namespace),
        &mut set,
        &mut aggregate::NamespaceCarry::default(),
    );
    let out = set.to_text();
    assert!(
        out.contains(&line(&text_row("", "", "", "ns", ""), "7.5")),
        "{out}"
    );
}

#[test]
fn a_namespaces_counter_keeps_the_count_of_a_pod_whose_rows_expired() {
    // Scrape after scrape through one shaper, as the collector runs it. Summing the
    // pods that are still there made "ns" fall from 7.5 to 3.6 when p2's rows expired.
    let shaping = Shaping {
        aggregation: Aggregation {
            default: Level::Namespace,
            ..Aggregation::default()
        },
        ..Shaping::default()
    };
    let p2 = "/kubepods/burstable/pod2";
    let p3 = "/kubepods/burstable/pod3";
    let mut shaper = Shaper::default();
    let mut scrape = |rows: &[(Arc<RowLabels>, f64)]| {
        let mut set = SampleSet::default();
        set.family(CPU, "CPU.", MetricType::Counter);
        for (labels, v) in rows {
            set.sample(CPU, Some(labels), &[("cpu", "total")], *v);
        }
        shaper.shape(&shaping, &mut set);
        set.to_text()
    };
    let ns = |value: &str| line(&text_row("", "", "", "ns", ""), value);
    let p1_own = |v| (row("", POD, "", "ns", "p1"), v);
    let p2_container = (row("c", &format!("{p2}/c3"), "c3", "ns", "p2"), 4.0);
    let other = (row("d", "/kubepods/pod9/c9", "c9", "other", "p9"), 2.0);

    let out = scrape(&[p1_own(3.5), p2_container.clone(), other.clone()]);
    assert!(out.contains(&ns("7.5")), "{out}");
    // p2 is gone (its rows expired): the namespace keeps its 4.0.
    let out = scrape(&[p1_own(3.6), other.clone()]);
    assert!(
        out.contains(&ns("7.6")),
        "an expired pod's count is kept: {out}"
    );
    // p1 goes too and a new pod p3 starts from zero.
    let out = scrape(&[(row("", p3, "", "ns", "p3"), 1.0), other.clone()]);
    assert!(out.contains(&ns("8.6")), "{out}");
    assert!(
        out.contains(&line(&text_row("", "", "", "other", ""), "2")),
        "other namespaces keep their own sum: {out}"
    );
    // A namespace with no row left ends its series; one that comes back later starts
    // a new one (what it carried is not kept for ever).
    let out = scrape(std::slice::from_ref(&other));
    assert!(!out.contains("namespace=\"ns\""), "{out}");
    let out = scrape(&[(row("", p3, "", "ns", "p3"), 0.5), other]);
    assert!(out.contains(&ns("0.5")), "{out}");
}
