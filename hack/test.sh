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

echo "== all tests passed"
