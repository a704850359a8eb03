#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (docs/fuzzing.md) with cargo-fuzz, each for
# a bounded time, from a seed corpus made of the repository's test data.
# Fails if any target finds a crash (the input is left in
# fuzz/artifacts/<target>/).
#
#   bash hack/fuzz.sh                 # every target, 20 s each (what CI runs)
#   bash hack/fuzz.sh 600             # every target, 10 minutes each
#   bash hack/fuzz.sh 600 render      # one target
#
# Stable Rust is enough: without a sanitizer (`-s none`) cargo-fuzz needs no
# nightly flag; libFuzzer still finds panics, assertion failures, time-outs
# and runaway memory. hack/setup-deps.sh installs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-20}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi

python3 seed.py
# Its own target directory: instrumented builds must not replace the
# workspace's binaries.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo fuzz build -s none --release
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run -s none --release "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==|SUMMARY|thread|panicked|Test unit written)' || true
  if compgen -G "artifacts/$target/*" >/dev/null; then
    echo "fuzz: $target found a crash: $(ls artifacts/"$target")" >&2
    exit 1
  fi
done
echo "== fuzz: no crash in ${#targets[@]} targets"
