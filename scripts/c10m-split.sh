#!/bin/bash
# The server and the load generator in two processes, so each side's
# memory is measured on its own: `bypass echo` and `bypass loadgen --mode
# hold`, each on a TAP of its own, the two TAPs joined by a bridge inside a
# private network namespace (the kernel only switches frames there; no
# kernel TCP is involved). For each side, memory per connection end is the
# RSS growth between a run holding 1 connection and one holding N, read
# while the table is full and idle.
#
#   scripts/c10m-split.sh [N]        (root; N <= 28000: the loadgen's ephemeral ports
#                                     (32768-60999) towards one server port)
#
# Bounded: every process has a --duration and is killed by PID if it
# outlives it; the namespace (and with it the TAPs and the bridge) is
# deleted on exit.
set -euo pipefail

N=${1:-28000}
BIN=${BIN:-target/release/bypass}
NS=c10m-split-$$
HOLD=${HOLD:-12}
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
    echo "c10m-split: run as root (it creates a network namespace and TAP devices)" >&2
    exit 1
fi
if [ "$N" -lt 2 ] || [ "$N" -gt 28000 ]; then
    echo "c10m-split: N must be between 2 and 28000 (the load generator's 28,232 ephemeral ports towards one server port)" >&2
    exit 1
fi

ip netns add "$NS"
ip -n "$NS" link add br0 type bridge
ip -n "$NS" link set br0 up

rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

attach() { # TAP name: wait for it, put it on the bridge
    for _ in $(seq 100); do
        if ip -n "$NS" link show "$1" >/dev/null 2>&1; then
            ip -n "$NS" link set "$1" master br0
            ip -n "$NS" link set "$1" up
            return 0
        fi
        sleep 0.1
    done
    echo "c10m-split: TAP $1 did not appear" >&2
    return 1
}

# One run holding $1 connections: prints "server_kib client_kib open".
run() {
    local n=$1
    BYPASS_TCP_ENGINE=bypass "$BIN" echo --port "tap:c10ms,netns=$NS" --ip 10.0.0.1/24 \
        --listen 7000 --backlog 4096 --cores 0 --duration $((HOLD + 15)) --stats-interval 0 \
        >/dev/null 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    attach c10ms
    sleep 1
    BYPASS_TCP_ENGINE=bypass "$BIN" loadgen --port "tap:c10mc,netns=$NS" --ip 10.0.0.2/24 \
        --target 10.0.0.1:7000 --mode hold --connections "$n" --max-pending 512 --cores 1 \
        --duration $((HOLD + 3)) --stats-interval 0 --json >"$OUT" 2>/dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    attach c10mc
    # The ramp, then the table idle: read both sides near the end of the
    # hold, then let the generator finish and say how many were open.
    sleep "$HOLD"
    local s c open
    s=$(rss_kib "$spid")
    c=$(rss_kib "$cpid")
    wait "$cpid" 2>/dev/null || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    open=$(grep -o '"open":[0-9]*' "$OUT" | head -1 | cut -d: -f2)
    echo "$s $c ${open:-0}"
}

OUT=$(mktemp)
PIDS+=()
read -r s1 c1 o1 < <(run 1)
read -r sn cn on < <(run "$N")
rm -f "$OUT"
if [ "$o1" != 1 ] || [ "$on" != "$N" ]; then
    echo "c10m-split: not every connection was open at the end (1-run: $o1, N-run: $on of $N); the figures below are per open connection" >&2
fi
HOLD=$HOLD awk -v n="$on" -v s1="$s1" -v c1="$c1" -v sn="$sn" -v cn="$cn" 'BEGIN {
    printf "two processes over TAP + bridge, %d connections open, read %d s after the generator started:\n", n, ENVIRON["HOLD"]
    printf "  server (bypass echo):    RSS %.1f MiB with 1 connection, %.1f MiB with %d: %.0f B per end\n", s1/1024, sn/1024, n, (sn-s1)*1024/(n-1)
    printf "  client (bypass loadgen): RSS %.1f MiB with 1 connection, %.1f MiB with %d: %.0f B per end\n", c1/1024, cn/1024, n, (cn-c1)*1024/(n-1)
}'
