#!/usr/bin/env bash
# Installs what the tests need (Debian packages of the real registry clients) and runs every
# test of the workspace: formatting, lints, unit, in-process and end-to-end tests, then a
# short run of every fuzz target (scripts/fuzz.sh, on the nightly toolchain).
#
# Usage: ./scripts/test.sh [extra cargo test arguments]
# BERTH_FUZZ_SECONDS sets the fuzzing time per target (default 45; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(skopeo podman buildah umoci docker.io docker-registry postgresql nginx prometheus)
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

# Object stores for the blob store's tests (berth-testkit: s3s-fs, Azurite), installed once
# into a cache outside the repository and reused by later runs.
tools="${BERTH_TEST_TOOLS:-$HOME/.cache/berth-test-tools}"
if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "test.sh: installing s3s-fs 0.14.1 into $tools (about 2-5 minutes)"
  cargo install --locked s3s-fs --version 0.14.1 --features binary --root "$tools"
fi
if [ ! -x "$tools/azurite/node_modules/.bin/azurite-blob" ]; then
  echo "test.sh: installing azurite 3.37.0 into $tools"
  npm install --no-audit --no-fund --prefix "$tools/azurite" azurite@3.37.0
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"

fuzz_seconds="${BERTH_FUZZ_SECONDS:-45}"
if [ "$fuzz_seconds" != 0 ]; then
  ./scripts/fuzz.sh "$fuzz_seconds"
fi
