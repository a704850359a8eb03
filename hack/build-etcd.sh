#!/usr/bin/env bash
# Builds etcd from the Go module proxy, once, into a cache outside the
# checkout, and prints its path on stdout (everything else goes to stderr).
# Every test and benchmark that needs a real etcd runs this one: the version
# deploy/base/etcd/statefulset.yaml ships (registry.k8s.io/etcd:3.5.16-0).
# It is also what kube-apiserver needs to serve consistent lists from its
# watch cache (etcd >= 3.5.13; on older etcd it reads every list from etcd),
# so the CRD peer in docs/benchmarks.md runs as it does in a cluster.
#
#   bash hack/build-etcd.sh          # build if missing, print the path
#   ETCD_VERSION=v3.5.16 ...         # the pinned version (default below)
#   NMSTATE_CACHE_DIR=dir ...        # cache root (default: $XDG_CACHE_HOME/nmstate-rs)
#
# go.etcd.io/etcd/server/v3 (the etcd binary's main package) cannot be
# `go install`ed: its go.mod replaces its sibling modules with ../api and the
# like. So a scratch module requires it at the version, whose own requirements
# name the published siblings, keeps etcd's `go` line (so the runtime's
# GODEBUG defaults are those of an upstream build) and builds it.
#
# Idempotent: a finished binary is reused (the stamp file records its
# version). Fails (non-zero, with the reason) when Go is missing, when the
# proxy does not serve the version, or when the build fails.
set -euo pipefail

VERSION=${ETCD_VERSION:-v3.5.16}
CACHE=${NMSTATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nmstate-rs}
DIR=$CACHE/etcd-$VERSION
BIN=$DIR/etcd

. "$(dirname "$0")/go.sh"
peer_setup build-etcd

if [ -f "$DIR/stamp" ] && [ "$(cat "$DIR/stamp")" = "$VERSION" ] && [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

find_go "etcd $VERSION is built from the Go module proxy"

mkdir -p "$DIR/module"
cd "$DIR/module"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
start=$(date +%s)
rm -f go.mod go.sum
"$GO" mod init nmstate-rs.local/etcd-build >/dev/null 2>&1
info=$("$GO" mod download -json "go.etcd.io/etcd/server/v3@$VERSION") \
  || die "the Go module proxy did not serve go.etcd.io/etcd/server/v3@$VERSION: $info"
gomod=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || die "no go.mod for go.etcd.io/etcd/server/v3@$VERSION in: $info"
"$GO" get "go.etcd.io/etcd/server/v3@$VERSION" >&2 || die "go get go.etcd.io/etcd/server/v3@$VERSION failed"
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
[ -n "$want" ] && "$GO" mod edit -go="$want"
nice -n 10 "$GO" build -trimpath -ldflags "-s -w" -o "$BIN.tmp" go.etcd.io/etcd/server/v3 >&2 \
  || die "go build go.etcd.io/etcd/server/v3@$VERSION failed"
mv "$BIN.tmp" "$BIN"
"$BIN" --version >&2 || die "the built etcd does not run"
echo "$VERSION" >"$DIR/stamp"
say "built etcd $VERSION in $(( $(date +%s) - start )) s: $BIN"
echo "$BIN"
