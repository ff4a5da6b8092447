#!/usr/bin/env bash
# The bypass demo: two private network namespaces whose kernels can reach
# each other only through bypass, forwarding between two TAP ports in
# userspace, with live stats. Installs and builds what it needs first.
#   ./scripts/demo-l2fwd.sh [SECONDS]
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
as_root "$@"
cd "$(dirname "$0")/.."
secs=${1:-15}
scripts/install-deps.sh >/dev/null
cargo build --release --quiet
P=bpdemo
scripts/netns.sh down $P >/dev/null 2>&1 || true
scripts/netns.sh up $P
bp_pid=""
cleanup() {
  [ -n "$bp_pid" ] && kill "$bp_pid" 2>/dev/null || true
  scripts/netns.sh down $P >/dev/null
}
trap cleanup EXIT INT TERM

./target/release/bypass l2fwd --port "tap:$P-a0,netns=$P-a" --port "tap:$P-b0,netns=$P-b" \
  --cores 0 --duration "$secs" --stats-interval 1 --idle-sleep-us 20 &
bp_pid=$!
sleep 1
echo "demo: kernel in $P-a pings 10.77.0.2 in $P-b through bypass (flood, bounded)"
ip netns exec $P-a ping -q -f -c 50000 -w $((secs - 3)) 10.77.0.2 || true
wait "$bp_pid"
bp_pid=""
