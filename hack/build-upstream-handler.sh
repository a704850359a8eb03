#!/usr/bin/env bash
# Builds upstream kubernetes-nmstate's node handler (its cmd/handler) from the
# Go module proxy, once, into a cache outside the checkout, and prints the
# binary's path on stdout (everything else goes to stderr). `nmstate-bench
# handler` runs it next to nmstate-agent. Upstream's CRDs come from the same
# module download; they are copied beside the binary, under crds/, and used
# from there at run time (never committed here).
#
#   bash hack/build-upstream-handler.sh          # build if missing, print the path
#   UPSTREAM_HANDLER_VERSION=v0.86.0 ...         # the pinned tag (default below)
#   UPSTREAM_HANDLER_API=v0.0.0-...              # the published api module to pair with it
#   NMSTATE_CACHE_DIR=dir ...                    # cache root (default: $XDG_CACHE_HOME/nmstate-rs)
#
# Upstream's go.mod replaces github.com/nmstate/kubernetes-nmstate/api with
# ./api, a directory that a module download leaves out (it is a module of its
# own). Its repository tags no api/ versions, so the proxy serves the api
# module only at pseudo-versions that other projects have pinned. The default
# below is the newest such pseudo-version before the tag whose Go code equals
# the tag's api/ (they differ in a kubebuilder marker comment only, not in
# code). A scratch module requires the tag, replaces the api module with that
# pseudo-version, copies upstream's other replaces and godebug lines, and
# builds cmd/handler.
#
# Idempotent: a finished binary is reused (the stamp file records the versions).
# Fails (non-zero, with the reason) when Go is missing or too old, when the proxy
# does not serve a version, or when the build fails.
set -euo pipefail

VERSION=${UPSTREAM_HANDLER_VERSION:-v0.86.0}
API_VERSION=${UPSTREAM_HANDLER_API:-v0.0.0-20251121083040-ba2d4c63597f}
MODULE=github.com/nmstate/kubernetes-nmstate
CACHE=${NMSTATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nmstate-rs}
DIR=$CACHE/upstream-handler-$VERSION
BIN=$DIR/handler

. "$(dirname "$0")/go.sh"
peer_setup build-upstream-handler

if [ -f "$DIR/stamp" ] && [ "$(cat "$DIR/stamp")" = "$VERSION $API_VERSION" ] && [ -x "$BIN" ]; then
  say "cached: $BIN (kubernetes-nmstate $VERSION, CRDs in $DIR/crds)"
  echo "$BIN"
  exit 0
fi

find_go "kubernetes-nmstate $VERSION needs Go >= 1.25 and the Go module proxy"

mkdir -p "$DIR/module"
cd "$DIR/module"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
start=$(date +%s)

[ -f go.mod ] || "$GO" mod init nmstate-rs.local/upstream-handler-build >/dev/null 2>&1
info=$("$GO" mod download -json "$MODULE@$VERSION" 2>&1) \
  || die "the Go module proxy did not serve $MODULE@$VERSION: $info"
field() { printf '%s\n' "$info" | sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p"; }
gomod=$(field GoMod)
src=$(field Dir)
[ -f "$gomod" ] || die "no go.mod for $MODULE@$VERSION in: $info"
[ -d "$src/deploy/crds" ] || die "no deploy/crds in $MODULE@$VERSION ($src)"
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
have=${gover#go}
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
  die "$MODULE $VERSION needs Go >= $want, $GO is $have"
fi
apiinfo=$("$GO" mod download -json "$MODULE/api@$API_VERSION" 2>&1) \
  || die "the Go module proxy did not serve $MODULE/api@$API_VERSION (the tag's ./api replace needs a published api module): $apiinfo"

"$GO" mod edit -require="$MODULE@$VERSION" -replace="$MODULE/api=$MODULE/api@$API_VERSION"
# upstream's own replaces, except the local ./api one handled above
sed -n 's#^replace[[:space:]]\{1,\}\([^[:space:]]*\)[[:space:]]*=>[[:space:]]*\([^.][^[:space:]]*\)[[:space:]]\{1,\}\([^[:space:]]*\)$#\1=\2@\3#p' "$gomod" |
  while read -r r; do "$GO" mod edit -replace="$r"; done
for g in $(awk '/^godebug \(/{b=1;next} b&&/^\)/{b=0} b{print $1} /^godebug [^(]/{print $2}' "$gomod"); do
  "$GO" mod edit -godebug="$g"
done
say "$MODULE $VERSION with api at $API_VERSION; resolving modules"
"$GO" get "$MODULE/cmd/handler@$VERSION" >&2 || die "go get $MODULE/cmd/handler@$VERSION failed"
fetched=$(date +%s)
say "modules resolved in $((fetched - start)) s; compiling (minutes on 2 cores)"
nice -n 10 "$GO" build -trimpath -ldflags "-s -w" -o "$BIN.tmp" "$MODULE/cmd/handler" >&2 \
  || die "go build $MODULE/cmd/handler failed"
rm -rf "$DIR/crds"
mkdir -p "$DIR/crds"
cp "$src"/deploy/crds/*.yaml "$DIR/crds/"
chmod u+w "$DIR"/crds/*.yaml
mv "$BIN.tmp" "$BIN"
echo "$VERSION $API_VERSION" >"$DIR/stamp"
end=$(date +%s)
say "built kubernetes-nmstate handler $VERSION in $((end - start)) s (download $((fetched - start)) s, compile $((end - fetched)) s): $BIN; CRDs in $DIR/crds"
echo "$BIN"
