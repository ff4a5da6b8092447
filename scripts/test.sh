#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs formatting and
# lint checks and every unit and integration test with every backend, as
# root (the TAP, AF_XDP and DPDK tests create interfaces inside private
# network namespaces of their own).
#   sudo ./scripts/test.sh            # everything (about 10-20 minutes)
#   sudo ./scripts/test.sh -- FILTER  # only tests whose name matches FILTER
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the suite creates network namespaces and interfaces; run it as root (sudo $0)" >&2
  exit 1
fi
filter=()
if [ "${1:-}" = "--" ]; then shift; filter=("$@"); fi

scripts/install-deps.sh
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp"
done

# Hugepages for the tests that use them; give back what we took.
hp_before=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
  echo "$hp_before" > /proc/sys/vm/nr_hugepages || true
}
trap cleanup EXIT
if [ "$hp_before" -lt 256 ]; then
  echo 256 > /proc/sys/vm/nr_hugepages || true
fi

export CARGO_TERM_COLOR=never
if [ ${#filter[@]} -eq 0 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy (default features, then all features)"
  cargo clippy --workspace --all-targets -- -D warnings
  cargo clippy --workspace --all-targets --all-features -- -D warnings
fi
echo "== cargo test (all features)"
cargo test --workspace --all-features --no-fail-fast -- "${filter[@]}"
# Privileged tests marked #[ignore = "needs root"]. Only these files: other
# ignored tests are helpers run in a child process of their own (DPDK's EAL
# starts once per process) or manual workloads.
echo "== cargo test (needs root)"
cargo test --all-features --no-fail-fast --test lossy_path -- --include-ignored "${filter[@]}"
echo "== leftovers"
left=$(ip netns list | grep -E '^(bpt|bpl)-' || true)
if [ -n "$left" ]; then
  echo "test.sh: tests left namespaces behind: $left" >&2
  exit 1
fi
echo "test.sh: all passed"
