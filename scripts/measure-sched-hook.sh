#!/usr/bin/env bash
# Measures the cost of every kadvisor eBPF program: ns per event (run_time_ns /
# run_cnt from kernel.bpf_stats_enabled, read through kadvisor's own
# kadvisor_bpf_program_* metrics), events per context switch and ns per context
# switch, under two loads:
#   1. `perf bench sched pipe` (context switches and wakeups: the scheduler hooks),
#   2. a Python loop that sends itself handled SIGSEGVs (signal_deliver's full path:
#      signal lookup and handler read, no crash).
# Usage: scripts/measure-sched-hook.sh [perf-bench-loops] [signals]
#        (root; needs a release build: cargo build --release -p kadvisor)
set -euo pipefail
cd "$(dirname "$0")/.."
loops=${1:-200000}
signals=${2:-20000}
bin=${KADVISOR_BIN:-target/release/kadvisor}
[[ -x $bin ]] || { echo "build first: cargo build --release -p kadvisor" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf missing: run scripts/setup.sh" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
"$bin" --port "$port" --log_level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; sysctl -qw kernel.bpf_stats_enabled=$old_stats' EXIT
for _ in $(seq 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done

# "program runs seconds" lines, one per attached program.
snapshot() {
  curl -s "localhost:$port/metrics" | awk '
    /^kadvisor_bpf_program_runs_total\{/ { match($0, /program="[^"]+"/); p = substr($0, RSTART+9, RLENGTH-10); runs[p] = $2 }
    /^kadvisor_bpf_program_run_seconds_total\{/ { match($0, /program="[^"]+"/); p = substr($0, RSTART+9, RLENGTH-10); secs[p] = $2 }
    END { for (p in runs) print p, runs[p], secs[p] }'
  awk '/^ctxt/ {print "ctxt", $2, 0}' /proc/stat
}

report() { # label before after
  python3 - "$1" "$2" "$3" <<'PY'
import sys
label, before, after = sys.argv[1], sys.argv[2], sys.argv[3]
def parse(text):
    return {l.split()[0]: (float(l.split()[1]), float(l.split()[2])) for l in text.splitlines() if l.strip()}
b, a = parse(before), parse(after)
switches = a["ctxt"][0] - b["ctxt"][0]
print(f"== {label}: {switches:.0f} context switches")
total = 0.0
for prog in sorted(k for k in a if k != "ctxt"):
    runs = a[prog][0] - b[prog][0]
    ns = (a[prog][1] - b[prog][1]) * 1e9
    total += ns
    per = f"{ns/runs:6.1f} ns/event" if runs else "     - ns/event"
    print(f"{prog:20s} {runs:10.0f} events  {per}  {runs/switches:5.2f} events/switch  {ns/switches:6.1f} ns/switch")
print(f"{'all programs':20s} {total/switches:6.1f} ns per context switch")
PY
}

sysctl -qw kernel.bpf_stats_enabled=1
s0=$(snapshot)
perf bench sched pipe -l "$loops" >/dev/null
s1=$(snapshot)
report "perf bench sched pipe -l $loops" "$s0" "$s1"

s0=$(snapshot)
python3 -c "
import os, signal
signal.signal(signal.SIGSEGV, lambda *a: None)
for _ in range($signals): os.kill(os.getpid(), signal.SIGSEGV)
"
s1=$(snapshot)
report "$signals handled SIGSEGVs" "$s0" "$s1"
