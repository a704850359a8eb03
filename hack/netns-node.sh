#!/usr/bin/env bash
# Network-namespace "nodes" for tests and hack/local-up.sh: each node is a
# network namespace with its own D-Bus system bus and NetworkManager, an
# eth0 into a shared hub namespace, and two veth pairs (eth1, eth2) whose
# peers stay inside the node. Nothing of the host is touched: no host
# interface, route or resolv.conf; NetworkManager never runs in the host's
# namespace.
#
#   netns-node.sh hub-up   DIR HUB ADDR/LEN      hub namespace HUB with bridge hub0 carrying ADDR
#   netns-node.sh hub-down DIR HUB               delete the hub (and anything left running in it)
#   netns-node.sh up   DIR NODE HUB ADDR/LEN GW [--no-nm]
#                                                node namespace NODE: eth0 (ADDR, default route via
#                                                GW, peer in HUB's hub0), eth1/eth2 veth pairs,
#                                                then dbus-daemon + NetworkManager (unless --no-nm)
#   netns-node.sh down DIR NODE                  stop NODE's processes, delete the namespace
#   netns-node.sh exec DIR NODE CMD...           run CMD in NODE (NetworkManager's mount, network
#                                                and UTS namespaces; DBUS_SYSTEM_BUS_ADDRESS set)
#   netns-node.sh env  DIR NODE                  print DBUS_SYSTEM_BUS_ADDRESS=... for NODE's bus
#
# DIR holds per-node state (DIR/NODE/: bus socket, NetworkManager's private
# /run, /etc/NetworkManager, /var/lib/NetworkManager, logs, PIDs).
# Requires root, iproute2, dbus-daemon, NetworkManager, util-linux.
set -euo pipefail

usage() { sed -n '2,22p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
cmd=$1 dir=$2 name=$3
shift 3
[[ $name =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "netns-node: bad namespace name: $name" >&2; exit 2; }
self=$(readlink -f "$0")
base=$dir/$name

# PID in file $1 belongs to a live (non-zombie) process whose argv[0]
# contains $2. PID 1 here may reap orphans late, so zombies count as dead.
pid_alive() {
  local file=$1 want=$2 pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ -r /proc/$pid/stat ]] || return 1
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  [[ $(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) == *"$want"* ]]
}

# Stops the process recorded in $1 (TERM, then KILL after 5 s).
stop_pid() {
  local file=$1 want=$2 pid
  if pid_alive "$file" "$want"; then
    pid=$(<"$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do pid_alive "$file" "$want" || break; sleep 0.1; done
    if pid_alive "$file" "$want"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}

# Kills what is still running inside namespace $1 (only processes this
# script or its caller started there) and deletes the namespace.
delete_netns() {
  local ns=$1 pid
  [[ -e /run/netns/$ns ]] || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
}

case $cmd in
hub-up)
  [[ $# -eq 1 ]] || usage
  addr=$1
  mkdir -p "$dir"
  [[ -e /run/netns/$name ]] || ip netns add "$name"
  ip -n "$name" link set lo up
  ip -n "$name" link show hub0 >/dev/null 2>&1 || ip -n "$name" link add hub0 type bridge
  ip -n "$name" addr replace "$addr" dev hub0
  ip -n "$name" link set hub0 up
  ;;

hub-down)
  delete_netns "$name"
  ;;

up)
  [[ $# -ge 3 ]] || usage
  hub=$1 addr=$2 gateway=$3
  with_nm=1
  [[ ${4:-} == --no-nm ]] && with_nm=0
  [[ -e /run/netns/$hub ]] || { echo "netns-node: hub $hub does not exist" >&2; exit 1; }
  mkdir -p "$base"
  [[ -e /run/netns/$name ]] || ip netns add "$name"
  ip -n "$name" link set lo up
  # eth0: the node's link to the hub (and through it to the apiserver).
  # The hub side's name must be unique within the hub and at most 15 bytes.
  port=$(printf 'p%s' "$(printf '%s' "$name" | md5sum | cut -c1-12)")
  if ! ip -n "$name" link show eth0 >/dev/null 2>&1; then
    ip -n "$name" link add eth0 type veth peer name "$port" netns "$hub"
    ip -n "$hub" link set "$port" master hub0 up
  fi
  ip -n "$name" addr replace "$addr" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" route replace default via "$gateway" dev eth0
  # eth1, eth2: where upstream's examples put their bridges and bonds. veth
  # pairs (this kernel has no dummy interfaces) whose peers stay here.
  for nic in eth1 eth2; do
    if ! ip -n "$name" link show "$nic" >/dev/null 2>&1; then
      ip -n "$name" link add "$nic" type veth peer name "$nic-peer"
    fi
    ip -n "$name" link set "$nic-peer" up
    ip -n "$name" link set "$nic" up
  done
  echo "$name" >"$base/netns"
  [[ $with_nm -eq 1 ]] || exit 0
  command -v NetworkManager >/dev/null || { echo "netns-node: NetworkManager is not installed (hack/setup-deps.sh)" >&2; exit 1; }
  if pid_alive "$base/nm.pid" NetworkManager; then exit 0; fi
  stop_pid "$base/dbus.pid" dbus-daemon
  rm -rf "$base/run" "$base/varlib" "$base/etc" "$base/systemd-network"
  mkdir -p "$base"/{run,varlib,etc/conf.d,etc/system-connections,etc/dispatcher.d,systemd-network}
  chmod 700 "$base/varlib"
  echo "# resolv.conf of namespace node $name" >"$base/resolv.conf"
  echo "$name" >"$base/hostname"
  cat >"$base/dbus.conf" <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <!-- No <servicedir>: nothing is bus-activated (dispatcher, helpers). -->
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
  # The veth peers are NetworkManager-unmanaged (state "ignore" in nmstate,
  # filtered from NodeNetworkState as upstream filters veths); DNS, hostname
  # and connectivity checks stay off so nothing reaches outside the node.
  cat >"$base/etc/NetworkManager.conf" <<'EOF'
[main]
plugins=keyfile
no-auto-default=*
dns=none
rc-manager=unmanaged
systemd-resolved=false
hostname-mode=none
auth-polkit=root-only
dhcp=internal

[keyfile]
path=/etc/NetworkManager/system-connections
unmanaged-devices=interface-name:*-peer

[connectivity]
enabled=false

[logging]
level=INFO
EOF
  setsid ip netns exec "$name" unshare -m -u --propagation private "$self" _inner "$dir" "$name" \
    >"$base/nm.log" 2>&1 </dev/null &
  for _ in $(seq 200); do
    if pid_alive "$base/nm.pid" NetworkManager && [[ -S $base/run/dbus/system_bus_socket ]] &&
      grep -q 'manager: startup complete' "$base/nm.log"; then
      exit 0
    fi
    sleep 0.1
  done
  echo "netns-node: NetworkManager in $name did not start within 20 s; $base/nm.log:" >&2
  tail -20 "$base/nm.log" >&2
  exit 1
  ;;

_inner)
  # Runs as `ip netns exec NODE unshare -m -u --propagation private ...`;
  # `ip netns exec` already mounted a /sys of this network namespace.
  # Without udev NetworkManager leaves every device unmanaged; with /sys
  # read-only it assumes a container and skips udev. Bridge-port options are
  # written under /sys/devices/virtual/net, so that subtree stays writable.
  mount -n --bind /sys/devices/virtual/net /sys/devices/virtual/net
  mount -n -o remount,bind,ro /sys
  mount -n --bind "$base/run" /run
  mkdir -p /run/dbus /run/NetworkManager
  mount -n --bind "$base/varlib" /var/lib/NetworkManager
  mount -n --bind "$base/etc" /etc/NetworkManager
  mount -n --bind "$base/resolv.conf" /etc/resolv.conf
  mount -n --bind "$base/hostname" /etc/hostname
  # nmstate keeps interface alt-name files there; keep them in the node.
  if [[ -d /etc/systemd/network ]]; then
    mount -n --bind "$base/systemd-network" /etc/systemd/network
  fi
  hostname "$name"
  dbus-daemon --config-file="$base/dbus.conf" --nofork --nopidfile --nosyslog \
    >"$base/dbus.log" 2>&1 &
  echo $! >"$base/dbus.pid"
  for _ in $(seq 100); do [[ -S /run/dbus/system_bus_socket ]] && break; sleep 0.05; done
  echo $$ >"$base/nm.pid"
  exec NetworkManager --debug # --debug: stay in the foreground, log to stderr
  ;;

down)
  stop_pid "$base/nm.pid" NetworkManager
  stop_pid "$base/dbus.pid" dbus-daemon
  delete_netns "$name"
  rm -rf "$base"
  ;;

exec)
  [[ $# -ge 1 ]] || usage
  [[ -e /run/netns/$name ]] || { echo "netns-node: $name does not exist" >&2; exit 1; }
  if pid_alive "$base/nm.pid" NetworkManager; then
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket
    exec nsenter -t "$(<"$base/nm.pid")" -m -n -u -- "$@"
  fi
  # No NetworkManager here: the node's network namespace, and a UTS
  # namespace of its own so that a hostname in a desired state stays in it.
  exec ip netns exec "$name" unshare -u -- "$@"
  ;;

env)
  echo "DBUS_SYSTEM_BUS_ADDRESS=unix:path=$base/run/dbus/system_bus_socket"
  ;;

*)
  usage
  ;;
esac
