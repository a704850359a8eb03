#!/usr/bin/env bash
# A local nmstate cluster on this machine, in the foreground:
#
#   hack/local-up.sh [--nodes N] [--backend nm|hollow] [--state-dir DIR]
#                    [--kube]               (behind a real kube-apiserver, see below)
#                    [--agent-arg ARG]...   (extra nmstate-agent flags, e.g.
#                                            --agent-arg=--checkpoint-timeout=30s)
#                    [--no-build]           (use the binaries already in target/debug)
#
# - builds nmstate-apiserver and nmstate-agent (debug);
# - starts nmstate-apiserver (embedded store under DIR/apiserver) inside a
#   hub network namespace at 10.77.0.1:6443, and a loopback forward (socat)
#   so that kubectl on this host reaches it at https://127.0.0.1:PORT;
# - for each node-1..node-N: with --backend nm (default), a network
#   namespace with its own D-Bus system bus and NetworkManager, eth0 into the
#   hub (10.77.0.<10+i>, default route via the hub), eth1 and eth2 (veth
#   pairs whose peers stay in the node), and the agent running inside it, so
#   node-to-apiserver traffic crosses the node's eth0; with --backend hollow,
#   a hollow (simulated) agent on this host;
# - writes DIR/admin.kubeconfig and prints `export KUBECONFIG=...`;
# - stays in the foreground until Ctrl-C or SIGTERM, then removes
#   everything it created (hack/local-down.sh does the same after a crash).
#
# This machine's kernel has no bridge VLAN filtering, so the apiserver runs
# with --default-bridge-vlan-filtering=false (linux-bridge ports without a
# `vlan` section get none instead of upstream's default trunk 2-4094).
# With --kube, etcd and an upstream kube-apiserver (built once by
# hack/build-kube-apiserver.sh) run in the hub too, and nmstate-apiserver is
# an aggregated API server behind it, wired as in a cluster: deploy/'s
# APIServices and RBAC, a Service + Endpoints + EndpointSlice to the hub
# address, the client CA and front-proxy settings read from the real
# extension-apiserver-authentication ConfigMap, TokenReview and
# SubjectAccessReview answered by kube-apiserver, a Node object per node,
# and each agent on a service-account token bound to a Pod on its Node.
# The kubeconfig then names kube-apiserver (docs/local-up.md).
# Needs root (network namespaces). Touches no host interface, route or
# resolv.conf; only loopback and addresses inside its own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=2
backend=nm
state_dir=.local-up
agent_args=()
build=1
kube=0
usage() { sed -n '2,37p' "$0"; }
while [[ $# -gt 0 ]]; do
  case $1 in
  --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
  --nodes=*) nodes=${1#*=}; shift ;;
  --backend) backend=${2:?--backend needs a value}; shift 2 ;;
  --backend=*) backend=${1#*=}; shift ;;
  --state-dir) state_dir=${2:?--state-dir needs a value}; shift 2 ;;
  --state-dir=*) state_dir=${1#*=}; shift ;;
  --agent-arg) agent_args+=("${2:?--agent-arg needs a value}"); shift 2 ;;
  --agent-arg=*) agent_args+=("${1#*=}"); shift ;;
  --no-build) build=0; shift ;;
  --kube) kube=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "local-up: unknown argument $1" >&2; usage >&2; exit 64 ;;
  esac
done
[[ $nodes =~ ^[0-9]+$ && $nodes -ge 1 && $nodes -le 200 ]] ||
  { echo "local-up: --nodes must be a number from 1 to 200" >&2; exit 64; }
[[ $backend == nm || $backend == hollow ]] ||
  { echo "local-up: --backend must be nm or hollow" >&2; exit 64; }
[[ $(id -u) -eq 0 ]] || { echo "local-up: needs root (network namespaces)" >&2; exit 1; }

mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
if [[ -s $state_dir/local-up.pid ]] && kill -0 "$(<"$state_dir/local-up.pid")" 2>/dev/null; then
  echo "local-up: already running (PID $(<"$state_dir/local-up.pid")) with state in $state_dir" >&2
  exit 1
fi
# Leftovers of a crashed run.
bash hack/local-down.sh --state-dir "$state_dir" >/dev/null

bash hack/setup-deps.sh
if [[ $build -eq 1 ]]; then
  echo "local-up: building"
  cargo build -p nmstate-apiserver -p nmstate-agent
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
apiserver=$target_dir/debug/nmstate-apiserver
agent=$target_dir/debug/nmstate-agent
for binary in "$apiserver" "$agent"; do
  [[ -x $binary ]] || { echo "local-up: $binary is missing; run without --no-build" >&2; exit 1; }
done

echo $$ >"$state_dir/local-up.pid"
mkdir -p "$state_dir"/{pids,logs,netns,kubeconfigs}
cleanup() {
  trap - EXIT INT TERM
  echo "local-up: stopping"
  bash hack/local-down.sh --state-dir "$state_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# record NAME PID PROGRAM: what local-down.sh stops.
record() { echo "$2 $3" >"$state_dir/pids/$1"; }

prefix=nmst-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
hub=$prefix-hub
hub_address=10.77.0.1
api_port=6443
echo "$hub" >"$state_dir/hub"
bash hack/netns-node.sh hub-up "$state_dir/netns" "$hub" "$hub_address/24"

# The loopback forward to a port in the hub: one `ip netns exec HUB socat`
# per connection. forward NAME PORT_IN_HUB prints the host port.
forward() {
  local name=$1 target_port=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$state_dir/$name.sh" <<EOS
#!/bin/sh
exec ip netns exec $hub socat STDIO TCP:$hub_address:$target_port
EOS
  chmod +x "$state_dir/$name.sh"
  socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "EXEC:$state_dir/$name.sh" \
    >"$state_dir/logs/$name.log" 2>&1 </dev/null &
  record "$name" $! socat
  echo "$port"
}

# wait_for WHAT PIDNAME SECONDS CMD...: until CMD succeeds, failing early
# when the process recorded as PIDNAME exits.
wait_for() {
  local what=$1 name=$2 seconds=$3
  shift 3
  for _ in $(seq $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    if ! kill -0 "$(awk '{print $1}' "$state_dir/pids/$name")" 2>/dev/null; then
      echo "local-up: $name exited; $state_dir/logs/$name.log:" >&2
      tail -20 "$state_dir/logs/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "local-up: $what not ready after $seconds s; $state_dir/logs/$name.log:" >&2
  tail -20 "$state_dir/logs/$name.log" >&2
  exit 1
}

if [[ $kube -eq 0 ]]; then
  # The apiserver lives in the hub; its generated certificate names the hub
  # address and 127.0.0.1 (the forward).
  ip netns exec "$hub" "$apiserver" \
    --data-dir "$state_dir/apiserver" \
    --bind-address "$hub_address" --secure-port "$api_port" \
    --tls-sni-hosts "$hub_address,127.0.0.1,localhost" \
    --default-bridge-vlan-filtering=false \
    >"$state_dir/logs/apiserver.log" 2>&1 </dev/null &
  record apiserver $! nmstate-apiserver
  forward_port=$(forward forward "$api_port")
  # What agents dial: from a node namespace the hub address, from the host
  # the forward.
  node_server=https://$hub_address:$api_port
  echo "local-up: waiting for the apiserver"
  wait_for "the apiserver" apiserver 60 test -s "$state_dir/apiserver/admin.kubeconfig"
  sed "s#server: https://.*#server: https://127.0.0.1:$forward_port#" \
    "$state_dir/apiserver/admin.kubeconfig" >"$state_dir/admin.kubeconfig"
  chmod 600 "$state_dir/admin.kubeconfig"
  wait_for "the apiserver" apiserver 60 kubectl --kubeconfig "$state_dir/admin.kubeconfig" get --raw /readyz
else
  source hack/local-up-kube.sh
fi

for i in $(seq "$nodes"); do
  node=node-$i
  labels="kubernetes.io/hostname=$node,node-role.kubernetes.io/worker="
  kubeconfig=$state_dir/kubeconfigs/$node.kubeconfig
  if [[ $backend == nm ]]; then
    server=$node_server
  else
    server=https://127.0.0.1:$forward_port
  fi
  if [[ $kube -eq 0 ]]; then
    "$apiserver" kubeconfig --data-dir "$state_dir/apiserver" \
      --user "system:node:$node" --group system:nodes --server "$server" --out "$kubeconfig"
    node_flags=(--node-labels "$labels")
  else
    # The Node (its labels are the node's labels), and the agent's
    # identity: a token bound to a Pod on that Node.
    kube_node "$node" "$labels" "$server" "$kubeconfig"
    node_flags=()
  fi
  if [[ $backend == nm ]]; then
    ns=$prefix-$node
    echo "$ns" >>"$state_dir/nodes"
    bash hack/netns-node.sh up "$state_dir/netns" "$ns" "$hub" "10.77.0.$((10 + i))/24" "$hub_address"
    bash hack/netns-node.sh exec "$state_dir/netns" "$ns" "$agent" \
      --node-name "$node" --kubeconfig "$kubeconfig" --backend nm ${node_flags[@]+"${node_flags[@]}"} \
      ${agent_args[@]+"${agent_args[@]}"} >"$state_dir/logs/$node.log" 2>&1 </dev/null &
  else
    "$agent" --node-name "$node" --kubeconfig "$kubeconfig" --backend hollow ${node_flags[@]+"${node_flags[@]}"} \
      ${agent_args[@]+"${agent_args[@]}"} >"$state_dir/logs/$node.log" 2>&1 </dev/null &
  fi
  record "agent-$node" $! nmstate-agent
done

if [[ $kube -eq 0 ]]; then
  what="the apiserver"
else
  what="etcd, kube-apiserver $kube_version and nmstate-apiserver (aggregated)"
fi
cat <<EOS

local-up: $nodes $backend node(s), $what are running (logs in $state_dir/logs).
Linux-bridge ports get no default VLAN trunk (this kernel lacks bridge VLAN filtering).
To use it:

  export KUBECONFIG=$state_dir/admin.kubeconfig
  kubectl get nns

Ctrl-C (or SIGTERM) stops everything and cleans up.
EOS

# Foreground until a signal, or until a server dies.
watched=(apiserver)
[[ $kube -eq 1 ]] && watched+=(etcd kube-apiserver kube-controller-manager)
while :; do
  for name in "${watched[@]}"; do
    if ! kill -0 "$(awk '{print $1}' "$state_dir/pids/$name")" 2>/dev/null; then
      echo "local-up: $name exited; $state_dir/logs/$name.log:" >&2
      tail -20 "$state_dir/logs/$name.log" >&2
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
