#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs formatting and
# lint checks and every unit and integration test with every backend, as
# root (the TAP, AF_XDP and DPDK tests create interfaces inside private
# network namespaces of their own).
# The privileged tests are marked `#[ignore = "needs root"]` (a plain
# `cargo test` lists them as ignored, never as passed); this script runs
# them too, with --include-ignored. As root it runs directly; otherwise it
# re-runs itself under sudo.
#   ./scripts/test.sh            # everything (about 10-20 minutes)
#   ./scripts/test.sh -- FILTER  # only tests whose name matches FILTER
set -euo pipefail
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  echo "usage: $0 [-- FILTER]: runs every test, or only those whose name matches FILTER" >&2
  exit 2
fi
. "$(dirname "$0")/as-root.sh"
as_root "$@"
cd "$(dirname "$0")/.."
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
# `scenario` tests are the DPDK child processes their parent tests start;
# `steer_cost` and `*_cost_on_a_manual_clock` are cost measurements, run by
# hand under callgrind.
cargo test --workspace --all-features --no-fail-fast -- --include-ignored --skip scenario \
  --skip steer_cost --skip cost_on_a_manual_clock "${filter[@]}"
# The TCP tests once more on the other engine: both engines must pass every
# stack, kernel, hostile, multi-core, async and CLI test. The default engine
# is bypass's own; this run is smoltcp's socket.
echo "== cargo test, TCP tests on the smoltcp engine"
BYPASS_TCP_ENGINE=smoltcp cargo test --all-features --no-fail-fast \
  --test stack_mem --test stack_faults --test stack_multicore --test hostile --test tcp_kernel --test tcp_kernel_cores --test tcp_kernel_v6 \
  --test cli --test loadgen --test soak --test fuzz_replay --test rt_mem --test rt_kernel \
  -- --include-ignored --skip steer_cost --skip cost_on_a_manual_clock "${filter[@]}"
echo "== leftovers"
left=$(ip netns list | grep -E '^(bpt|bpl)-' || true)
if [ -n "$left" ]; then
  echo "test.sh: tests left namespaces behind: $left" >&2
  exit 1
fi
echo "test.sh: all passed"
