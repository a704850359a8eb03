#!/usr/bin/env bash
# Removes what hack/local-up.sh created under --state-dir (default
# ./.local-up): stops its processes (by the PIDs it recorded, after checking
# they still run the recorded program), deletes its network namespaces.
# local-up.sh calls it on exit; run it by hand after a crash.
#
#   hack/local-down.sh [--state-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

state_dir=.local-up
while [[ $# -gt 0 ]]; do
  case $1 in
  --state-dir) state_dir=${2:?--state-dir needs a value}; shift 2 ;;
  --state-dir=*) state_dir=${1#*=}; shift ;;
  -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
  *) echo "local-down: unknown argument $1" >&2; exit 64 ;;
  esac
done
[[ -d $state_dir ]] || exit 0
state_dir=$(cd "$state_dir" && pwd)

# Each DIR/pids/NAME holds "PID PROGRAM": stop it if that PID still runs
# PROGRAM (PIDs are reused; never signal a stranger).
stop_recorded() {
  local file=$1 pid program
  read -r pid program <"$file" || return 0
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q -- "$program"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -r /proc/$pid/stat && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Agents first (they talk to the apiservers), then nmstate-apiserver, then
# (with --kube) kube-controller-manager, kube-apiserver and etcd, then the
# forward and anything else recorded, then the namespaces.
if [[ -d $state_dir/pids ]]; then
  for file in "$state_dir"/pids/agent-*; do [[ -e $file ]] && stop_recorded "$file"; done
  for name in apiserver kube-controller-manager kube-apiserver etcd; do
    [[ -e $state_dir/pids/$name ]] && stop_recorded "$state_dir/pids/$name"
  done
  for file in "$state_dir"/pids/*; do [[ -e $file ]] && stop_recorded "$file"; done
fi
if [[ -s $state_dir/nodes ]]; then
  while read -r ns; do
    [[ -n $ns ]] && bash hack/netns-node.sh down "$state_dir/netns" "$ns"
  done <"$state_dir/nodes"
  rm -f "$state_dir/nodes"
fi
if [[ -s $state_dir/hub ]]; then
  bash hack/netns-node.sh hub-down "$state_dir/netns" "$(<"$state_dir/hub")"
  rm -f "$state_dir/hub"
fi
rm -f "$state_dir/local-up.pid"
echo "local-down: cleaned up $state_dir"
