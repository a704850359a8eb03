#!/usr/bin/env python3
"""The official Kubernetes Python client against nmstate-apiserver.

Run by tests/tests/e2e/python_client.rs with the admin kubeconfig of a server it
started:

    python3 tests/python/client_test.py --kubeconfig <data-dir>/admin.kubeconfig

It drives NodeNetworkConfigurationPolicies and NodeNetworkStates through
`kubernetes.client.CustomObjectsApi` as a user's script would: create, get,
list with a label selector and with `limit` + `_continue` pages, merge
patch, watch (ADDED and MODIFIED events for changes made while watching),
delete. Every check is a plain `assert` with a message; any failure exits
non-zero with a traceback.
"""

import argparse
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP = "nmstate.io"
VERSION = "v1"
POLICIES = "nodenetworkconfigurationpolicies"
STATES = "nodenetworkstates"

# The longest any single watch may stay open: a limit against hangs only.
WATCH_TIMEOUT_SECONDS = 30


def policy(name, labels=None, max_unavailable=1):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "maxUnavailable": max_unavailable,
            "desiredState": {
                "interfaces": [
                    {"name": "br1", "type": "linux-bridge", "state": "up"}
                ]
            },
        },
    }


def names(listing):
    return [item["metadata"]["name"] for item in listing["items"]]


def create_get_and_label_selector(api):
    created = api.create_cluster_custom_object(
        GROUP, VERSION, POLICIES, policy("py-a", {"team": "net", "tier": "core"})
    )
    assert created["metadata"]["name"] == "py-a", f"create returned {created}"
    assert created["metadata"]["generation"] == 1, f"generation: {created['metadata']}"
    assert created["metadata"].get("uid"), f"no uid: {created['metadata']}"
    for name, labels in [("py-b", {"team": "net"}), ("py-c", {"team": "ops"})]:
        api.create_cluster_custom_object(GROUP, VERSION, POLICIES, policy(name, labels))

    got = api.get_cluster_custom_object(GROUP, VERSION, POLICIES, "py-a")
    assert got["spec"]["maxUnavailable"] == 1, f"get returned spec {got['spec']}"
    assert got["spec"]["desiredState"]["interfaces"][0]["name"] == "br1", got["spec"]

    team_net = api.list_cluster_custom_object(
        GROUP, VERSION, POLICIES, label_selector="team=net"
    )
    assert sorted(names(team_net)) == ["py-a", "py-b"], f"team=net: {names(team_net)}"
    not_core = api.list_cluster_custom_object(
        GROUP, VERSION, POLICIES, label_selector="team,tier notin (core)"
    )
    assert sorted(names(not_core)) == ["py-b", "py-c"], f"not core: {names(not_core)}"

    try:
        api.create_cluster_custom_object(GROUP, VERSION, POLICIES, policy("py-a"))
    except ApiException as error:
        assert error.status == 409, f"duplicate create: {error.status} {error.body}"
        assert "already exists" in error.body, f"duplicate create body: {error.body}"
    else:
        raise AssertionError("creating py-a twice succeeded")

    try:
        api.get_cluster_custom_object(GROUP, VERSION, POLICIES, "py-missing")
    except ApiException as error:
        assert error.status == 404, f"missing get: {error.status} {error.body}"
    else:
        raise AssertionError("getting a missing policy succeeded")


def paginate(api):
    seen = []
    pages = 0
    token = None
    while True:
        kwargs = {"limit": 2}
        if token:
            kwargs["_continue"] = token
        page = api.list_cluster_custom_object(GROUP, VERSION, POLICIES, **kwargs)
        pages += 1
        assert len(page["items"]) <= 2, f"page {pages} has {len(page['items'])} items"
        seen.extend(names(page))
        token = page["metadata"].get("continue")
        if not token:
            break
        assert pages < 10, "pagination does not end"
    assert pages == 2, f"3 policies in pages of 2 took {pages} pages"
    assert seen == ["py-a", "py-b", "py-c"], f"paged names: {seen}"


def merge_patch(api):
    patched = api.patch_cluster_custom_object(
        GROUP,
        VERSION,
        POLICIES,
        "py-a",
        {"metadata": {"labels": {"tier": None, "env": "lab"}}, "spec": {"maxUnavailable": "25%"}},
    )
    assert patched["metadata"]["labels"] == {"team": "net", "env": "lab"}, patched["metadata"]
    assert patched["spec"]["maxUnavailable"] == "25%", patched["spec"]
    assert patched["metadata"]["generation"] == 2, f"spec change: {patched['metadata']}"
    again = api.get_cluster_custom_object(GROUP, VERSION, POLICIES, "py-a")
    assert again["spec"]["maxUnavailable"] == "25%", f"patch not stored: {again['spec']}"


def node_network_states(api):
    for node in ["node-1", "node-2"]:
        api.create_cluster_custom_object(
            GROUP,
            VERSION,
            STATES,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "NodeNetworkState",
                "metadata": {"name": node, "labels": {"py": "yes"}},
            },
        )
    states = api.list_cluster_custom_object(GROUP, VERSION, STATES)
    assert states["kind"] == "NodeNetworkStateList", f"list kind: {states['kind']}"
    assert sorted(names(states)) == ["node-1", "node-2"], f"states: {names(states)}"
    one = api.get_cluster_custom_object(GROUP, VERSION, STATES, "node-2")
    assert one["kind"] == "NodeNetworkState", one


def watch_events(api):
    start = api.list_cluster_custom_object(GROUP, VERSION, POLICIES)
    resource_version = start["metadata"]["resourceVersion"]
    assert resource_version, f"list has no resourceVersion: {start['metadata']}"

    errors = []

    def change_while_watching():
        try:
            time.sleep(1)
            api.create_cluster_custom_object(
                GROUP, VERSION, POLICIES, policy("py-watched", {"watched": "yes"})
            )
            api.patch_cluster_custom_object(
                GROUP, VERSION, POLICIES, "py-watched", {"spec": {"maxUnavailable": 4}}
            )
        except Exception as error:  # reported by the main thread
            errors.append(error)

    changer = threading.Thread(target=change_while_watching)
    events = []
    stream = watch.Watch()
    changer.start()
    try:
        for event in stream.stream(
            api.list_cluster_custom_object,
            group=GROUP,
            version=VERSION,
            plural=POLICIES,
            resource_version=resource_version,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
        ):
            obj = event["object"]
            assert isinstance(obj, dict), f"event object is {type(obj)}: {event}"
            if obj["metadata"]["name"] != "py-watched":
                continue
            events.append((event["type"], obj))
            if event["type"] == "MODIFIED":
                stream.stop()
    finally:
        changer.join()
    assert not errors, f"changes during the watch failed: {errors}"
    types = [kind for kind, _ in events]
    assert types == ["ADDED", "MODIFIED"], f"events for py-watched: {types}"
    added, modified = events[0][1], events[1][1]
    assert added["spec"]["maxUnavailable"] == 1, f"ADDED object: {added['spec']}"
    assert modified["spec"]["maxUnavailable"] == 4, f"MODIFIED object: {modified['spec']}"
    assert int(modified["metadata"]["resourceVersion"]) > int(
        added["metadata"]["resourceVersion"]
    ), "resourceVersion did not grow"


def delete_all(api):
    for name in ["py-a", "py-b", "py-c", "py-watched"]:
        status = api.delete_cluster_custom_object(GROUP, VERSION, POLICIES, name)
        assert status.get("status") == "Success", f"delete {name}: {status}"
    for node in ["node-1", "node-2"]:
        api.delete_cluster_custom_object(GROUP, VERSION, STATES, node)
    left = api.list_cluster_custom_object(GROUP, VERSION, POLICIES)
    assert names(left) == [], f"policies left after delete: {names(left)}"
    try:
        api.delete_cluster_custom_object(GROUP, VERSION, POLICIES, "py-a")
    except ApiException as error:
        assert error.status == 404, f"second delete: {error.status} {error.body}"
    else:
        raise AssertionError("deleting py-a twice succeeded")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()

    config.load_kube_config(config_file=args.kubeconfig)
    api = client.CustomObjectsApi()

    steps = [
        create_get_and_label_selector,
        paginate,
        merge_patch,
        node_network_states,
        watch_events,
        delete_all,
    ]
    for step in steps:
        print(f"== {step.__name__}", flush=True)
        step(api)
    print(f"client_test: all {len(steps)} steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
