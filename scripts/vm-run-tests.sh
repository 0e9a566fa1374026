#!/bin/bash
# The kernel matrix's runner inside the guest (scripts/kernel-matrix.sh copies it to the
# test disk as /matrix/run-tests; the image's kadvisor-matrix.service mounts that disk
# at /matrix and runs it). Prepares the node for the tests, runs every test binary
# through scripts/test-table.sh, prints the result marker and powers the guest off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
export KADVISOR_BIN=/matrix/bin/kadvisor KADVISOR_TOOLS=/matrix/tools KADVISOR_TEST_READY_SECONDS=180 RUST_BACKTRACE=1 NO_COLOR=1
# WORKSPACE: where the test binaries were built (their env!("CARGO_MANIFEST_DIR")/..).
. /matrix/env

fail() {
  echo "KADVISOR-MATRIX-RESULT 1 setup: $*"
  sync
  systemctl poweroff --force --force
  exit 1
}

# The tests start hundreds of processes and cgroups from this unit.
# CPUWeight: systemd enables the cpu controller in the root cgroup's subtree_control
# only while some unit sets a CPU weight or quota (CPUAccounting alone needs none
# since kernel 4.15), and takes it away again otherwise; the tests' cgroups under the
# root need it (cpu.max, cpu.weight). A node's kubelet sets the weight of its
# kubepods slices likewise.
systemctl set-property --runtime kadvisor-matrix.service TasksMax=infinity CPUWeight=100 || fail "TasksMax, CPUWeight"
# The kernel's modules (veth, overlay, bridge, netfilter), loaded on demand by modprobe,
# and the source tree's files the tests read, at the path they were built in.
mkdir -p /lib/modules "$WORKSPACE" || fail "mkdir"
mount --bind /matrix/lib/modules /lib/modules || fail "bind /lib/modules"
mount --bind /matrix/src "$WORKSPACE" || fail "bind the source tree at $WORKSPACE"
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || fail "mount tracefs"
# Every controller for the tests' cgroups (systemd itself enables cpu, io, memory, pids).
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || fail "enable controller $c"
done
ip link set lo up || fail "loopback up"
# No udev in the image, and the modules came with the test disk after the kernel's
# coldplug: the NIC's drivers (virtio_pci is a module on 6.1, built in on 6.12) and
# loop (the diskstats test's loop device: /dev/loop-control comes with the module).
modprobe -a virtio_pci virtio_net loop || fail "modprobe virtio_pci virtio_net loop"
for _ in $(seq 50); do
  [ -e /sys/class/net/eth0 ] && break
  sleep 0.2
done
[ -e /sys/class/net/eth0 ] || fail "no eth0 after loading virtio_net"
# The NIC (virtio-net): the root network namespace has a real interface, as a node has.
for dev in /sys/class/net/*; do
  [ "${dev##*/}" = lo ] || ip link set "${dev##*/}" up || fail "link ${dev##*/} up"
done

# The IO precondition: a direct write from a cgroup to /tmp (on the root disk) shows up
# in its io.stat against that disk (io.stat names whole disks: the root is a partition,
# its parent is the disk), as the IO tests expect.
root_disk=$(cat "/sys/dev/block/$(mountpoint -d /)/../dev") || fail "no disk under /"
check=/sys/fs/cgroup/kadvisor-matrix-io-check
mkdir "$check" || fail "mkdir $check"
sh -c "echo \$\$ >$check/cgroup.procs && exec dd if=/dev/zero of=/tmp/io-check bs=1M count=4 oflag=direct" 2>/dev/null ||
  fail "direct write to /tmp"
grep -q "^$root_disk .*wbytes=[1-9]" "$check/io.stat" ||
  fail "no writes to the root disk $root_disk in io.stat of a cgroup that wrote: $(cat "$check/io.stat")"
rm -f /tmp/io-check
rmdir "$check"

read -r uptime _ </proc/uptime
echo "matrix: kernel $(uname -r), PID 1 $(cat /proc/1/comm) ($(systemctl --version | head -n1))," \
  "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}')," \
  "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)," \
  "network interfaces: $(ls /sys/class/net | tr '\n' ' ')," \
  "up ${uptime%% *} s"
set --
for bin in /matrix/tests/*; do set -- "$@" "${bin##*/}=$bin"; done
/matrix/test-table "$(uname -r) pure cgroup v2 + systemd" "$@"
echo "KADVISOR-MATRIX-RESULT $?"
sync
systemctl poweroff --force --force
