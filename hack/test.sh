#!/usr/bin/env bash
# The one test command: installs what is missing, checks format and lints,
# then runs every test of the workspace against real parts (etcd, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

bash hack/setup-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --all --manifest-path fuzz/Cargo.toml -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets' workspace (fuzz/), in the same target directory so that
# it reuses the dependencies built above.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== fuzz targets: seed corpus and regressions (docs/fuzzing.md)"
cargo test --manifest-path fuzz/Cargo.toml --locked

echo "== fuzz targets: libFuzzer, 15 s each (docs/fuzzing.md)"
# Its own target directory (instrumented builds share nothing with the
# workspace's); unoptimised, so that the build stays a few minutes.
FUZZ_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" NMSTATE_FUZZ_PROFILE=dev bash hack/fuzz.sh 15

echo "== all tests passed"
