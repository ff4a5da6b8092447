#!/usr/bin/env bash
# Reserves 2 MiB hugepages for DPDK and mounts hugetlbfs, or releases them.
#   scripts/hugepages.sh reserve [PAGES]   (default 512 = 1 GiB)
#   scripts/hugepages.sh release
# `reserve` remembers the previous page count in /run/bypass-hugepages.orig;
# `release` puts it back and unmounts what `reserve` mounted.
set -euo pipefail

NR=/proc/sys/vm/nr_hugepages
STATE=/run/bypass-hugepages.orig
MNT=/dev/hugepages

if [ "$(id -u)" -ne 0 ]; then
  echo "hugepages.sh: needs root (it writes $NR and mounts hugetlbfs)." >&2
  exit 1
fi

case "${1:-}" in
reserve)
  pages=${2:-512}
  [ -f "$STATE" ] || cat "$NR" > "$STATE"
  echo "$(( $(cat "$STATE") + pages ))" > "$NR"
  mkdir -p "$MNT"
  if ! grep -qs " $MNT hugetlbfs " /proc/mounts; then
    mount -t hugetlbfs -o pagesize=2M nodev "$MNT"
    echo mounted >> "$STATE.mount"
  fi
  grep -E 'HugePages_(Total|Free)' /proc/meminfo
  ;;
release)
  rm -f "$MNT"/*map_* 2>/dev/null || true
  if [ -f "$STATE.mount" ]; then
    umount "$MNT" || true
    rm -f "$STATE.mount"
  fi
  if [ -f "$STATE" ]; then
    cat "$STATE" > "$NR"
    rm -f "$STATE"
  fi
  grep -E 'HugePages_(Total|Free)' /proc/meminfo
  ;;
*)
  echo "usage: $0 reserve [PAGES] | release" >&2
  exit 2
  ;;
esac
