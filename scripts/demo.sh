#!/usr/bin/env bash
# The bypass demo: the userspace TCP/IP stack serves HTTP on a TAP port to
# real kernel clients (curl, then wrk with many keep-alive connections) in
# a private network namespace, with live stats, for a bounded time.
# Installs and builds what it needs first.
#   ./scripts/demo.sh [SECONDS]
set -euo pipefail
case "${1:-15}" in
    ''|*[!0-9]*|0)
        echo "usage: $0 [SECONDS]: runs the demo for SECONDS (a whole number, default 15)" >&2
        exit 2 ;;
esac
. "$(dirname "$0")/as-root.sh"
as_root "$@"
cd "$(dirname "$0")/.."
secs=${1:-15}
scripts/install-deps.sh >/dev/null
echo "demo: building (release)..."
cargo build --release --quiet
exec ./target/release/bypass demo --duration "$secs"
