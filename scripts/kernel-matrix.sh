#!/usr/bin/env bash
# Kernel matrix: runs every privileged integration test binary (tests/tests/*.rs) on
# Debian's 6.1 and 6.12 cloud kernels, each booted under qemu (TCG) on a pure cgroup v2
# host with every controller enabled in the root cgroup, and prints one table per
# kernel: every test passed, failed, or ignored with the reason its own code gives
# (tests/src/ignore.rs: a test that needs what this node lacks, such as containerd or
# a browser, says so itself; there is no list of exclusions here).
#
#   scripts/kernel-matrix.sh            # both kernels
#   scripts/kernel-matrix.sh 6.12       # one kernel (6.1 or 6.12)
#
# Per kernel: the newest linux-image-<series>.*-cloud-amd64 that apt sees is fetched
# with `apt-get download` and unpacked with `dpkg-deb -x` into ~/.cache/kadvisor/kernels
# (reruns reuse it); an initramfs is built from Debian's busybox-static, the `kadvisor`
# binary, the test binaries (`cargo test --no-run`), the tools the tests exec (with
# their shared libraries) and an /init that mounts proc, sysfs, devtmpfs, cgroup2 (all
# controllers enabled), bpffs and tracefs, mounts an ext4 filesystem on an attached
# NVMe disk at /tmp (so IO tests hit a real block device), binds the tracked source
# files at the path the tests were built in (they read scripts and fixtures through
# env!("CARGO_MANIFEST_DIR")), runs every test binary through scripts/test-table.sh and
# prints its table and a result marker on the serial console. The exit status is non-zero when any
# test fails on any kernel, when a guest panics, or when a guest does not finish within
# KADVISOR_MATRIX_TIMEOUT seconds (default 1800). KADVISOR_MATRIX_JOBS=1 boots the
# kernels one after the other (default: both at once on a host with 2 CPUs or more). KADVISOR_MATRIX_TESTS="cpu memory ..."
# runs only those test binaries (for a quick check while developing; CI runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

KERNELS=("$@")
((${#KERNELS[@]})) || KERNELS=(6.1 6.12)
CACHE="${KADVISOR_CACHE:-$HOME/.cache/kadvisor}/kernels"
TIMEOUT="${KADVISOR_MATRIX_TIMEOUT:-1800}"

# Programs the tests exec that busybox does not provide (sh, sleep, cat, ... come from
# busybox). Each is copied in with its shared libraries. Add a tool here when a new test
# execs one; a missing tool fails that test in the VM.
# Each lands at its host path (tests exec /usr/bin/python3 by absolute path); python3
# brings its standard library (without tests, tkinter, idle).
# ip: iproute2's (network namespaces), busybox's has no `ip netns`. bash runs
# scripts/test-table.sh. losetup and mkfs.ext4: util-linux's and e2fsprogs' (the
# diskstats test's loop device; busybox's losetup has no --show).
TOOLS=(/usr/bin/promtool /usr/bin/setpriv /usr/bin/python3 /usr/bin/ip /bin/bash /usr/sbin/losetup /usr/sbin/mkfs.ext4)

# Kernel modules loaded in the guest (with their dependencies): the cloud kernels build
# NVMe, ext4, cgroups and BPF in, but veth (network namespace tests) and loop (the
# diskstats test's loop device) and the NIC's driver are modules.
MODULES=(veth loop virtio_pci virtio_net)

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

work=$(mktemp -d /tmp/kadvisor-matrix.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- build: the binary and the privileged test binaries ------------------------------
# kadvisor in release: under TCG a debug build spends ~20 s parsing the kernel's BTF at
# every start, and every test starts its own kadvisor.
log "building kadvisor (release) and the test binaries"
kadvisor_bin=$(cargo build --locked --release --package kadvisor --bin kadvisor --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable')
[[ -x "$kadvisor_bin" ]] || die "no kadvisor binary from cargo build"
mapfile -t test_bins < <(cargo test --locked --package kadvisor-tests --no-run --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null
                and (.target.kind | index("test"))) | "\(.target.name) \(.executable)"')
((${#test_bins[@]})) || die "cargo test --no-run listed no test binaries"
if [[ -n "${KADVISOR_MATRIX_TESTS:-}" ]]; then
  selected=()
  for entry in "${test_bins[@]}"; do
    [[ " $KADVISOR_MATRIX_TESTS " == *" ${entry%% *} "* ]] && selected+=("$entry")
  done
  ((${#selected[@]})) || die "KADVISOR_MATRIX_TESTS=$KADVISOR_MATRIX_TESTS matches no test binary"
  test_bins=("${selected[@]}")
  log "only the test binaries: ${test_bins[*]%% *}"
fi

# --- kernels ----------------------------------------------------------------------------
# The newest cloud kernel package of a series that apt knows (6.1 from bookworm, 6.12
# from bookworm-security/backports).
kernel_package() {
  local series=$1 re pkg
  re="^linux-image-${series//./\\.}[.-].*-cloud-amd64\$"
  pkg=$(apt-cache search --names-only "$re" | awk '{print $1}' | sort -V | tail -n1)
  if [[ -z "$pkg" ]]; then
    apt-get update -qq
    pkg=$(apt-cache search --names-only "$re" | awk '{print $1}' | sort -V | tail -n1)
  fi
  [[ -n "$pkg" ]] || die "apt knows no linux-image-$series.*-cloud-amd64"
  echo "$pkg"
}

# Unpacks the package into the cache once; prints the directory.
fetch_kernel() {
  local pkg=$1 dir="$CACHE/$1"
  if [[ ! -f "$dir/.complete" ]]; then
    log "downloading $pkg"
    rm -rf "$dir" "$CACHE/dl-$pkg"
    mkdir -p "$CACHE/dl-$pkg"
    (cd "$CACHE/dl-$pkg" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
    local deb
    deb=$(find "$CACHE/dl-$pkg" -name '*.deb' | head -n1)
    [[ -n "$deb" ]] || die "apt-get download $pkg failed"
    dpkg-deb -x "$deb" "$dir"
    rm -rf "$CACHE/dl-$pkg"
    touch "$dir/.complete"
    # Older builds of the same series are not used again.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name "linux-image-$2[.-]*-cloud-amd64" \
      ! -name "$pkg" -exec rm -rf {} +
  fi
  echo "$dir"
}

# --- initramfs ----------------------------------------------------------------------------
# Copies an executable or library into the image with every shared library it needs.
copy_with_libs() {
  local src=$1 dest=$2 root=$3 lib
  mkdir -p "$root/$(dirname "$dest")"
  # Debug info is most of a test binary's size and useless in the VM.
  objcopy --strip-debug "$src" "$root/$dest" 2>/dev/null || cp "$src" "$root/$dest"
  chmod 755 "$root/$dest"
  while read -r lib; do
    [[ -e "$root/$lib" ]] && continue
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done < <(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true)
}

# The standard library of the host's python3, and the shared libraries of its extension
# modules (libffi for ctypes, ...).
copy_python_stdlib() {
  local python=$1 root=$2 stdlib so
  stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
  mkdir -p "$root/$stdlib"
  tar -C "$stdlib" --exclude=./test --exclude=./idlelib --exclude=./tkinter \
    --exclude=./turtledemo --exclude=./lib2to3 --exclude=./ensurepip --exclude=./pydoc_data \
    --exclude=./config-\* -cf - . | tar -C "$root/$stdlib" -xf -
  for so in "$stdlib"/lib-dynload/*.so; do
    copy_with_libs "$so" "$so" "$root"
  done
}

build_initramfs() {
  local kdir=$1 release=$2 out=$4 root="$work/root-$2" entry name bin tool mod
  rm -rf "$root"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,root,etc,tests,modules}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  ln -s bin "$root/sbin"
  # /var/tmp like /tmp: on the NVMe disk (tests write files "on a block device" there).
  mkdir -p "$root/var" && ln -s ../run "$root/var/run" && ln -s ../tmp "$root/var/tmp"
  copy_with_libs "$kadvisor_bin" /bin/kadvisor "$root"
  for entry in "${test_bins[@]}"; do
    name=${entry%% *}
    bin=${entry#* }
    copy_with_libs "$bin" "/tests/$name" "$root"
  done
  for tool in "${TOOLS[@]}"; do
    [[ -x "$tool" ]] || die "tool $tool not installed (scripts/setup.sh installs the test tools)"
    copy_with_libs "$(readlink -f "$tool")" "$tool" "$root"
    [[ "$tool" == */python3 ]] && copy_python_stdlib "$tool" "$root"
  done
  # The tracked source files (scripts, fixtures, examples, docs the tests read), bound
  # at the build path by /init (after /tmp is mounted: the build path may be under it).
  mkdir -p "$root/src"
  git ls-files -z | tar --null -T - -cf - | tar -C "$root/src" -xf -
  printf '%s\n' "$PWD" >"$root/etc/workspace"
  cp scripts/test-table.sh "$root/bin/test-table"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

  # Modules: depmod on the unpacked tree, then the load order of each module's
  # dependencies, decompressed (busybox insmod reads plain .ko).
  if ((${#MODULES[@]})); then
    [[ -f "$kdir/lib/modules/$release/modules.dep" ]] || depmod -b "$kdir" "$release"
    local n=0
    for mod in "${MODULES[@]}"; do
      while read -r _ path; do
        local name ko
        name=$(basename "$path")
        name=${name%.xz}
        name=${name%.zst}
        # A dependency shared by two modules (virtio_ring) is loaded once.
        compgen -G "$root/modules/*-$name" >/dev/null && continue
        n=$((n + 1))
        ko="$root/modules/$(printf '%02d' $n)-$name"
        case "$path" in
        *.xz) xz -dc "$path" >"$ko" ;;
        *.zst) zstd -qdc "$path" >"$ko" ;;
        *) cp "$path" "$ko" ;;
        esac
      done < <(modprobe -d "$kdir" -S "$release" --show-depends "$mod" | grep '^insmod ')
    done
  fi

  cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the kernel-matrix guest: a pure cgroup v2 host, then every test binary.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp KADVISOR_BIN=/bin/kadvisor RUST_BACKTRACE=1 NO_COLOR=1
fail() { echo "KADVISOR-MATRIX-RESULT 1 setup: $*"; poweroff -f; sleep 5; echo o >/proc/sysrq-trigger; }
mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
mount -t tracefs tracefs /sys/kernel/tracing || fail "mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || fail "enable controller $c"
done
for ko in /modules/*.ko; do
  [ -e "$ko" ] && { insmod "$ko" || fail "insmod $ko"; }
done
mount -t ext4 /dev/nvme0n1 /tmp || fail "mount the NVMe disk at /tmp"
ip link set lo up || fail "loopback up"
for dev in /sys/class/net/*; do
  [ "${dev##*/}" = lo ] || ip link set "${dev##*/}" up || fail "link ${dev##*/} up"
done
echo "matrix: network interfaces: $(ls /sys/class/net | tr '\n' ' ')"
workspace=$(cat /etc/workspace)
mkdir -p "$workspace" && mount --bind /src "$workspace" || fail "bind the source tree at $workspace"
# The IO precondition: a direct write from a cgroup to /tmp shows up in its io.stat
# against the NVMe disk, as IO tests expect.
check=/sys/fs/cgroup/kadvisor-matrix-io-check
mkdir "$check" || fail "mkdir $check"
sh -c "echo \$\$ >$check/cgroup.procs && exec dd if=/dev/zero of=/tmp/io-check bs=1M count=4 oflag=direct" 2>/dev/null ||
  fail "direct write to /tmp"
grep -q "^$(cat /sys/block/nvme0n1/dev) .*wbytes=[1-9]" "$check/io.stat" ||
  fail "no NVMe writes in io.stat of a cgroup that wrote: $(cat "$check/io.stat")"
echo "matrix: io.stat after a 4 MiB direct write: $(cat "$check/io.stat")"
rm -f /tmp/io-check
rmdir "$check"
echo "matrix: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
set --
for bin in /tests/*; do set -- "$@" "${bin##*/}=$bin"; done
/bin/bash /bin/test-table "$(uname -r) (pure cgroup v2, busybox init)" "$@"
status=$?
sync
echo "KADVISOR-MATRIX-RESULT $status"
poweroff -f
EOF
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$root"
}

# --- boot -------------------------------------------------------------------------------------
# Prepares a kernel's guest (package, initramfs, NVMe disk); prints its release.
prepare_kernel() {
  local series=$1 pkg kdir release vmlinuz disk
  pkg=$(kernel_package "$series") || return 1
  kdir=$(fetch_kernel "$pkg" "$series") || return 1
  vmlinuz=$(find "$kdir/boot" -name 'vmlinuz-*' | head -n1)
  [[ -n "$vmlinuz" ]] || { log "no vmlinuz in $kdir/boot"; return 1; }
  release=${vmlinuz##*/vmlinuz-}
  build_initramfs "$kdir" "$release" "$series" "$work/initrd-$series.gz"
  [[ -s "$work/initrd-$series.gz" ]] || { log "building the initramfs failed"; return 1; }
  disk="$work/disk-$series.img"
  truncate -s 512M "$disk" && mkfs.ext4 -q -F "$disk" || { log "making the NVMe disk image failed"; return 1; }
  ln -sf "$vmlinuz" "$work/vmlinuz-$series"
  echo "$release" >"$work/release-$series"
}

# Boots a prepared guest and waits for its result marker; the console goes to
# $work/console-<series>.log, and also to stdout when `echo` is 1.
boot_kernel() {
  local series=$1 echo=$2 release logf result start took
  release=$(cat "$work/release-$series")
  logf="$work/console-$series.log"
  start=$(date +%s)
  log "booting $release ($(du -h "$work/initrd-$series.gz" | cut -f1) initramfs, timeout ${TIMEOUT}s)"
  # thread=single: with one host thread per vCPU (MTTCG) the guest oopsed on an int3
  # left by the kernel's live code patching (a tracepoint's static key flipped when
  # kadvisor attached: "Oops: int3 ... update_curr") on 6.12. One TCG thread running
  # both vCPUs in turn executes cross-modified code correctly.
  # The NIC: a node's root network namespace has a real interface (the root row's
  # interfaces); restrict=on keeps the guest off the host's network.
  timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=single -cpu max -m 2G -smp 2 -nographic -no-reboot \
    -kernel "$work/vmlinuz-$series" -initrd "$work/initrd-$series.gz" \
    -append "console=ttyS0 panic=-1 oops=panic loglevel=4 rdinit=/init" \
    -drive "file=$work/disk-$series.img,if=none,id=disk0,format=raw" -device nvme,drive=disk0,serial=kadvisor0 \
    -netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0 \
    </dev/null 2>&1 | tr -d '\r' | if ((echo)); then tee "$logf"; else cat >"$logf"; fi || true
  result=$(grep -a '^KADVISOR-MATRIX-RESULT ' "$logf" | tail -n1 || true)
  grep -a '^table: ' "$logf" | sed 's/^table: //' >"$work/table-$series" || true
  took=$(($(date +%s) - start))
  if [[ -z "$result" ]]; then
    log "$release: FAILED: no result marker (guest panic, crash or timeout after ${TIMEOUT}s) [${took}s]"
    echo "$series: FAILED (no result marker) [${took}s]" >"$work/summary-$series"
    return 1
  fi
  if [[ "$result" == "KADVISOR-MATRIX-RESULT 0" ]]; then
    log "$release: passed [${took}s]"
    echo "$series: passed [${took}s]" >"$work/summary-$series"
    return 0
  fi
  log "$release: FAILED [${took}s]"
  echo "$series: FAILED [${took}s]" >"$work/summary-$series"
  return 1
}

overall=0
prepared=()
for series in "${KERNELS[@]}"; do
  case "$series" in 6.1 | 6.12) ;; *) die "unknown kernel series $series (6.1 or 6.12)" ;; esac
  if prepare_kernel "$series"; then
    prepared+=("$series")
  else
    echo "$series: FAILED (preparing the guest)" >"$work/summary-$series"
    overall=1
  fi
done
# Each guest is one TCG thread (one host core): with KADVISOR_MATRIX_JOBS=2 (the
# default when the host has at least 2 CPUs) both kernels boot at once and their
# consoles are printed when both are done; with 1 they run one after the other.
jobs=${KADVISOR_MATRIX_JOBS:-$(($(nproc) >= 2 ? 2 : 1))}
if ((jobs > 1 && ${#prepared[@]} > 1)); then
  pids=()
  for series in "${prepared[@]}"; do
    boot_kernel "$series" 0 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || overall=1; done
  for series in "${prepared[@]}"; do
    printf '\n=== console of the %s guest\n' "$series"
    cat "$work/console-$series.log"
  done
else
  for series in "${prepared[@]}"; do boot_kernel "$series" 1 || overall=1; done
fi
# One table per kernel, after all the console output.
for series in "${KERNELS[@]}"; do
  [[ -s "$work/table-$series" ]] && cat "$work/table-$series"
done
for series in "${KERNELS[@]}"; do log "$(cat "$work/summary-$series")"; done
exit $overall
