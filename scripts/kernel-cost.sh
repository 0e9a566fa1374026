#!/usr/bin/env bash
# What the kernel pays for kadvisor, next to kadvisor's own process CPU, for one or
# more kadvisor binaries measured in the same invocation (so two builds are compared
# under the same background load; the machine may be shared):
#   1. added ns per context switch: same-CPU `taskset -c 1 perf bench sched pipe`,
#      PAIRS interleaved pairs (without kadvisor, with it) per binary, median of
#      (with - without) / (2 x loops) (two switches per loop);
#   2. under `perf bench sched messaging` (switch-heavy) and under a fork/exit loop
#      of ~2,000 processes/s (exit-heavy), each for SECS seconds with one scrape per
#      second: BPF run time per second of the attached hook programs
#      (kernel.bpf_stats_enabled), kadvisor's process CPU per second (it includes the
#      scrape-time iterators, which run in its read()), and their sum.
#
#   sudo scripts/kernel-cost.sh [-p PAIRS] [-l LOOPS] [-s SECS] BINARY...
set -euo pipefail
pairs=10
loops=100000
secs=10
while getopts p:l:s: opt; do
    case $opt in
    p) pairs=$OPTARG ;;
    l) loops=$OPTARG ;;
    s) secs=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-p PAIRS] [-l LOOPS] [-s SECS] BINARY..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf missing: run scripts/setup.sh" >&2; exit 1; }

previous=$(cat /proc/sys/kernel/bpf_stats_enabled)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    echo "$previous" >/proc/sys/kernel/bpf_stats_enabled
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))

start() {
    "$1" --listen_ip 127.0.0.1 --port "$port" --log_level warn >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "$1 did not become ready" >&2
    exit 1
}
stop() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}
pipe_seconds() {
    taskset -c 1 perf bench sched pipe -l "$loops" 2>/dev/null | awk '/Total time/ {print $3}'
}
# Seconds of BPF run time of the hook programs (not the scrape-time iterators, whose
# time is kadvisor's own process CPU) and kadvisor's utime+stime in seconds.
snapshot() {
    local bpf ticks
    bpf=$(curl -sf "http://127.0.0.1:$port/metrics" |
        awk '/^kadvisor_bpf_program_run_seconds_total\{/ && !/program="(task_pass|file_pass)"/ {s += $2} END {printf "%.9f", s}')
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$bpf $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f", t / hz}')"
}
scrape_every_second() {
    while kill -0 "$1" 2>/dev/null; do
        curl -sf "http://127.0.0.1:$port/metrics" >/dev/null || true
        sleep 1
    done
}
messaging_load() {
    local end=$((SECONDS + secs))
    while ((SECONDS < end)); do perf bench sched messaging -g 5 -l 200 >/dev/null 2>&1; done
}
fork_load() { # ~2,000 fork+exit per second, paced; prints the rate reached
    python3 - "$secs" <<'PY'
import os, sys, time
secs = float(sys.argv[1]); n = 0; start = time.monotonic()
while (now := time.monotonic()) - start < secs:
    due = start + n / 2000.0
    if due > now:
        time.sleep(due - now)
    if os.fork() == 0:
        os._exit(0)
    os.wait(); n += 1
print(f"{n / (time.monotonic() - start):.0f}", file=sys.stderr)
PY
}
measure_load() { # label, load function
    local s0 s1 t0 t1 loader
    echo 1 >/proc/sys/kernel/bpf_stats_enabled
    s0=$(snapshot); t0=$(date +%s.%N)
    "$2" 2>"$results.rate" &
    loader=$!
    scrape_every_second "$loader" &
    wait "$loader"
    t1=$(date +%s.%N); s1=$(snapshot)
    echo 0 >/proc/sys/kernel/bpf_stats_enabled
    echo "$s0 $s1 $t0 $t1" | awk -v l="$1" -v b="$bin" -v r="$(cat "$results.rate")" '{
        wall = $6 - $5; bpf = ($3 - $1) / wall; cpu = ($4 - $2) / wall
        printf "%s %s bpf_ms_per_s %.3f kadvisor_cpu_ms_per_s %.3f total_ms_per_s %.3f %s\n",
            b, l, bpf * 1e3, cpu * 1e3, (bpf + cpu) * 1e3, (r == "" ? "" : "forks_per_s " r) }' |
        tee -a "$results"
}

results=$(mktemp)
echo 0 >/proc/sys/kernel/bpf_stats_enabled
for round in $(seq "$pairs"); do
    for bin in "$@"; do
        without=$(pipe_seconds)
        start "$bin"
        with=$(pipe_seconds)
        stop
        echo "$round $bin $without $with" | awk -v l="$loops" '{
            printf "pipe %s %s without %.3f s with %.3f s added %.1f ns/switch\n", $1, $2, $3, $4, ($4 - $3) * 1e9 / (2 * l) }' |
            tee -a "$results"
    done
done
for bin in "$@"; do
    start "$bin"
    measure_load messaging messaging_load
    measure_load fork_exit fork_load
    stop
done
echo "== added ns per context switch (taskset -c 1 perf bench sched pipe -l $loops, $pairs pairs): median"
awk '$1 == "pipe" {print $3, $11}' "$results" | sort -k1,1 -k2,2n |
    awk '{v[$1, ++n[$1]] = $2} END {for (b in n) printf "%-50s median %7.1f ns/switch (%d pairs)\n", b, v[b, int((n[b] + 1) / 2)], n[b]}'
echo "== per second of load ($secs s each, one scrape per second)"
grep -v '^pipe ' "$results"
rm -f "$results" "$results.rate"
