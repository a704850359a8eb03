#!/usr/bin/env bash
# The one test command: installs what is missing, checks format and lints,
# then runs every test of the workspace against real parts (etcd, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

bash hack/setup-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== all tests passed"
