#!/usr/bin/env bash
# Reserve, release or show 2 MiB hugepages, and make sure hugetlbfs is mounted.
#   scripts/hugepages.sh reserve N   # reserve N pages (N x 2 MiB)
#   scripts/hugepages.sh release     # give them all back (and remove stale DPDK map files)
#   scripts/hugepages.sh show
set -euo pipefail
NR=/proc/sys/vm/nr_hugepages
usage() { echo "usage: $0 reserve N | release | show" >&2; exit 2; }
. "$(dirname "$0")/as-root.sh"
need_root() { as_root "$@"; }

case "${1:-show}" in
  reserve)
    n=${2:-}; [[ "$n" =~ ^[0-9]+$ ]] || usage
    need_root reserve "$n"
    echo "$n" > "$NR"
    got=$(cat "$NR")
    if ! mountpoint -q /dev/hugepages 2>/dev/null; then
      mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages
    fi
    if [ "$got" -lt "$n" ]; then
      echo "hugepages: asked for $n, the kernel gave $got (memory is fragmented or short)" >&2
      exit 1
    fi
    echo "hugepages: $got x 2 MiB reserved"
    ;;
  release)
    need_root release
    # DPDK leaves map files behind when run without --huge-unlink; they pin pages.
    find /dev/hugepages -maxdepth 1 -name '*map_*' -user root -delete 2>/dev/null || true
    echo 0 > "$NR"
    echo "hugepages: released (now $(cat "$NR"))"
    ;;
  show)
    grep -E 'HugePages_(Total|Free|Rsvd)|Hugepagesize' /proc/meminfo
    ;;
  *) usage ;;
esac
