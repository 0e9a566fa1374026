#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the cost benchmark against a release
# build: prints the table BENCHMARKS.md records. Needs root. `--quick` for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
cargo build --release --package kadvisor --package kadvisor-bench
KADVISOR_BIN="$PWD/target/release/kadvisor" exec target/release/kadvisor-bench "$@"
