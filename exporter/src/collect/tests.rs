//! The whole scrape on fixture trees and fake kernel maps.
use std::{
    collections::HashMap,
    fs,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kadvisor_common::{CgroupCpu, CgroupCrashes, CgroupNet, KernelError};

use super::*;
use crate::bpf::ProgramStats;

/// No kernel data, no programs: only the cgroupfs and host families.
struct NoKernel;

impl KernelSource for NoKernel {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
        Ok(HashMap::new())
    }
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
        Ok(HashMap::new())
    }
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
        Ok(Vec::new())
    }
    fn program_stats(&self) -> Vec<ProgramStats> {
        Vec::new()
    }
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
        Ok(HashMap::new())
    }
}

/// A fixture cgroup v2 tree: `<tempdir>/unified` with `cgroups` created under it and
/// `controllers` in its root `cgroup.controllers`. Returns the tempdir (keep it alive)
/// and the tree's root.
fn unified_tree(cgroups: &[&str], controllers: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let unified = dir.path().join("unified");
    fs::create_dir_all(&unified).unwrap();
    for cgroup in cgroups {
        fs::create_dir_all(unified.join(cgroup)).unwrap();
    }
    fs::write(unified.join("cgroup.controllers"), controllers).unwrap();
    (dir, unified)
}

#[test]
fn hybrid_scrape_reads_memory_from_v1_and_reports_a_broken_host() {
    let dir = tempfile::tempdir().unwrap();
    let unified = dir.path().join("unified");
    let memory = dir.path().join("memory");
    fs::create_dir_all(unified.join("a")).unwrap();
    fs::write(unified.join("cgroup.controllers"), "").unwrap();
    fs::create_dir_all(memory.join("a")).unwrap();
    fs::write(
        memory.join("a/memory.stat"),
        "total_rss 10\ntotal_inactive_file 3\n",
    )
    .unwrap();
    fs::write(memory.join("a/memory.usage_in_bytes"), "100\n").unwrap();
    let hierarchies = Hierarchies::from_parts(
        Some(unified.clone()),
        HashMap::from([("memory".to_owned(), memory)]),
    )
    .unwrap();
    let collector = Collector::new(Box::new(NoKernel), CgroupTree::at(unified), hierarchies)
        .unwrap()
        .with_host(machine::HostPaths::new(dir.path().join("no-such-host")));

    let text = collector.scrape().unwrap();

    let row = "{container=\"\",id=\"/a\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}";
    for line in [
        format!("container_memory_usage_bytes{row} 100\n"),
        format!("container_memory_working_set_bytes{row} 97\n"),
        format!("container_memory_rss{row} 10\n"),
        "machine_scrape_error 1\n".to_owned(),
        "container_scrape_error 0\n".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    assert!(!text.contains("machine_cpu_cores{"), "{text}");
    assert!(
        !text.contains("container_oom_events_total"),
        "no OOM hook attached: the family is left out\n{text}"
    );
}

/// Per-cgroup maps that `forget` really empties, shared with the test.
#[derive(Default)]
struct Maps {
    cpu: HashMap<u64, CgroupCpu>,
    net: HashMap<u64, CgroupNet>,
    oom: HashMap<u64, u64>,
    forgotten: Vec<u64>,
}

struct MapKernel(Arc<Mutex<Maps>>);

impl MapKernel {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap()
    }
}

impl KernelSource for MapKernel {
    fn cgroup_cpu(&self) -> Result<HashMap<u64, CgroupCpu>, BpfError> {
        Ok(self.maps().cpu.clone())
    }
    fn cgroup_crashes(&self) -> Result<HashMap<u64, CgroupCrashes>, BpfError> {
        Ok(HashMap::new())
    }
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNet>, BpfError> {
        Ok(self.maps().net.clone())
    }
    fn cgroup_oom_kills(&self) -> Result<HashMap<u64, u64>, BpfError> {
        Ok(self.maps().oom.clone())
    }
    fn kernel_errors(&self) -> Result<Vec<(KernelError, u64)>, BpfError> {
        Ok(Vec::new())
    }
    fn program_stats(&self) -> Vec<ProgramStats> {
        [
            ("oom_kill_signal", "oom"),
            ("mark_victim", "oom"),
            ("socket", "socket"),
        ]
        .into_iter()
        .map(|(name, family)| ProgramStats {
            name,
            family,
            attached: true,
            run_count: 0,
            run_time_ns: 0,
        })
        .collect()
    }
    fn forget(&self, id: u64) -> Result<(), BpfError> {
        let mut maps = self.maps();
        maps.cpu.remove(&id);
        maps.net.remove(&id);
        maps.oom.remove(&id);
        maps.forgotten.push(id);
        Ok(())
    }
}

fn sample(text: &str, name: &str, id: &str, extra: &str) -> Option<f64> {
    let row = format!(
        "{name}{{container=\"\",id=\"{id}\",image=\"\",name=\"\",namespace=\"\",pod=\"\"{extra}}} "
    );
    let line = text.lines().find(|l| l.starts_with(&row))?;
    line[row.len()..].parse().ok()
}

#[test]
fn retirement_folds_oom_kills_and_socket_traffic_into_the_parent() {
    use std::os::unix::fs::MetadataExt as _;
    let (dir, unified) = unified_tree(&["pod/c"], "");
    let pod = fs::metadata(unified.join("pod")).unwrap().ino();
    let c = fs::metadata(unified.join("pod/c")).unwrap().ino();
    let maps = Arc::new(Mutex::new(Maps::default()));
    {
        let mut m = maps.lock().unwrap();
        let mut net = CgroupNet {
            rx_bytes: 1000,
            rx_packets: 10,
            ..CgroupNet::default()
        };
        net.tx_bytes[kadvisor_common::DEST_EXTERNAL as usize] = 300;
        net.tx_packets[kadvisor_common::DEST_EXTERNAL as usize] = 3;
        m.net.insert(c, net);
        m.net.insert(
            pod,
            CgroupNet {
                rx_bytes: 1,
                ..CgroupNet::default()
            },
        );
        m.oom.insert(c, 1);
        m.cpu.insert(
            c,
            CgroupCpu {
                runtime_ns: 2_000_000_000,
                ..CgroupCpu::default()
            },
        );
    }
    let hierarchies = Hierarchies::from_parts(Some(unified.clone()), HashMap::new()).unwrap();
    let collector = Collector::new(
        Box::new(MapKernel(maps.clone())),
        CgroupTree::at(unified.clone()),
        hierarchies,
    )
    .unwrap()
    .with_host(machine::HostPaths::new(dir.path().join("no-such-host")))
    .with_retention(Retention {
        grace: Duration::from_secs(3600),
        unknown_grace: Duration::from_secs(3600),
    })
    // Socket traffic is opt-in.
    .with_cost(crate::cost::CostControls {
        shaping: crate::cost::Shaping {
            groups: crate::cost::MetricGroups::all(),
            ..crate::cost::Shaping::default()
        },
        ..crate::cost::CostControls::default()
    });
    let oom = "container_oom_events_total";
    let rx = "container_socket_receive_bytes_total";
    let tx = "container_socket_transmit_bytes_total";
    // No CIDR configured: sent bytes are not split by destination (lean default).
    let ext = "";
    let check = |text: &str, id: &str, kills: f64, rx_bytes: f64, tx_bytes: f64| {
        assert_eq!(sample(text, oom, id, ""), Some(kills), "{id} oom\n{text}");
        assert_eq!(sample(text, rx, id, ""), Some(rx_bytes), "{id} rx\n{text}");
        assert_eq!(sample(text, tx, id, ext), Some(tx_bytes), "{id} tx\n{text}");
    };

    let text = collector.scrape().unwrap();
    check(&text, "/pod/c", 1.0, 1000.0, 300.0);
    check(&text, "/pod", 1.0, 1001.0, 300.0);

    // Removed: its row keeps the final values during the grace period.
    fs::remove_dir(unified.join("pod/c")).unwrap();
    let text = collector.scrape().unwrap();
    check(&text, "/pod/c", 1.0, 1000.0, 300.0);
    check(&text, "/pod", 1.0, 1001.0, 300.0);

    // Grace period over: the row is gone, the pod keeps the kill and the traffic,
    // and the map entries are deleted.
    {
        let mut reclaim = collector.reclaim.lock().unwrap();
        collector.sweep_locked(&mut reclaim, Instant::now() + Duration::from_secs(3601));
    }
    {
        let m = maps.lock().unwrap();
        assert_eq!(m.forgotten, [c]);
        assert!(!m.oom.contains_key(&c) && !m.net.contains_key(&c) && !m.cpu.contains_key(&c));
    }
    let text = collector.scrape().unwrap();
    assert_eq!(sample(&text, oom, "/pod/c", ""), None, "{text}");
    check(&text, "/pod", 1.0, 1001.0, 300.0);
    check(&text, "/", 1.0, 1001.0, 300.0);
    assert_eq!(
        sample(
            &text,
            "container_cpu_usage_seconds_total",
            "/pod",
            ",cpu=\"total\""
        ),
        Some(2.0)
    );

    // The pod goes too: everything moves on to the root.
    fs::remove_dir(unified.join("pod")).unwrap();
    collector.scrape().unwrap();
    {
        let mut reclaim = collector.reclaim.lock().unwrap();
        collector.sweep_locked(&mut reclaim, Instant::now() + Duration::from_secs(3601));
    }
    let text = collector.scrape().unwrap();
    assert_eq!(sample(&text, oom, "/pod", ""), None, "{text}");
    check(&text, "/", 1.0, 1001.0, 300.0);
    assert_eq!(maps.lock().unwrap().forgotten, [c, pod]);
}

#[test]
fn a_failed_kernel_exclusion_never_folds_the_cgroups_counters_into_its_parent() {
    // A container of an excluded namespace whose exclusion the kernel refuses (a full
    // denylist): its counters stay in the maps, where its ancestors' totals find
    // them. Folding them into the parent too counted them twice, and again at every
    // scrape that retried the exclusion (the pod's CPU grew by 2 s per scrape).
    let maps = Arc::new(Mutex::new(Maps::default()));
    maps.lock().unwrap().cpu.insert(
        7,
        CgroupCpu {
            runtime_ns: 2_000_000_000,
            ..CgroupCpu::default()
        },
    );
    let kernel = MapKernel(maps);
    let cost = crate::cost::CostControls {
        selection: crate::cost::Selection {
            exclude_namespaces: vec!["batch".to_owned()],
            ..crate::cost::Selection::default()
        },
        filter: Some(Arc::new(crate::bpf::CgroupFilter::failing())),
        ..crate::cost::CostControls::default()
    };
    let mut retired = crate::cgroup::RetiredTotals::default();
    for scrape in 0..3 {
        let mut labels = crate::runtime::labels::ContainerLabels::for_path("/pod/c");
        labels.namespace = "batch".to_owned();
        let mut rows = rows::Rows {
            rows: vec![Row::with_labels(7, "/pod/c", labels)],
            live: 1,
        };
        rows::select(&cost, &mut rows, &kernel, &mut retired, &|_| None);
        assert!(
            rows.rows.is_empty(),
            "scrape {scrape}: the excluded row is dropped"
        );
        assert_eq!(rows.live, 0);
        assert!(
            retired.is_empty(),
            "scrape {scrape}: folded although the kernel still counts it: {retired:?}"
        );
    }
}

/// A scrape stuck in a cgroupfs read (a hung mount, a kernel slow to generate a
/// file) must not stall discovery or the sweeper: they took the same locks as the
/// scrape for its whole duration, so new cgroups were not found (no rows, no runtime
/// lookups while a short-lived container existed) until the read returned.
///
/// Real cgroupfs cannot be made to hang on purpose here (no FUSE, no hung NFS), so
/// the tree is a fixture directory and the stall is a real blocking read: the row's
/// `memory.stat` is a FIFO, whose open blocks until the test opens it for writing.
/// Discovery is the real inotify watcher thread.
#[test]
fn a_scrape_stalled_in_a_cgroupfs_read_blocks_neither_discovery_nor_the_sweeper() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let (dir, unified) = unified_tree(&["stuck"], "memory\n");
    let fifo = unified.join("stuck/memory.stat");
    let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo does not keep the pointer.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let discovery = Arc::new(crate::cgroup::discovery::Discovery::default());
    discovery
        .spawn_watcher(CgroupTree::at(unified.clone()), Duration::from_secs(3600))
        .unwrap();
    let hierarchies = Hierarchies::from_parts(Some(unified.clone()), HashMap::new()).unwrap();
    let collector = Arc::new(
        Collector::new(
            Box::new(MapKernel(Arc::default())),
            CgroupTree::at(unified.clone()),
            hierarchies,
        )
        .unwrap()
        .with_host(machine::HostPaths::new(dir.path().join("no-such-host")))
        .with_discovery(Arc::clone(&discovery)),
    );

    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let scrape = std::thread::spawn({
        let collector = Arc::clone(&collector);
        move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            collector.scrape()
        }
    });
    // The scrape reaches the FIFO and blocks there (nothing writes it yet): its
    // thread waits in the kernel's FIFO open (`wait_for_partner`). Bounded for a
    // loaded machine; the checks below hold either way.
    let wchan = format!("/proc/self/task/{}/wchan", tid_rx.recv().unwrap());
    let waiting = Instant::now();
    while !fs::read_to_string(&wchan).is_ok_and(|w| w.contains("partner"))
        && waiting.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stalled_at_start = !scrape.is_finished();

    // While it is stalled: a new cgroup appears, and a sweep runs. Both are waited
    // for from threads, with a bound (generous: a loaded machine): before the fix
    // they blocked until the release.
    fs::create_dir(unified.join("new")).unwrap();
    let created = Instant::now();
    let discovered = std::thread::spawn({
        let discovery = Arc::clone(&discovery);
        move || loop {
            if discovery.state().live.contains_key("/new") {
                break created.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let sweep = std::thread::spawn({
        let collector = Arc::clone(&collector);
        move || collector.sweep()
    });
    while !(discovered.is_finished() && sweep.is_finished())
        && created.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (was_discovered, swept) = (discovered.is_finished(), sweep.is_finished());
    let still_stalled = !scrape.is_finished();

    // Release the read (whatever the outcome: non-blocking, there may be no
    // reader), then check. The writer's open already releases the scrape's blocked
    // open; its `pread` then fails (a FIFO) and it may close the FIFO before this
    // write, which then fails with EPIPE: that is a release too.
    if let Ok(mut writer) = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
    {
        let _ = std::io::Write::write_all(&mut writer, b"anon 4096\nfile 0\n");
    }
    let text = scrape.join().unwrap().unwrap();
    sweep.join().unwrap();
    let discovered = discovered.join().unwrap();
    assert!(stalled_at_start, "the scrape did not block on the FIFO");
    assert!(
        still_stalled,
        "the scrape must still be stalled while the checks run"
    );
    assert!(
        was_discovered,
        "a cgroup created during a stalled scrape was not discovered within 30 s (it was after {discovered:?}, once the scrape was released)"
    );
    assert!(swept, "a sweep waited for the stalled scrape");
    // Released, the stalled scrape completes (a FIFO cannot be `pread`: the memory
    // source of that row fails, counted; the rest is served).
    assert_eq!(
        sample(&text, "container_oom_events_total", "/stuck", ""),
        Some(0.0),
        "{text}"
    );
    // The next scrape has the new cgroup's row (the file is a plain one now).
    fs::remove_file(&fifo).unwrap();
    fs::write(&fifo, "anon 4096\nfile 0\n").unwrap();
    let text = collector.scrape().unwrap();
    assert!(text.contains("id=\"/new\""), "{text}");
    eprintln!("discovered {discovered:?} after the mkdir, during a stalled scrape");
}
