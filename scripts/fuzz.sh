#!/usr/bin/env bash
# Runs Berth's fuzz targets (fuzz/, cargo-fuzz on the nightly toolchain) for a while each,
# starting from the seed corpus checked in under fuzz/corpus/.
#
# Usage: ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   ./scripts/fuzz.sh                 # every target, 30 s each (what test.sh runs)
#   ./scripts/fuzz.sh 3600 manifest   # a long run of one target
#
# New inputs found go to a scratch directory, not into fuzz/corpus/. A crash stops the run
# with the failing input in fuzz/artifacts/<target>/: fix the bug, then add the input to
# fuzz/corpus/<target>/ so it is replayed by every later run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(manifest name_reference route range connection_string)
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly Rust toolchain is not installed, and cargo-fuzz needs it;" >&2
  echo "fuzz.sh: install it with \`rustup toolchain install nightly\` and run again." >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  # Installed once per machine, into ~/.cargo/bin, where later runs find it.
  echo "fuzz.sh: installing cargo-fuzz (once per machine)"
  cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build --fuzz-dir fuzz
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  echo "fuzz.sh: $target for ${seconds}s"
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz.sh: $target found a failure; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" | sed "s/^/fuzz.sh: $target /"
done
echo "fuzz.sh: no failure in ${#targets[@]} targets"
