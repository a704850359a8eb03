#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (docs/fuzzing.md) with cargo-fuzz, each for
# a bounded time, from a seed corpus made of the repository's test data.
# Fails if any target finds a crash (the input is left in
# fuzz/artifacts/<target>/).
#
#   bash hack/fuzz.sh                 # every target, 20 s each
#   bash hack/fuzz.sh 600             # every target, 10 minutes each
#   bash hack/fuzz.sh 600 render      # one target
#   NMSTATE_FUZZ_PROFILE=dev bash hack/fuzz.sh 15
#                                     # what CI runs (hack/test.sh)
#
# NMSTATE_FUZZ_PROFILE=dev builds without optimisation and with debug
# assertions: a third of the release build's CPU (the instrumented release
# build forces one codegen unit and took 16 CPU-minutes here), about a
# tenth of its executions per second — enough for a short smoke run, while
# long runs want release (the default).
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
case ${NMSTATE_FUZZ_PROFILE:-release} in
  release) profile=(--release) ;;
  dev) profile=(--dev) ;;
  *) echo "fuzz: NMSTATE_FUZZ_PROFILE is release or dev" >&2; exit 2 ;;
esac
cargo fuzz build -s none "${profile[@]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  status=0
  cargo fuzz run -s none "${profile[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==|SUMMARY|thread|panicked|Test unit written)' "$log" || true
  if [[ $status -ne 0 ]] || compgen -G "artifacts/$target/*" >/dev/null; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed (exit $status); inputs: $(ls artifacts/"$target" 2>/dev/null)" >&2
    exit 1
  fi
done
echo "== fuzz: no crash in ${#targets[@]} targets"
