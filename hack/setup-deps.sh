#!/usr/bin/env bash
# Installs every system package the build and the tests need.
# Idempotent and non-interactive: does nothing when all is present.
# Runs as root on Debian (bookworm); uses sudo when not root.
set -euo pipefail

# Command → Debian package that provides it.
declare -A PACKAGES=(
  [protoc]=protobuf-compiler # etcd-client generates its gRPC code with it
  [ip]=iproute2              # network-namespace test nodes
  [NetworkManager]=network-manager # the agent's nm backend, inside test namespaces only
  [dbus-daemon]=dbus         # a private system bus per namespace node
  [socat]=socat              # loopback forward from the host to the apiserver in the hub namespace
  [nsenter]=util-linux       # nsenter/unshare for the namespace nodes
  [ping]=iputils-ping        # reachability checks inside namespace nodes
  [python3]=python3          # tests/python/client_test.py (the Python client test)
  [curl]=curl                # tests/tests/e2e/render_subresources.rs calls the API as curl users do
  [openssl]=openssl          # hack/local-up.sh --kube makes the cluster's certificates
  [jq]=jq                    # docs/user-guide/ reads the render and dry-run answers with it (tests/tests/e2e/user_guide.rs)
)

# The kubectl the end-to-end suite drives when the machine has none: the
# Kubernetes level the server reports (1.32), the official release binary.
KUBECTL_VERSION=v1.32.4
# The official Python client the Python client test uses.
KUBERNETES_PY_VERSION=32.0.1
# Offline schema validation of the deploy/ manifests (tests/python/
# validate_manifests.py); the package ships the Kubernetes JSON schemas.
KUBERNETES_VALIDATE_VERSION=1.37.0
# Upstream's own nmstate command line: the render benchmark's baseline
# (upstream forks `nmstatectl policy` per node) and an independent check of
# what the agent applied inside test network namespaces.
NMSTATECTL_VERSION=2.2.62

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

# A font for `kubectl nmstate show --graph png` (the plugin reads the
# system's fonts; tests/tests/kubectl_nmstate.rs checks its labels' pixels).
if ! compgen -G '/usr/share/fonts/truetype/dejavu/DejaVuSans*.ttf' >/dev/null; then
  missing+=(fonts-dejavu-core)
fi

if ! command -v kubectl >/dev/null 2>&1 && ! command -v curl >/dev/null 2>&1; then
  missing+=(curl ca-certificates)
fi
python_client_missing() {
  ! python3 -c 'import kubernetes' >/dev/null 2>&1
}
manifest_validator_missing() {
  ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1
}
if command -v python3 >/dev/null 2>&1 &&
  { python_client_missing || manifest_validator_missing; } &&
  ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  echo "setup-deps: installing ${missing[*]}"
  # Try without refreshing the index first (fast, works offline when the
  # index is recent); refresh and retry if a package is unknown.
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

if ! command -v kubectl >/dev/null 2>&1; then
  arch="$(dpkg --print-architecture)" # amd64, arm64, ...
  url="https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${arch}/kubectl"
  echo "setup-deps: installing kubectl ${KUBECTL_VERSION} to /usr/local/bin"
  tmp="$(mktemp -d)"
  curl -fsSL --retry 3 -o "$tmp/kubectl" "$url"
  curl -fsSL --retry 3 -o "$tmp/kubectl.sha256" "$url.sha256"
  echo "$(cat "$tmp/kubectl.sha256")  $tmp/kubectl" | sha256sum --check --quiet
  $sudo install -m 0755 "$tmp/kubectl" /usr/local/bin/kubectl
  rm -rf "$tmp"
fi

if python_client_missing; then
  echo "setup-deps: installing the Python package kubernetes==${KUBERNETES_PY_VERSION}"
  # Debian's own Python refuses pip installs outside a virtual environment
  # (PEP 668) unless told otherwise; a pyenv or venv Python does not.
  if ! python3 -m pip install -q "kubernetes==${KUBERNETES_PY_VERSION}"; then
    python3 -m pip install -q --break-system-packages "kubernetes==${KUBERNETES_PY_VERSION}"
  fi
fi

if manifest_validator_missing; then
  echo "setup-deps: installing the Python package kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
  if ! python3 -m pip install -q "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"; then
    python3 -m pip install -q --break-system-packages "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
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

if ! nmstatectl --version 2>/dev/null | grep -q "${NMSTATECTL_VERSION}"; then
  echo "setup-deps: installing nmstatectl ${NMSTATECTL_VERSION} with cargo"
  cargo install --quiet --locked nmstatectl --version "${NMSTATECTL_VERSION}"
fi

# etcd, built from the Go module proxy at the version deploy/ ships into a
# cache outside the checkout (hack/build-etcd.sh): every test and benchmark
# that needs a real etcd runs it.
bash "$(dirname "$0")/build-etcd.sh" >/dev/null

# kube-apiserver, built from source at one pinned version into a cache
# outside the checkout (hack/build-kube-apiserver.sh): the end-to-end suite
# through the aggregator (tests/tests/e2e/aggregated.rs) and `local-up.sh --kube`
# run it. Needs Go and the Go module proxy; fails, saying why, without them.
bash "$(dirname "$0")/build-kube-apiserver.sh" >/dev/null

# --- Hostile-input testing (issue 15) ----------------------------------------
# schemathesis drives the server's own OpenAPI v3 (tests/tests/e2e/schemathesis.rs).
SCHEMATHESIS_VERSION="4.32.5"
if ! schemathesis --version 2>/dev/null | grep -q "version ${SCHEMATHESIS_VERSION}$"; then
  echo "setup-deps: installing the Python package schemathesis==${SCHEMATHESIS_VERSION}"
  if ! python3 -m pip install -q "schemathesis==${SCHEMATHESIS_VERSION}"; then
    python3 -m pip install -q --break-system-packages "schemathesis==${SCHEMATHESIS_VERSION}"
  fi
fi
# cargo-fuzz runs the fuzz targets of fuzz/ (hack/fuzz.sh, docs/fuzzing.md) on
# stable Rust, without a sanitizer.
CARGO_FUZZ_VERSION="0.13.2"
if ! cargo fuzz --version 2>/dev/null | grep -q "${CARGO_FUZZ_VERSION}"; then
  echo "setup-deps: installing cargo-fuzz ${CARGO_FUZZ_VERSION} with cargo"
  cargo install --quiet --locked cargo-fuzz --version "${CARGO_FUZZ_VERSION}"
fi
# --- end of hostile-input testing ----------------------------------------------

echo "setup-deps: all dependencies present"
