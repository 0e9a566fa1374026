#!/usr/bin/env bash
# Measures the cost of kadvisor's scheduler hook under a context-switch load:
# ns per event (run_time_ns / run_cnt from kernel.bpf_stats_enabled, read through
# kadvisor's own kadvisor_bpf_program_* metrics) and events per context switch.
# Usage: scripts/measure-sched-hook.sh [perf-bench-loops]   (root; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
loops=${1:-200000}
bin=${KADVISOR_BIN:-target/release/kadvisor}
[[ -x $bin ]] || { echo "build first: cargo build --release -p kadvisor" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf missing: run scripts/setup.sh" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
"$bin" --port "$port" --log_level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; sysctl -qw kernel.bpf_stats_enabled=$old_stats' EXIT
for _ in $(seq 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done

metric() { curl -s "localhost:$port/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{" {print $2}'; }
ctxt() { awk '/^ctxt/ {print $2}' /proc/stat; }

sysctl -qw kernel.bpf_stats_enabled=1
runs0=$(metric kadvisor_bpf_program_runs_total); time0=$(metric kadvisor_bpf_program_run_seconds_total); ctxt0=$(ctxt)
perf bench sched pipe -l "$loops" >/dev/null
runs1=$(metric kadvisor_bpf_program_runs_total); time1=$(metric kadvisor_bpf_program_run_seconds_total); ctxt1=$(ctxt)

python3 - "$runs0" "$runs1" "$time0" "$time1" "$ctxt0" "$ctxt1" <<'PY'
import sys
r0, r1, t0, t1, c0, c1 = map(float, sys.argv[1:])
runs, ns, switches = r1 - r0, (t1 - t0) * 1e9, c1 - c0
print(f"sched_stat_runtime: {runs:.0f} events, {ns/runs:.1f} ns/event, "
      f"{runs/switches:.2f} events per context switch, {ns/switches:.1f} ns per context switch "
      f"({switches:.0f} switches)")
PY
