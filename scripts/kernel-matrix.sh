#!/usr/bin/env bash
# Kernel matrix: runs every privileged integration test binary (tests/tests/*.rs) on
# Debian's 6.1 and 6.12 cloud kernels, each booted under qemu (TCG, no KVM) as a small
# real node: pure cgroup v2, systemd as PID 1, containerd + runc with the systemd
# cgroup driver, Prometheus; and prints one table per kernel: every test passed,
# failed, or ignored with the reason its own code gives (tests/src/ignore.rs: a test
# that needs what this node lacks says so itself; there is no list of exclusions here).
#
#   scripts/kernel-matrix.sh            # both kernels
#   scripts/kernel-matrix.sh 6.12       # one kernel (6.1 or 6.12)
#
# The root filesystem is Debian bookworm built from Debian's packages by
# scripts/vm-image.sh (cached under ~/.cache/kadvisor/vm, rebuilt when its recipe
# changes). Per kernel: the newest linux-image-<series>.*-cloud-amd64 that apt sees is
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# ~/.cache/kadvisor/kernels (reruns reuse it). A second disk (ext4 on NVMe like the
# root disk: the cloud kernels have no 9p) brings `kadvisor`, the test binaries, the
# kernels' modules, the source tree's files the tests read (bound at the build path:
# tests read scripts and fixtures through env!("CARGO_MANIFEST_DIR")),
# and the runner (scripts/vm-run-tests.sh); the image's kadvisor-matrix.service mounts
# it and runs every binary through scripts/test-table.sh. Both disks are opened with
# snapshot=on: the cached image is never written. The exit status is non-zero when any
# test fails on any kernel, when a guest panics, or when a guest does not finish
# within KADVISOR_MATRIX_TIMEOUT seconds (default 3000; a guest's full run takes about
# 17 min, both at once on this 2-core host). KADVISOR_MATRIX_JOBS=1 boots
# the kernels one after the other (default: both at once on a host with 2 CPUs or
# more). KADVISOR_MATRIX_TESTS="cpu memory ..." runs only those test binaries (for a
# quick check while developing; CI runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

KERNELS=("$@")
((${#KERNELS[@]})) || KERNELS=(6.1 6.12)
CACHE="${KADVISOR_CACHE:-$HOME/.cache/kadvisor}/kernels"
TIMEOUT="${KADVISOR_MATRIX_TIMEOUT:-3000}"

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

work=$(mktemp -d /tmp/kadvisor-matrix.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- the node's root filesystem (cached) -----------------------------------------------------
rootfs=$(scripts/vm-image.sh) || die "building the VM image failed"
[[ -f "$rootfs" ]] || die "scripts/vm-image.sh printed no image path: $rootfs"
root_partuuid=$(sfdisk --part-uuid "$rootfs" 1) || die "no root partition in $rootfs"

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

# --- the test disk (one for every kernel) ----------------------------------------------------
copy_stripped() {
  # Debug info is most of a test binary's size and useless in the VM.
  objcopy --strip-debug "$1" "$2" 2>/dev/null || cp "$1" "$2"
  chmod 755 "$2"
}

# Args: the unpacked kernel directories. Makes $work/tests.img.
build_test_disk() {
  local d="$work/disk" entry kdir release mib
  rm -rf "$d"
  mkdir -p "$d"/{bin,tests,lib/modules,src}
  copy_stripped "$kadvisor_bin" "$d/bin/kadvisor"
  for entry in "${test_bins[@]}"; do
    copy_stripped "${entry#* }" "$d/tests/${entry%% *}"
  done
  # Each kernel's modules with their index (the package's postinst would run depmod):
  # modprobe loads veth, loop, overlay, bridge, netfilter on demand.
  for kdir in "$@"; do
    release=$(basename "$(find "$kdir/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
    cp -a "$kdir/lib/modules/$release" "$d/lib/modules/"
    depmod -b "$d" "$release"
  done
  # The source tree's tracked files (README.md, deploy/, fixtures the tests read).
  git ls-files -z | tar --null -T - -cf - | tar -C "$d/src" -xf -
  printf 'WORKSPACE=%q\n' "$PWD" >"$d/env"
  # Not the validators of deploy/ and dashboards/ (scripts/setup.sh): they check files,
  # nothing kernel-specific, run on the host, and took 4 min per guest under TCG; the
  # tests that need them say so (tests/src/validators.rs) and count as ignored.
  cp scripts/vm-run-tests.sh "$d/run-tests"
  cp scripts/test-table.sh "$d/test-table"
  chmod 755 "$d/run-tests" "$d/test-table"
  mib=$(($(du -sm "$d" | cut -f1) * 12 / 10 + 64))
  mkfs.ext4 -q -F -L kadvisor-tests -d "$d" "$work/tests.img" "${mib}M"
  rm -rf "$d"
}

# --- boot -------------------------------------------------------------------------------------
# Prepares a kernel (package, unpacked tree); prints its directory.
prepare_kernel() {
  local series=$1 pkg kdir vmlinuz
  pkg=$(kernel_package "$series") || return 1
  kdir=$(fetch_kernel "$pkg" "$series") || return 1
  vmlinuz=$(find "$kdir/boot" -name 'vmlinuz-*' | head -n1)
  [[ -n "$vmlinuz" ]] || { log "no vmlinuz in $kdir/boot"; return 1; }
  ln -sf "$vmlinuz" "$work/vmlinuz-$series"
  echo "${vmlinuz##*/vmlinuz-}" >"$work/release-$series"
  echo "$kdir"
}

# Boots a prepared guest and waits for its result marker; the console goes to
# $work/console-<series>.log, and also to stdout when `echo` is 1.
boot_kernel() {
  local series=$1 echo=$2 release logf result start took
  release=$(cat "$work/release-$series")
  logf="$work/console-$series.log"
  start=$(date +%s)
  log "booting $release on $(basename "$rootfs") (timeout ${TIMEOUT}s)"
  # thread=single: with one host thread per vCPU (MTTCG) the guest oopsed on an int3
  # left by the kernel's live code patching (a tracepoint's static key flipped when
  # kadvisor attached: "Oops: int3 ... update_curr") on 6.12. One TCG thread running
  # both vCPUs in turn executes cross-modified code correctly.
  # no_timer_check: on a loaded host the emulated timer misses the kernel's IO-APIC
  # check ("IO-APIC + timer doesn't work", a panic at 0.04 s; seen on 6.12).
  # No initramfs: the cloud kernels build NVMe, GPT and ext4 in. The root is named by its
  # partition's UUID (scripts/vm-image.sh), the test disk by its label: no device name,
  # since their probe order varies (6.12 scans NVMe namespaces asynchronously; with
  # root=/dev/nvme0n1 a 6.12 guest found no init on the test disk about one boot in six).
  # The NIC: a node's root network namespace has a real interface (the root row's
  # interfaces); restrict=on keeps the guest off the host's network.
  timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=single -cpu max -m 3G -smp 2 -nographic -no-reboot \
    -kernel "$work/vmlinuz-$series" \
    -append "root=PARTUUID=$root_partuuid rw rootwait console=ttyS0 panic=-1 oops=panic loglevel=4 systemd.show_status=0 net.ifnames=0 no_timer_check" \
    -drive "file=$rootfs,if=none,id=root,format=raw,snapshot=on" \
    -drive "file=$work/tests.img,if=none,id=tests,format=raw,snapshot=on" \
    -device nvme,id=nvme0,serial=kadvisor \
    -device nvme-ns,drive=root,bus=nvme0,nsid=1 -device nvme-ns,drive=tests,bus=nvme0,nsid=2 \
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
  log "$release: FAILED: ${result#KADVISOR-MATRIX-RESULT } [${took}s]"
  echo "$series: FAILED [${took}s]" >"$work/summary-$series"
  return 1
}

overall=0
prepared=()
kdirs=()
for series in "${KERNELS[@]}"; do
  case "$series" in 6.1 | 6.12) ;; *) die "unknown kernel series $series (6.1 or 6.12)" ;; esac
  if kdir=$(prepare_kernel "$series"); then
    prepared+=("$series")
    kdirs+=("$kdir")
  else
    echo "$series: FAILED (preparing the guest)" >"$work/summary-$series"
    overall=1
  fi
done
((${#prepared[@]})) && build_test_disk "${kdirs[@]}"
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
