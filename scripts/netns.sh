#!/usr/bin/env bash
# Create or destroy a private test topology: two network namespaces, each
# with a persistent multi-queue TAP and an address, so that the kernel in
# one namespace can talk to the kernel in the other only through bypass.
#   scripts/netns.sh up   [PREFIX]   # namespaces PREFIX-a, PREFIX-b; taps PREFIX-a0, PREFIX-b0
#   scripts/netns.sh down [PREFIX]
# Addresses: 10.77.0.1/24 in -a, 10.77.0.2/24 in -b (inside the namespaces only).
set -euo pipefail
cmd=${1:-}; P=${2:-bp}
. "$(dirname "$0")/as-root.sh"
as_root "$@"
case "$cmd" in
  up)
    for side in a b; do
      ns=$P-$side; tap=$P-${side}0
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      # Quiet links: no IPv6 autoconfiguration chatter.
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
      ip -n "$ns" tuntap add mode tap multi_queue name "$tap"
      ip -n "$ns" addr add "10.77.0.$([ $side = a ] && echo 1 || echo 2)/24" dev "$tap"
      ip -n "$ns" link set "$tap" up
    done
    echo "netns: $P-a (10.77.0.1 on $P-a0) and $P-b (10.77.0.2 on $P-b0) are up"
    ;;
  down)
    for side in a b; do ip netns del "$P-$side" 2>/dev/null || true; done
    echo "netns: $P-a and $P-b removed"
    ;;
  *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
esac
