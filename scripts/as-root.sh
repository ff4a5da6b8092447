# shellcheck shell=bash
# Sourced (not run) by the scripts that need root. `as_root "$@"` returns
# when we are root; otherwise it re-runs the calling script under sudo,
# keeping PATH and the Rust toolchain's location, or, where sudo is not
# installed, says in one sentence what to do and exits.
as_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  local self
  self=$(realpath "$0")
  if command -v sudo >/dev/null 2>&1; then
    exec sudo env "PATH=$PATH" \
      "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
      "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
      "$self" "$@"
  fi
  echo "$(basename "$0"): it needs root (network namespaces, interfaces, hugepages or packages) and sudo is not installed: run it as root" >&2
  exit 1
}
