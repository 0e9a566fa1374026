//! The offline validators of `deploy/`, `dashboards/` and `examples/`
//! (`tests/kube-prometheus/validate.py` and `validate_schemas.mjs`), run with the
//! pinned Python and npm packages that `scripts/setup.sh` installs.
use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where scripts/setup.sh installs the pinned validators.
pub fn tools() -> PathBuf {
    std::env::var_os("KADVISOR_TOOLS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/kadvisor/tools")
        },
        PathBuf::from,
    )
}

/// `Some(reason)` when the validators scripts/setup.sh installs are not on this host
/// (the kernel matrix's node does not carry them: they check files, nothing
/// kernel-specific).
pub fn unavailable() -> Option<String> {
    let python = tools().join("venv/bin/python");
    (!python.exists()).then(|| {
        format!(
            "needs the validators scripts/setup.sh installs ({} missing); they check \
             manifests and recipes, nothing kernel-specific",
            python.display()
        )
    })
}

/// `validate.py` with the venv's Python; add the subcommand and its arguments.
pub fn python() -> Command {
    let python = tools().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh (installs the validators)",
        python.display()
    );
    let mut command = Command::new(python);
    command.arg(repo().join("tests/kube-prometheus/validate.py"));
    command
}

/// `Some(reason)` when no Python here has PyYAML, which `validate.py`'s
/// `scrape-config` and `rules` need and nothing else: the validators' venv has it,
/// and so has the kernel matrix's node (Debian's python3-yaml), so the
/// kube-prometheus live test runs on every kernel.
pub fn yaml_unavailable() -> Option<String> {
    if tools().join("venv/bin/python").exists() {
        return None;
    }
    let system_has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|out| out.status.success());
    (!system_has_yaml).then(|| {
        "needs a python3 with PyYAML (the validators' venv from scripts/setup.sh, or \
         Debian's python3-yaml) to render the ServiceMonitor into a scrape config"
            .to_owned()
    })
}

/// `validate.py` for its `scrape-config` and `rules` subcommands (PyYAML only): the
/// venv's Python where scripts/setup.sh installed it, else the system's python3.
pub fn yaml_python() -> Command {
    let venv = tools().join("venv/bin/python");
    let mut command = Command::new(if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    });
    command.arg(repo().join("tests/kube-prometheus/validate.py"));
    command
}

/// `validate_schemas.mjs KIND FILES...`: the CRD / dashboard schema checks.
pub fn node(kind: &str, files: &[PathBuf]) -> Output {
    let node_dir = tools().join("node");
    assert!(
        node_dir.join("node_modules").exists(),
        "{} missing: run scripts/setup.sh (installs the validators)",
        node_dir.display()
    );
    Command::new("node")
        .arg(repo().join("tests/kube-prometheus/validate_schemas.mjs"))
        .arg(node_dir)
        .arg(kind)
        .args(files)
        .output()
        .expect("run node (scripts/setup.sh installs nodejs)")
}

/// Asserts `output` succeeded and returns its stdout.
pub fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts `output` failed (a check shown able to fail).
pub fn failed(what: &str, output: &Output) {
    assert!(
        !output.status.success(),
        "{what} should have failed but passed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
