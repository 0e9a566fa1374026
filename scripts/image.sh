#!/usr/bin/env bash
# Builds kadvisor's container image with podman from the Containerfile at the
# repository root: the release binary, the shared libraries it links (this Debian
# host's, with their copyright files), the licence texts of the project and of every
# Rust crate compiled into the binary, and nothing else.
#
#   scripts/image.sh [IMAGE]        default IMAGE: localhost/kadvisor:<version>
#
# Then push it where your nodes pull from, e.g.
#   podman push localhost/kadvisor:0.1.0 registry.example.com/kadvisor:0.1.0
# and name it in deploy/kube-prometheus/base/kustomization.yaml (docs/install.md).
# Runs scripts/setup.sh first (idempotent: podman, the toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'image: %s\n' "$*" >&2; }

scripts/setup.sh
version=$(cargo metadata --no-deps --format-version 1 --locked |
  jq -r '.packages[] | select(.name == "kadvisor") | .version')
image=${1:-localhost/kadvisor:$version}

cargo build --release --locked --package kadvisor --bin kadvisor
binary=target/release/kadvisor

# --- the build context: target/image/rootfs is the image's whole filesystem -----
context=target/image
rootfs=$context/rootfs
licenses=$rootfs/usr/share/licenses
rm -rf "$context"
mkdir -p "$rootfs/usr/bin" "$licenses/kadvisor" "$licenses/debian" "$licenses/rust"
# Same mtime for every staged file, so an unchanged build hits podman's layer cache.
stamp=$(git log -1 --format=%ct 2>/dev/null || echo 0)

cp "$binary" "$rootfs/usr/bin/kadvisor"
cp LICENSE "$licenses/kadvisor/LICENSE"

# Shared libraries at the paths the binary names them (the ELF interpreter's path is
# absolute), each with the copyright file of the Debian package that ships it.
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
  while read -r lib; do
    install -D --mode 0755 "$(readlink -f "$lib")" "$rootfs$lib"
    package=$(dpkg-query --search "$lib" 2>/dev/null || dpkg-query --search "$(readlink -f "$lib")")
    package=${package%%:*}
    cp "/usr/share/doc/$package/copyright" "$licenses/debian/$package.copyright"
  done

# Licence texts of the crates linked into the binary (normal dependencies of the
# daemon, and of the eBPF programs embedded in it), with their SPDX expressions.
crates=$( {
  cargo tree --locked --package kadvisor --edges normal --prefix none --format '{p}'
  cargo tree --locked --package kadvisor-ebpf --target bpfel-unknown-none --edges normal \
    --prefix none --format '{p}'
} | awk '{ print $1 " " substr($2, 2) }' | sort -u)
cargo metadata --format-version 1 --locked |
  jq -r '.packages[] | [.name, .version, (.license // "none"), (.manifest_path | rtrimstr("/Cargo.toml"))] | @tsv' |
  sort -u >"$context/packages.tsv"
{
  echo "Rust crates compiled into /usr/bin/kadvisor: name version SPDX licence"
  while read -r name crate_version; do
    row=$(awk -F'\t' -v n="$name" -v v="$crate_version" '$1 == n && $2 == v' "$context/packages.tsv")
    [[ -n "$row" ]] || { log "no metadata for crate $name $crate_version"; exit 1; }
    IFS=$'\t' read -r _ _ spdx dir <<<"$row"
    echo "$name $crate_version $spdx"
    found=0
    for text in "$dir"/LICEN[CS]E* "$dir"/COPYING* "$dir"/NOTICE*; do
      [[ -f "$text" ]] || continue
      install -D --mode 0644 "$text" "$licenses/rust/$name-$crate_version/$(basename "$text")"
      found=1
    done
    if ((!found)) && [[ "$dir" == "$PWD"/* ]]; then
      # The project's own crates: the repository's licence.
      install -D --mode 0644 LICENSE "$licenses/rust/$name-$crate_version/LICENSE"
    fi
  done <<<"$crates"
} >"$licenses/rust/CRATES.txt"
rm "$context/packages.tsv"
find "$rootfs" -exec touch --no-dereference --date="@$stamp" {} +

log "building $image from $(du -sh "$rootfs" | cut -f1) of files"
podman build --quiet --file Containerfile --build-arg "VERSION=$version" --tag "$image" "$context"
log "built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
