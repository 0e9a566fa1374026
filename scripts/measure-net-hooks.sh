#!/usr/bin/env bash
# Measures the cost of kadvisor's cgroup_skb hooks (socket_ingress, socket_egress)
# under iperf3 load between two network namespaces joined by a veth pair (made here,
# removed on exit; documentation addresses only, nothing leaves them): ns per event
# (run_time_ns / run_cnt, kernel.bpf_stats_enabled, read through kadvisor's
# kadvisor_bpf_program_* metrics), and per IP packet (a GSO/GRO aggregate is one event).
# Usage: scripts/measure-net-hooks.sh [seconds]   (root; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
bin=target/release/kadvisor
[[ -x $bin ]] || { echo "build first: cargo build --release -p kadvisor" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 missing: run scripts/setup.sh" >&2; exit 1; }

a=kadvisor-measure-$$-a b=kadvisor-measure-$$-b
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  [[ -n ${server:-} ]] && kill "$server" 2>/dev/null
  [[ -n ${pid:-} ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null
  sysctl -qw kernel.bpf_stats_enabled="$old_stats"
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add km$$a netns "$a" type veth peer name km$$b netns "$b"
ip -n "$a" addr add 192.0.2.1/24 dev km$$a; ip -n "$b" addr add 192.0.2.2/24 dev km$$b
ip -n "$a" link set km$$a up; ip -n "$b" link set km$$b up
ip netns exec "$b" iperf3 -s -p 5202 >/dev/null 2>&1 & server=$!

"$bin" --port "$port" --log_level warn --pod_cidr 192.0.2.0/24 \
  --enable_metrics cpu,memory,network,socket,socket_packets &
pid=$!
for _ in $(seq 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
sleep 0.5

metric() { curl -s "localhost:$port/metrics" | awk -v m="$1" -v p="$2" '$1 == m"{program=\""p"\"}" {print $2}'; }
packets() { curl -s "localhost:$port/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{" && $1 ~ "id=\"/\"" {s += $2} END {print s+0}'; }

run() { # label, iperf3 client args...
  local label=$1; shift
  sysctl -qw kernel.bpf_stats_enabled=1
  local ri0 ti0 re0 te0 pr0 pt0 ri1 ti1 re1 te1 pr1 pt1
  ri0=$(metric kadvisor_bpf_program_runs_total socket_ingress); ti0=$(metric kadvisor_bpf_program_run_seconds_total socket_ingress)
  re0=$(metric kadvisor_bpf_program_runs_total socket_egress); te0=$(metric kadvisor_bpf_program_run_seconds_total socket_egress)
  pr0=$(packets container_socket_receive_packets_total); pt0=$(packets container_socket_transmit_packets_total)
  ip netns exec "$a" iperf3 -c 192.0.2.2 -p 5202 -t "$secs" "$@" >/dev/null
  ri1=$(metric kadvisor_bpf_program_runs_total socket_ingress); ti1=$(metric kadvisor_bpf_program_run_seconds_total socket_ingress)
  re1=$(metric kadvisor_bpf_program_runs_total socket_egress); te1=$(metric kadvisor_bpf_program_run_seconds_total socket_egress)
  pr1=$(packets container_socket_receive_packets_total); pt1=$(packets container_socket_transmit_packets_total)
  sysctl -qw kernel.bpf_stats_enabled=0
  python3 - "$label" "$ri0" "$ri1" "$ti0" "$ti1" "$re0" "$re1" "$te0" "$te1" "$pr0" "$pr1" "$pt0" "$pt1" <<'PY'
import sys
label = sys.argv[1]
ri0, ri1, ti0, ti1, re0, re1, te0, te1, pr0, pr1, pt0, pt1 = map(float, sys.argv[2:])
for name, runs, ns, pkts in (("socket_ingress", ri1 - ri0, (ti1 - ti0) * 1e9, pr1 - pr0),
                             ("socket_egress", re1 - re0, (te1 - te0) * 1e9, pt1 - pt0)):
    print(f"{label:4} {name:15} {runs:9.0f} events {ns / runs:7.1f} ns/event "
          f"{pkts:9.0f} IP packets {ns / pkts:6.1f} ns/packet")
PY
}
run tcp
run udp -u -b 0 -l 1400
