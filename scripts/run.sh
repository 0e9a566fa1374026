#!/usr/bin/env bash
# Sets everything up (idempotent) and runs kadvisor on this host: every cgroup of the
# machine, served on http://127.0.0.1:8080/metrics. Extra arguments go to kadvisor
# (e.g. --port 9100). Needs root: loading BPF programs needs CAP_BPF and CAP_PERFMON.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
cargo build --release --package kadvisor --bin kadvisor
exec target/release/kadvisor "$@"
