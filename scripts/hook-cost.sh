#!/usr/bin/env bash
# ns per event of each attached program (kernel.bpf_stats_enabled run_time_ns / run_cnt,
# read through kadvisor's own kadvisor_bpf_program_* metrics) under `perf bench sched
# pipe`, for one or more kadvisor binaries in interleaved rounds, so that two builds are
# compared under the same background load. Needs root.
#
#   sudo scripts/hook-cost.sh [-r ROUNDS] [-l LOOPS] BINARY...
#
# Prints one line per (round, binary, program) and then the median and minimum per
# binary and program. The machine is shared: compare binaries measured in the same
# invocation; the minimum is the least disturbed by other load.
set -euo pipefail
rounds=5
loops=50000
while getopts r:l: opt; do
    case $opt in
    r) rounds=$OPTARG ;;
    l) loops=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-l LOOPS] BINARY..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

previous=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 >/proc/sys/kernel/bpf_stats_enabled
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    echo "$previous" >/proc/sys/kernel/bpf_stats_enabled
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
metrics() {
    curl -sf "http://127.0.0.1:$port/metrics" |
        awk '/^kadvisor_bpf_program_(runs_total|run_seconds_total)\{/ {
            match($0, /program="[^"]*"/); p = substr($0, RSTART + 9, RLENGTH - 10)
            split($0, f, " "); kind = ($0 ~ /^kadvisor_bpf_program_runs_total/) ? "runs" : "secs"
            print p, kind, f[2] }'
}

results=$(mktemp)
for round in $(seq "$rounds"); do
    for bin in "$@"; do
        "$bin" --listen_ip 127.0.0.1 --port "$port" --log_level warn >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 300); do
            curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
        before=$(metrics)
        perf bench sched pipe -l "$loops" >/dev/null
        after=$(metrics)
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
        join <(echo "$before" | awk '{print $1"/"$2, $3}' | sort) \
            <(echo "$after" | awk '{print $1"/"$2, $3}' | sort) |
            awk -v r="$round" -v b="$bin" '{ split($1, k, "/"); d[k[1], k[2]] = $3 - $2; p[k[1]] = 1 }
                END { for (q in p) if (d[q, "runs"] >= 1000)
                    printf "%s %s %s %.1f %d\n", r, b, q, d[q, "secs"] * 1e9 / d[q, "runs"], d[q, "runs"] }' |
            tee -a "$results"
    done
done
echo "ns/event over $rounds rounds (perf bench sched pipe -l $loops): median, minimum"
sort -k2,2 -k3,3 -k4,4n "$results" |
    awk '{ k = $2 " " $3; v[k, ++n[k]] = $4 } END {
        for (k in n) printf "%-60s median %7.1f ns  min %7.1f ns  (%d rounds)\n", k, v[k, int((n[k] + 1) / 2)], v[k, 1], n[k] }' | sort
rm -f "$results"
