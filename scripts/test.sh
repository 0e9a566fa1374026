#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the whole test suite: formatting, clippy
# for the host crates and (separately, for the BPF target) the kernel crate, unit
# tests, and the privileged integration tests (real BPF, real cgroups; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n=== %s\n' "$*"; }

step setup
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "clippy: host crates"
cargo clippy --workspace --exclude kadvisor-ebpf --all-targets --locked -- -D warnings

step "clippy: kernel crate (bpfel-unknown-none)"
# Checked on its own: unifying its features with the host crates' breaks the build.
RUSTC_BOOTSTRAP=1 cargo clippy --package kadvisor-ebpf --target bpfel-unknown-none \
  -Z build-std=core --release --locked -- -D warnings

step "tests: unit and doc tests of every crate"
cargo test --workspace --locked --exclude kadvisor-tests
cargo test --locked --package kadvisor-tests --lib

# The privileged integration tests print one table, as each kernel of the matrix does:
# passed, failed, and ignored with the reason the test's own code gives.
step "tests: privileged integration on this host"
mapfile -t bins < <(cargo test --locked --package kadvisor-tests --tests --no-run --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null
                and (.target.kind | index("test"))) | "\(.target.name)=\(.executable)"')
((${#bins[@]})) || { echo "cargo test --no-run listed no test binaries" >&2; exit 1; }
if [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then
  layout="pure cgroup v2"
elif [[ -d /sys/fs/cgroup/unified ]]; then
  layout="hybrid cgroups (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
else
  layout="cgroup v1"
fi
scripts/test-table.sh "$(uname -r) this host: $layout, PID 1 $(cat /proc/1/comm)" "${bins[@]}"

step "kernel matrix: privileged tests on Debian 6.1 and 6.12 under qemu (pure cgroup v2)"
scripts/kernel-matrix.sh
