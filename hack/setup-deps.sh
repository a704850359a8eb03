#!/usr/bin/env bash
# Installs every system package the build and the tests need.
# Idempotent and non-interactive: does nothing when all is present.
# Runs as root on Debian (bookworm); uses sudo when not root.
set -euo pipefail

# Command → Debian package that provides it.
declare -A PACKAGES=(
  [protoc]=protobuf-compiler # etcd-client generates its gRPC code with it
  [etcd]=etcd-server         # the storage conformance and e2e tests start a real etcd
  [ip]=iproute2              # network-namespace test nodes
)

missing=()
for cmd in "${!PACKAGES[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${PACKAGES[$cmd]}")
  fi
done
# etcd-client's .proto files import Google's well-known types, which
# protobuf-compiler alone does not ship without recommended packages.
if [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
  missing+=(libprotobuf-dev)
fi

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup-deps: installing ${missing[*]}"
  # Try without refreshing the index first (fast, works offline when the
  # index is recent); refresh and retry if a package is unknown.
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# The Rust toolchain's lint and format components.
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
      rustup component add "$component"
    fi
  done
fi

echo "setup-deps: all dependencies present"
