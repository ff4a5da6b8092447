#!/usr/bin/env bash
# The bypass demo: the userspace TCP/IP stack serves HTTP on a TAP port to
# real kernel clients (curl, then wrk with many keep-alive connections) in
# a private network namespace, with live stats, for a bounded time.
# Installs and builds what it needs first.
#   sudo ./scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: it creates a network namespace and a TAP device; run it as root (sudo $0)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
echo "demo: building (release)..."
cargo build --release --quiet
exec ./target/release/bypass demo --duration "$secs"
