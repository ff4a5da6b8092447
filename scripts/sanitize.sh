#!/usr/bin/env bash
# Runs the in-memory test suites under AddressSanitizer + LeakSanitizer on
# the stable toolchain, or under valgrind memcheck.
#
#   scripts/sanitize.sh            ASan/LSan (default)
#   scripts/sanitize.sh valgrind   valgrind memcheck on the same test binaries
#
# Miri needs nightly and is not available here. `-Zsanitizer=address` is a
# nightly flag, but the stable compiler accepts it with RUSTC_BOOTSTRAP=1,
# and the sanitizer runtimes ship with the stable toolchain
# (lib/rustlib/<host>/lib/librustc-stable_rt.asan.a), so no clang runtime
# package is needed. `--target` is passed so that the flags reach only the
# target crates, not build scripts or proc-macros. std itself is not
# instrumented (that needs -Zbuild-std and the rust-src component), so
# ASan sees our crates' and smoltcp's accesses, including the unsafe pool
# and buffer code, and LSan sees every leak.
#
# Tests covered: the library's unit tests and the integration tests that
# need no root or network namespace (mem wire, stack-to-stack, hostile
# traffic, fuzz replay).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}
triple=$(rustc -vV | sed -n 's/^host: //p')
tests=(--lib --test mem_port --test stack_mem --test hostile --test fuzz_replay)
case "$mode" in
asan)
    export RUSTC_BOOTSTRAP=1
    export RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes"
    export RUSTDOCFLAGS="$RUSTFLAGS"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1"
    export CARGO_TARGET_DIR=target/asan
    cargo test --no-fail-fast --target "$triple" "${tests[@]}" -- --test-threads=2
    ;;
valgrind)
    export CARGO_TARGET_DIR=target/valgrind
    cargo test --no-run --message-format=json "${tests[@]}" 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' >"$CARGO_TARGET_DIR/bins.txt"
    status=0
    while read -r bin; do
        echo "== valgrind $bin"
        # The heavy flood and soak-like tests take minutes under valgrind:
        # skip the SYN floods there (ASan runs them).
        valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite \
            --error-exitcode=99 "$bin" --test-threads=1 --skip syn_flood || status=1
    done <"$CARGO_TARGET_DIR/bins.txt"
    exit $status
    ;;
*)
    echo "usage: $0 [asan|valgrind]" >&2
    exit 2
    ;;
esac
