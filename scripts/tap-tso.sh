#!/usr/bin/env bash
# TSO over TAP, measured: the bypass engine on `tap:NAME,vnet` (the
# baseline) against `tap:NAME,vnet,tso`, in the same run, with kernel
# clients in private network namespaces:
#  1. the demo (HTTP /plaintext, wrk, 64 keep-alive connections): req/s,
#     the two modes alternated ROUNDS times, medians;
#  2. a bulk echo of MIB MiB each way through the router namespace of
#     `bench lossy` (no loss): Mbit/s, the median of 5 transfers per mode.
# Prints every figure and the ratio tso/vnet of each. Bounded: each demo
# run lasts DEMO_SECONDS (+2 s), each bulk transfer at most 60 s.
#   ./scripts/tap-tso.sh [ROUNDS] [DEMO_SECONDS] [MIB]
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
as_root "$@"
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
mib=${3:-64}
cargo build --release --quiet
bin=./target/release/bypass
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "tap-tso: load average before: $(load) (2 CPUs: above ~1 the figures are noisy)"

declare -A reqs=([vnet]="" [tso]="")
for r in $(seq "$rounds"); do
  for mode in vnet tso; do
    rps=$(timeout $((secs + 30)) "$bin" demo --duration "$secs" "--$mode" --json 2>&1 >/dev/null |
      awk '/Requests\/sec:/ { print $2 }')
    [ -n "$rps" ] || { echo "tap-tso: demo --$mode gave no req/s" >&2; exit 1; }
    echo "  demo round $r, $mode: $rps req/s"
    reqs[$mode]+="$rps "
  done
done

bulk_json=$(timeout 900 "$bin" bench lossy --scenarios bulk --loss 0 --mib "$mib" --repeat 5 \
  --bypass "vnet=--tcp bypass --tap vnet" --bypass "tso=--tcp bypass --tap vnet,tso" --json)

python3 - "${reqs[vnet]}" "${reqs[tso]}" "$bulk_json" "$mib" <<'EOF'
import json, statistics, sys
vnet = [float(x) for x in sys.argv[1].split()]
tso = [float(x) for x in sys.argv[2].split()]
bulk = json.loads(sys.argv[3])
mib = sys.argv[4]
mv, mt = statistics.median(vnet), statistics.median(tso)
print(f"demo req/s (median of {len(vnet)}): vnet {mv:,.0f}, vnet,tso {mt:,.0f}, ratio tso/vnet {mt / mv:.3f}")
def goodput(name):
    s = next(s for s in bulk["servers"] if s["server"] == name)
    return s["runs"][0]["goodput_mbit"]
k, v, t = goodput("kernel"), goodput("vnet"), goodput("tso")
print(f"bulk echo {mib} MiB each way, Mbit/s (median of 5): kernel {k:,.0f}, vnet {v:,.0f}, "
      f"vnet,tso {t:,.0f}, ratio tso/vnet {t / v:.3f}")
EOF
echo "tap-tso: load average after: $(load)"
