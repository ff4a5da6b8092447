#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on the stable toolchain.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s each, all targets)
#
# cargo-fuzz wants nightly only for `-Zsanitizer=address`; the coverage
# instrumentation libFuzzer needs (`-Cpasses=sancov-module` plus LLVM
# options) is stable, and `libfuzzer-sys` builds libFuzzer itself with the
# system C++ compiler. So this builds the targets with plain cargo and those
# flags, and runs the binaries directly. Set ASAN=1 to add AddressSanitizer
# (stable rustc accepts -Zsanitizer with RUSTC_BOOTSTRAP=1; its runtime
# ships with the toolchain). Rust code is memory-safe without it; ASan
# matters for the unsafe buffer and pool code.
#
# The committed seeds in fuzz/corpus/TARGET are read, never written; new
# inputs go to fuzz/work/TARGET (copy interesting ones into the corpus: it
# is replayed by tests/fuzz_replay.rs). A crash leaves
# fuzz/artifacts/TARGET/crash-*: fix the bug, then move the input to
# fuzz/regressions/TARGET/ under a name saying what it found.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frames http parsers)
triple=$(rustc -vV | sed -n 's/^host: //p')
flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cdebug-assertions -Coverflow-checks"
if [ "${ASAN:-0}" = 1 ]; then
    export RUSTC_BOOTSTRAP=1
    flags+=" -Zsanitizer=address"
fi
RUSTFLAGS="$flags" cargo build --release --target "$triple" --bins
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    echo "== fuzzing $t for ${secs}s"
    if ! "target/$triple/release/$t" "work/$t" "corpus/$t" \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
        -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        2>"artifacts/$t/log.txt"; then
        echo "!! $t crashed: see fuzz/artifacts/$t/ and its log.txt" >&2
        tail -40 "artifacts/$t/log.txt" >&2
        status=1
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE' \
        "artifacts/$t/log.txt" || true
done
exit $status
