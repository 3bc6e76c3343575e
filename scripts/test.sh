#!/usr/bin/env bash
# Installs what the tests need (Debian packages of the real registry clients) and runs every
# test of the workspace: formatting, lints, unit, in-process and end-to-end tests, then a
# short run of every fuzz target (scripts/fuzz.sh, on the nightly toolchain).
#
# Usage: ./scripts/test.sh [extra cargo test arguments]
# BERTH_FUZZ_SECONDS sets the fuzzing time per target (default 45; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(skopeo podman buildah umoci docker.io docker-registry prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test.sh: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"

fuzz_seconds="${BERTH_FUZZ_SECONDS:-45}"
if [ "$fuzz_seconds" != 0 ]; then
  ./scripts/fuzz.sh "$fuzz_seconds"
fi
