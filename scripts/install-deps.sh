#!/usr/bin/env bash
# Installs what bypass needs to build and test, idempotently.
# Debian/Ubuntu: DPDK (libdpdk-dev, dpdk, dpdk-dev for dpdk-testpmd), clang for bindgen,
# iproute2 for namespaces, curl/iputils for kernel-side clients, nginx for the
# http benchmark baseline, valgrind for instruction counts, nftables and ethtool
# for the lossy path of `bypass bench lossy` (tc comes with iproute2).
set -euo pipefail
. "$(dirname "$0")/as-root.sh"

PKGS=(pkg-config libdpdk-dev dpdk dpdk-dev libclang-dev clang iproute2 iputils-ping curl wrk util-linux
      ethtool valgrind tshark nginx-light nftables dpdk-doc make)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  as_root "$@"
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs) first." >&2
  exit 1
fi
echo "install-deps: all dependencies present"
