#!/usr/bin/env bash
# Idempotent setup for building and testing kadvisor on a fresh Debian machine.
#
# Installs: Debian packages used by the build and tests, the rust-src component (the
# kernel crate is built with -Z build-std=core), bpf-linker built from crates.io against
# the toolchain's own LLVM, and mounts bpffs/tracefs when missing. Every step checks
# before it acts, so running it twice does nothing the second time.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

export PATH="$HOME/.cargo/bin:$PATH"

# --- Debian packages -------------------------------------------------------
# prometheus: promtool parses our exposition in tests. stress-ng/linux-perf: load and
# benchmarks. busybox-static, qemu: kernel matrix. iproute2: network namespaces.
DEB_PACKAGES=(prometheus linux-perf stress-ng busybox-static iproute2 qemu-system-x86 cpio kmod)
# mmdebstrap: the kernel matrix's node image from Debian's packages (scripts/vm-image.sh).
# fdisk: sfdisk writes the node image's partition table (scripts/vm-image.sh).
DEB_PACKAGES+=(mmdebstrap fdisk)
# python3: workloads of the CPU, process and crash tests (/usr/bin/python3) and
# scripts/measure-sched-hook.sh.
DEB_PACKAGES+=(python3)
# python3-yaml: scripts/gen-profiles.py (reads the upstream manifests of the profiles).
DEB_PACKAGES+=(python3-yaml)
# iperf3: network load for scripts/measure-net-hooks.sh.
DEB_PACKAGES+=(iperf3)
# containerd + runc: the real runtime of the container end-to-end tests (started by the
# test with a private config). protobuf-compiler: protoc for the CRI API bindings.
DEB_PACKAGES+=(containerd runc protobuf-compiler)
# python3-venv: the venv of the deploy/ and dashboards/ validators (below).
DEB_PACKAGES+=(python3-venv)
# jq, e2fsprogs, xz-utils: kernel matrix (test binary list, NVMe disk, xz modules).
DEB_PACKAGES+=(jq e2fsprogs xz-utils)
# containernetworking-plugins: ptp/host-local/loopback CNI plugins for the test pod with its
# own network namespace (tests/src/containerd.rs, Containerd::enable_pod_network).
DEB_PACKAGES+=(containernetworking-plugins)
# chromium: the web UI test drives the page in a real headless browser (tests/tests/web_ui.rs).
# fonts-dejavu-core: a font for its text in screenshots.
DEB_PACKAGES+=(chromium fonts-dejavu-core)
# strace: the scrape-engine benchmark counts one scrape's syscalls (bench/src/engine.rs).
DEB_PACKAGES+=(strace)
# podman: builds and runs the container image (scripts/image.sh, tests/tests/image.rs).
DEB_PACKAGES+=(podman)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust components ---------------------------------------------------------
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  log "adding rust-src"
  rustup component add rust-src
fi

# --- bpf-linker against the toolchain's LLVM ----------------------------------
# The toolchain ships libLLVM; bpf-linker must link the same major version, so it
# is built from source with LLVM_PREFIX pointing at a directory holding that lib.
BPF_LINKER_VERSION=0.13.0
sysroot=$(rustc --print sysroot)
libllvm=$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM.so.*' | head -n1)
[[ -n "$libllvm" ]] || { echo "setup: no libLLVM in $sysroot/lib" >&2; exit 1; }
llvm_major=$(basename "$libllvm" | sed -E 's/libLLVM\.so\.([0-9]+).*/\1/')
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM $llvm_major ($libllvm)"
  prefix="$HOME/.cache/kadvisor/llvm-prefix"
  mkdir -p "$prefix/lib"
  ln -sf "$libllvm" "$prefix/lib/libLLVM.so"
  LLVM_PREFIX="$prefix" RUSTFLAGS="-C link-arg=-Wl,-rpath,$sysroot/lib" \
    cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
      --no-default-features --features "llvm-$llvm_major"
fi

# --- Validators for deploy/ and dashboards/ (tests/tests/kube_prometheus.rs) ------
# Pinned, in a project-local directory outside git. Python: kubernetes-validate
# (Kubernetes OpenAPI schemas, offline), gojsonnet (compiles the jsonnet addon),
# jsonpatch (applies the kustomize component's JSON patch). npm: the
# prometheus-operator CRD models (ServiceMonitor schema), Grafana's foundation SDK
# (dashboard types), ts-json-schema-generator + ajv (turn those TypeScript types
# into strict JSON schemas and check against them), yaml.
TOOLS="${KADVISOR_TOOLS:-$HOME/.cache/kadvisor/tools}"
PY_PACKAGES=(kubernetes-validate==1.33.0 gojsonnet==0.21.0 jsonpatch==1.33)
NPM_PACKAGES=(@kubernetes-models/prometheus-operator@6.0.0 @grafana/grafana-foundation-sdk@0.0.21
  ts-json-schema-generator@2.4.0 ajv@8.17.1 yaml@2.8.1)
if [[ "$(cat "$TOOLS/venv/.kadvisor-packages" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]]; then
  log "installing Python validators into $TOOLS/venv: ${PY_PACKAGES[*]}"
  mkdir -p "$TOOLS"
  /usr/bin/python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" >"$TOOLS/venv/.kadvisor-packages"
fi
if ! command -v npm >/dev/null; then
  log "installing nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [[ "$(cat "$TOOLS/node/.kadvisor-packages" 2>/dev/null)" != "${NPM_PACKAGES[*]}" ]]; then
  log "installing npm validators into $TOOLS/node: ${NPM_PACKAGES[*]}"
  mkdir -p "$TOOLS/node"
  echo '{"private": true}' >"$TOOLS/node/package.json"
  npm install --prefix "$TOOLS/node" --no-audit --no-fund --save-exact --loglevel=error "${NPM_PACKAGES[@]}"
  echo "${NPM_PACKAGES[*]}" >"$TOOLS/node/.kadvisor-packages"
fi

# --- The web UI's charting library (exporter/build.rs embeds it) -------------------
# uPlot from npm, pinned in exporter/src/http/ui/assets/uplot.version; only the files
# the page serves and the licence are kept. `npm pack` checks the registry's integrity hash.
UPLOT_VERSION=$(tr -d "[:space:]" <"$(dirname "$0")/../exporter/src/http/ui/assets/uplot.version")
UPLOT_DIR="$HOME/.cache/kadvisor/web/uplot-$UPLOT_VERSION"
if [[ ! -f "$UPLOT_DIR/.complete" ]]; then
  log "fetching uPlot $UPLOT_VERSION into $UPLOT_DIR"
  pack=$(mktemp -d)
  (cd "$pack" && npm pack --silent --loglevel=error "uplot@$UPLOT_VERSION" >/dev/null)
  tar -xzf "$pack"/uplot-*.tgz -C "$pack"
  mkdir -p "$UPLOT_DIR"
  cp "$pack/package/dist/uPlot.iife.min.js" "$pack/package/dist/uPlot.min.css" \
    "$pack/package/LICENSE" "$UPLOT_DIR/"
  rm -rf "$pack"
  touch "$UPLOT_DIR/.complete"
fi

# --- Filesystems the loader needs ----------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
fi
log "ok"
