#!/usr/bin/env python3
"""How long a NetworkManager-visible change takes to reach the node's
NodeNetworkState, on a cluster started by hack/local-up.sh (backend nm).

    hack/nm-report-latency.py [--state-dir .local-up] [--node node-1] [--runs 10]

Each run adds (or removes) an address on eth2 inside the node's namespace
with `ip addr` (a change made behind the agent's back, as an admin would),
and waits on a watch of NodeNetworkState <node> for the first event whose
currentState shows it. The figure is the time from just before `ip addr`
to that event: NetworkManager's D-Bus signal, the agent's debounce, its
retrieve, the write, and the watch delivery. Prints one line per run and the
median and maximum.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

from kubernetes import client, config, watch

HERE = os.path.dirname(os.path.abspath(__file__))


def has_address(state, iface, ip):
    for entry in (state or {}).get("interfaces", []):
        if entry.get("name") == iface:
            for address in entry.get("ipv4", {}).get("address", []) or []:
                if address.get("ip") == ip:
                    return True
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", default=".local-up")
    parser.add_argument("--node", default="node-1")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    state_dir = os.path.abspath(args.state_dir)
    config.load_kube_config(os.path.join(state_dir, "admin.kubeconfig"))
    api = client.CustomObjectsApi()
    index = int(args.node.rsplit("-", 1)[1])
    with open(os.path.join(state_dir, "nodes")) as f:
        namespace = f.read().split()[index - 1]
    ip = "198.51.100.77"

    def run_in_node(*command):
        subprocess.run(
            ["bash", os.path.join(HERE, "netns-node.sh"), "exec",
             os.path.join(state_dir, "netns"), namespace, *command],
            check=True)

    figures = []
    for run in range(args.runs):
        want = run % 2 == 0  # add on even runs, remove on odd ones
        current = api.get_cluster_custom_object(
            "nmstate.io", "v1", "nodenetworkstates", args.node)
        seen = threading.Event()
        stamp = {}

        def wait_for_it():
            w = watch.Watch()
            for event in w.stream(
                    api.list_cluster_custom_object, "nmstate.io", "v1",
                    "nodenetworkstates",
                    field_selector="metadata.name=" + args.node,
                    resource_version=current["metadata"]["resourceVersion"],
                    timeout_seconds=30):
                state = event["object"].get("status", {}).get("currentState")
                if has_address(state, "eth2", ip) == want:
                    stamp["at"] = time.monotonic()
                    seen.set()
                    w.stop()
                    return

        watcher = threading.Thread(target=wait_for_it)
        watcher.start()
        time.sleep(0.5)  # the watch is open
        start = time.monotonic()
        run_in_node("ip", "addr", "add" if want else "del", ip + "/24", "dev", "eth2")
        watcher.join()
        if not seen.is_set():
            print(f"run {run + 1}: not seen within 30 s", file=sys.stderr)
            sys.exit(1)
        figure = stamp["at"] - start
        figures.append(figure)
        print(f"run {run + 1}: {'add' if want else 'remove'} -> NNS in {figure * 1000:.0f} ms")
        time.sleep(1.5)  # let the reporter settle before the next change
    print(f"median {statistics.median(figures) * 1000:.0f} ms, "
          f"max {max(figures) * 1000:.0f} ms over {len(figures)} runs")


if __name__ == "__main__":
    main()
