#!/usr/bin/env bash
# Builds an upstream kube-apiserver (and kube-controller-manager, beside it) from
# the Go module proxy, once, into a cache outside the checkout, and prints
# kube-apiserver's path on stdout (everything else goes to stderr). The
# end-to-end suite through the aggregator (tests/tests/e2e/aggregated.rs) and
# `hack/local-up.sh --kube` run them; of kube-controller-manager only its
# ClusterRole aggregation controller (what puts deploy/'s nmstate:view/edit/admin
# rules into view/edit/admin).
#
#   bash hack/build-kube-apiserver.sh          # build if missing, print the path
#   KUBE_APISERVER_VERSION=v1.34.4 ...         # the pinned version (default below)
#   NMSTATE_CACHE_DIR=dir ...                  # cache root (default: $XDG_CACHE_HOME/nmstate-rs)
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/apiserver, ...) with ./staging/... . So a scratch
# module requires k8s.io/kubernetes and replaces each staging module with its
# released v0.X.Y, copies upstream's godebug defaults, and builds
# cmd/kube-apiserver with the version stamped in (else /version says v0.0.0).
#
# Idempotent: a finished binary is reused (the stamp file records its version).
# Fails (non-zero, with the reason) when Go is missing or too old, when the proxy
# does not serve the version, or when the build fails.
set -euo pipefail

VERSION=${KUBE_APISERVER_VERSION:-v1.34.4}
MINOR=$(echo "$VERSION" | cut -d. -f2)
STAGING=v0.${VERSION#v1.}
CACHE=${NMSTATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nmstate-rs}
DIR=$CACHE/kube-apiserver-$VERSION
BIN=$DIR/kube-apiserver
BINARIES="kube-apiserver kube-controller-manager"

. "$(dirname "$0")/go.sh"
peer_setup build-kube-apiserver

if [ -f "$DIR/stamp" ] && [ "$(cat "$DIR/stamp")" = "$VERSION $BINARIES" ]; then
  say "cached: $BIN ($("$BIN" --version 2>/dev/null))"
  echo "$BIN"
  exit 0
fi

find_go "kube-apiserver $VERSION needs Go >= 1.24 and the Go module proxy"

mkdir -p "$DIR/module"
cd "$DIR/module"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
start=$(date +%s)

[ -f go.mod ] || "$GO" mod init nmstate-rs.local/kube-apiserver-build >/dev/null 2>&1
# k8s.io/kubernetes's own go.mod names the staging modules to redo here
info=$("$GO" mod download -json "k8s.io/kubernetes@$VERSION") \
  || die "the Go module proxy did not serve k8s.io/kubernetes@$VERSION: $info"
gomod=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || die "no go.mod for k8s.io/kubernetes@$VERSION in: $info"
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
have=${gover#go}
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
  die "k8s.io/kubernetes $VERSION needs Go >= $want, $GO is $have"
fi
mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod")
[ -n "$mods" ] || die "no staging replaces in $gomod"
for m in $mods; do "$GO" mod edit -replace="$m=$m@$STAGING"; done
for g in $(awk '/^godebug \(/{b=1;next} b&&/^\)/{b=0} b{print $1} /^godebug [^(]/{print $2}' "$gomod"); do
  "$GO" mod edit -godebug="$g"
done
say "k8s.io/kubernetes $VERSION, $(echo "$mods" | wc -w) staging modules at $STAGING; downloading"
for binary in $BINARIES; do
  "$GO" get "k8s.io/kubernetes/cmd/$binary@$VERSION" >&2 || die "go get k8s.io/kubernetes/cmd/$binary@$VERSION failed"
done
fetched=$(date +%s)
say "modules resolved in $((fetched - start)) s; compiling (several minutes on 2 cores)"
for binary in $BINARIES; do
  nice -n 10 "$GO" build -trimpath \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean" \
    -o "$DIR/$binary.tmp" "k8s.io/kubernetes/cmd/$binary" >&2 || die "go build k8s.io/kubernetes/cmd/$binary failed"
  mv "$DIR/$binary.tmp" "$DIR/$binary"
done
echo "$VERSION $BINARIES" >"$DIR/stamp"
end=$(date +%s)
say "built $("$BIN" --version) in $((end - start)) s (download $((fetched - start)) s, compile $((end - fetched)) s): $BIN"
echo "$BIN"
