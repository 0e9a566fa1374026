//! `kadvisor`: wires the layers together. Loading, discovery, collection and serving
//! live in the library; this file only orders them and reports errors.
use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use kadvisor::{
    bpf::{self, CgroupFilter, KernelPrograms, LoadOptions, PROGRAMS},
    cgroup::{
        CgroupTree, Controller, Hierarchies,
        discovery::{Discovery, UnwatchedMetric},
    },
    collect::{Collector, Retention, RowFilter},
    config::{Config, ConfigError},
    cost::CostControls,
    http::{
        self, Admin,
        admission::{Collections, Limits},
    },
    runtime::Metadata,
};

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Flags(e)) if !e.use_stderr() => {
            // --help and --version
            let _ignored = e.print();
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Flags(e)) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            eprintln!(
                "kadvisor: {} (see --help)",
                first.strip_prefix("error: ").unwrap_or(first)
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("kadvisor: {e}");
            return ExitCode::from(2);
        }
    };
    if config.check_config {
        println!("kadvisor: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("kadvisor: invalid --log_level {:?}: {e}", config.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = kadvisor::supported_kernel::check_running() {
        eprintln!("kadvisor: {e}");
        return ExitCode::FAILURE;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kadvisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    tune_malloc();
    raise_open_files_limit();
    bpf::preflight(&config.btf_path)?;
    let tree = CgroupTree::new(config.cgroup_root.as_deref())?;
    let hierarchies = Hierarchies::detect(Some(tree.root()))?;
    tracing::info!(root = %tree.root().display(), "cgroup v2 tree");
    let cost = config.cost()?;
    let load_options = LoadOptions {
        disabled_families: PROGRAMS
            .iter()
            .map(|p| p.family)
            .filter(|f| !cost.groups().program_family_on(f))
            .collect(),
        cgroup_filter: cost.selection.is_active(),
        pass_roots: [Controller::Memory, Controller::Pids, Controller::Blkio]
            .into_iter()
            .filter_map(|controller| hierarchies.controller_root(controller))
            .fold(Vec::new(), |mut roots, root| {
                if !roots.contains(&root) {
                    roots.push(root);
                }
                roots
            }),
    };
    let mut kernel = KernelPrograms::load_with(
        &config.btf_path,
        config.max_cgroups,
        tree.root(),
        &load_options,
    )?;
    let cgroup_filter = kernel.cgroup_filter();
    let destinations: Vec<_> = config
        .destinations()
        .iter()
        .map(|(cidr, class)| (cidr.trie_key(), *class))
        .collect();
    kernel.set_destinations(&destinations)?;
    let metadata = Arc::new(Metadata::new(
        config.cri_endpoints.clone(),
        std::time::Duration::from_millis(config.runtime_timeout_ms),
    )?);
    let lookups = Arc::clone(&metadata);
    let selection = cost.selection.clone();
    let path_filter = cgroup_filter.clone();
    let v2_root = tree.root().to_owned();
    let discovery = Arc::new(Discovery::with_on_new(Box::new(move |path| {
        if selection.keeps_path(path) {
            lookups.want_path(path);
        } else if let Some(filter) = &path_filter {
            // Excluded by path: stop counting it in the kernel now (its id is its
            // directory's inode) and ask no runtime about it.
            exclude_path(filter, &v2_root, path);
        }
    })));
    discovery
        .spawn_watcher(
            tree.clone(),
            std::time::Duration::from_secs(config.reconcile_seconds),
        )
        .context("watching the cgroup tree")?;
    let grace = std::time::Duration::try_from_secs_f64(config.deleted_grace_seconds)
        .context("--deleted_grace_seconds")?;
    let filter = if config.exports_kubelet_rows() {
        RowFilter::Kubelet {
            extra: config.kubelet_extra_cgroups.clone(),
        }
    } else {
        RowFilter::All
    };
    let collector = Arc::new(
        Collector::new(Box::new(kernel), tree, hierarchies)?
            .with_discovery(discovery)
            .with_metadata(Arc::clone(&metadata))?
            .with_filter(filter)
            .with_cost(CostControls::new(
                cost.selection.clone(),
                cost.shaping.clone(),
                cgroup_filter,
            ))
            .with_max_housekeeping_interval(config.max_housekeeping_interval)
            .with_retention(Retention {
                grace,
                ..Retention::default()
            }),
    );
    let collections = Arc::new(Collections::new(
        Arc::clone(&collector) as Arc<dyn kadvisor::http::admission::Source>,
        Limits::default(),
    )?);
    collections.register(Box::new(metadata.up_metric()))?;
    collections.register(Box::new(UnwatchedMetric::new(Arc::clone(
        collector.discovery(),
    ))?))?;
    // The first walk proves the tree is readable before we report ready.
    collections.prime()?;
    // Loading the programs and parsing BTF freed tens of MB: give them back.
    kadvisor::heap::release_free_memory();
    let admin = Arc::new(Admin::new(collections, Arc::clone(&collector)));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let address = std::net::SocketAddr::new(config.listen_ip, config.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr().context("listener address")?;
        http::warn_if_exposed(bound.ip());
        // Runtime lookups and the grace-period sweep run beside the server.
        tokio::spawn(async move { metadata.run().await });
        // The sweep sleeps until the earliest grace period ends: no tick while
        // nothing was removed. A removal reported meanwhile ends its grace period
        // `grace` from now.
        let sweeper = Arc::clone(&collector);
        tokio::spawn(async move {
            let retry = std::time::Duration::from_secs(1);
            loop {
                let sweeping = Arc::clone(&sweeper);
                let mut next = tokio::task::spawn_blocking(move || sweeping.sweep())
                    .await
                    .map_or_else(|_| tokio::time::Instant::now() + retry, Into::into);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => break,
                        () = sweeper.discovery().removals() => {
                            next = next.min(tokio::time::Instant::now() + grace);
                        }
                    }
                }
            }
        });
        admin.set_ready();
        tracing::info!(address = %bound, "serving /metrics");
        http::serve(listener, admin, shutdown_signal()).await;
        Ok(())
    })
}

fn exclude_path(filter: &CgroupFilter, v2_root: &std::path::Path, path: &str) {
    use std::os::unix::fs::MetadataExt as _;
    let dir = v2_root.join(path.trim_start_matches('/'));
    match std::fs::metadata(&dir) {
        Ok(meta) => {
            if let Err(e) = filter.exclude(meta.ino()) {
                tracing::warn!(path, error = %kadvisor::error_chain(&e), "cannot exclude a cgroup in the kernel");
            } else {
                tracing::debug!(path, "excluded by path");
            }
        }
        // Already removed: nothing to count.
        Err(e) => tracing::debug!(path, error = %e, "excluded cgroup vanished"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Raises the soft RLIMIT_NOFILE to the hard one: a scrape keeps each cgroup
/// directory open while it reads its files (`cgroup::files::DirScope`), several per
/// cgroup, and falls back to slower full-path opens beyond a share of the soft limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer, then a valid in-pointer.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) == 0
        }
    };
    if !raised {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
    }
}

/// Keeps RSS near what is in use. A scrape builds a multi-megabyte body (and its gzip)
/// on whichever blocking-pool thread runs it. glibc's default raises the mmap
/// threshold to the largest block freed so far, so after the first scrape those
/// buffers come from the heap and stay resident after free, once per thread arena.
/// A fixed threshold returns them to the kernel at free; two arenas bound the rest.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before other threads.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) == 1
            && libc::mallopt(libc::M_ARENA_MAX, 2) == 1
    };
    if !ok {
        tracing::warn!("cannot tune malloc");
    }
}
