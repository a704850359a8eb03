# Sourced by the hack/build-*.sh scripts (not run by itself): their shared
# start. `peer_setup NAME DIR` names the script's messages (`say`, `die`);
# `find_go WHAT` sets GO (the GO variable, else `go` on PATH, else
# /usr/local/go/bin/go) or dies saying that WHAT needs it, and sets gover.

peer_setup() {
  PEER_NAME=$1
}
say() { printf '%s: %s\n' "$PEER_NAME" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$PEER_NAME" "$*" >&2; exit 1; }

find_go() {
  GO=${GO:-}
  if [ -z "$GO" ]; then
    if command -v go >/dev/null 2>&1; then GO=$(command -v go)
    elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
    else die "Go is not installed: $1 (https://go.dev/dl/)"; fi
  fi
  gover=$("$GO" env GOVERSION) || die "$GO does not run"
  say "using $GO ($gover)"
}
