#!/usr/bin/env bash
# The kernel matrix's root filesystem: a small real node. Debian bookworm from Debian's
# packages (mmdebstrap), systemd as PID 1, containerd + runc (SystemdCgroup = true),
# the CNI plugins, Prometheus and promtool, python3, iproute2 and busybox-static (the
# tests' image builder copies /bin/busybox), as a disk image (GPT, one ext4 partition).
#
#   scripts/vm-image.sh     # prints the image's path, building it when missing
#
# The image is cached as ~/.cache/kadvisor/vm/rootfs-<hash>.img, <hash> being the hash
# of this file (the recipe), so editing the package list or the configuration below
# rebuilds it and an unchanged recipe reuses it. Older images are removed. The image
# holds nothing of kadvisor: the matrix brings the binaries on a second disk.
#
# The image is a GPT disk whose one partition holds the root filesystem, under a fixed
# partition UUID (ROOT_PARTUUID, which the matrix reads back from the image with
# `sfdisk --part-uuid`). The guests boot with no initramfs, so the kernel finds its root
# itself, and root=PARTUUID= is the one name it resolves that does not depend on the
# order disks are probed in: 6.12 scans NVMe namespaces asynchronously, and
# root=/dev/nvme0n1 found the test disk instead about one boot in six.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${KADVISOR_CACHE:-$HOME/.cache/kadvisor}/vm"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# systemd-sysv: systemd as /sbin/init. dbus: runc's systemd cgroup driver asks systemd
# over D-Bus to create each container's scope. kmod: modprobe (veth, overlay, ...).
# util-linux: setpriv, mount. python3: the tests' workloads (network, process); with
# python3-yaml it renders the ServiceMonitor into a scrape config and the rules' test
# copy for the kube-prometheus live test (tests/kube-prometheus/validate.py
# scrape-config, rules: PyYAML only; the other validators stay on the host).
PACKAGES=(systemd systemd-sysv dbus kmod util-linux procps
  containerd runc containernetworking-plugins iptables
  prometheus python3 python3-yaml iproute2 busybox-static e2fsprogs tar ca-certificates)
SIZE_MIB=3072
ROOT_PARTUUID=6b616476-6973-4f72-8e6f-64652d726f6f
# The partition starts at 1 MiB and ends 1 MiB before the disk's end (the backup GPT).
PART_START_MIB=1
PART_MIB=$((SIZE_MIB - 2))

log() { printf 'vm-image: %s\n' "$*" >&2; }

hash=$(sha256sum "$0" | cut -c1-16)
image="$CACHE/rootfs-$hash.img"
if [[ -s "$image" ]]; then
  echo "$image"
  exit 0
fi
command -v mmdebstrap >/dev/null || {
  log "mmdebstrap missing (scripts/setup.sh installs it)"
  exit 1
}
mkdir -p "$CACHE"
root=$(mktemp -d "$CACHE/build-XXXXXX")
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
log "building the root filesystem ($SUITE: ${PACKAGES[*]})"
include=$(
  IFS=,
  echo "${PACKAGES[*]}"
)
# --variant=minbase: essential + apt; --include adds the node's packages with their
# dependencies. Recommends are left out (prometheus would bring node-exporter etc.).
mmdebstrap --quiet --variant=minbase --include="$include" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  "$SUITE" "$root/fs" "$MIRROR" "$MIRROR-security $SUITE-security main" >&2

fs=$root/fs
echo kadvisor-node >"$fs/etc/hostname"
: >"$fs/etc/fstab"
# A fresh machine id per boot (empty file: systemd generates one in memory).
: >"$fs/etc/machine-id"
# Every controller's accounting on, as the kubelet asks of a node; io is off by default.
mkdir -p "$fs/etc/systemd/system.conf.d"
cat >"$fs/etc/systemd/system.conf.d/accounting.conf" <<'CONF'
[Manager]
DefaultCPUAccounting=yes
DefaultIOAccounting=yes
DefaultMemoryAccounting=yes
DefaultTasksAccounting=yes
ShowStatus=no
CONF
# containerd as a node runs it: the systemd cgroup driver. The tests start their own
# containerd with a private config of the same driver (tests/src/containerd.rs); the
# system one is not started, to keep the guest's memory and boot time for the tests.
mkdir -p "$fs/etc/containerd"
cat >"$fs/etc/containerd/config.toml" <<'CONF'
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
CONF
# Nothing else runs: the test unit below is the node's workload.
for unit in containerd.service prometheus.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-timesyncd.service \
  getty@tty1.service serial-getty@ttyS0.service; do
  ln -sf /dev/null "$fs/etc/systemd/system/$unit"
done
# The matrix's test unit: mounts the test disk (test binaries, kernel modules, the
# runner) and runs its /run-tests, which powers the guest off at the end. The test disk
# is found by its label (mount's libblkid probes the disks itself: no udev here), not by
# a device name, which depends on probe order; it is retried for a few seconds in case
# its namespace is still being scanned ($$ is systemd's escape for a literal $).
cat >"$fs/etc/systemd/system/kadvisor-matrix.service" <<'UNIT'
[Unit]
Description=kadvisor kernel matrix: the test suite
After=dbus.service local-fs.target
Wants=dbus.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /matrix; for i in $$(seq 30); do mount -o ro LABEL=kadvisor-tests /matrix && exec /matrix/run-tests; sleep 1; done; echo "KADVISOR-MATRIX-RESULT 1 setup: no disk labelled kadvisor-tests"; systemctl poweroff --force --force'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
UNIT
mkdir -p "$fs/etc/systemd/system/multi-user.target.wants"
ln -sf ../kadvisor-matrix.service "$fs/etc/systemd/system/multi-user.target.wants/"
rm -rf "$fs/var/cache/apt/archives"/*.deb "$fs/var/lib/apt/lists"/*

img=$root/rootfs.img
truncate -s "${SIZE_MIB}M" "$img"
sfdisk --quiet "$img" >&2 <<TABLE
label: gpt
start=$((PART_START_MIB * 2048)), size=$((PART_MIB * 2048)), type=linux, uuid=$ROOT_PARTUUID
TABLE
# The filesystem written straight into the partition (no loop device, no root needed
# beyond writing the file). Its "Creating regular file" line goes to stderr: stdout is
# the image's path only.
mkfs.ext4 -q -F -L kadvisor-root -E "offset=$((PART_START_MIB * 1048576)),nodiscard" \
  -d "$fs" "$img" "${PART_MIB}M" >&2
[[ "$(sfdisk --part-uuid "$img" 1 | tr A-Z a-z)" == "$ROOT_PARTUUID" ]] ||
  { log "the image's partition table did not survive mkfs"; exit 1; }
find "$CACHE" -maxdepth 1 -name 'rootfs-*.img' ! -name "rootfs-$hash.img" -delete
mv "$root/rootfs.img" "$image"
log "built $image ($(du -h "$image" | cut -f1) used) in $(($(date +%s) - start)) s"
echo "$image"
