#!/usr/bin/env python3
"""Writes each fuzz target's seed corpus into fuzz/corpus/<target>/ from the
repository's own test data (the nmpolicy vectors and upstream's example
policies under openapi/testdata), so that the fuzzers start from inputs
that reach deep. Idempotent; the corpus directories are not committed.
"""
import hashlib
import json
import pathlib
import struct

import yaml

FUZZ = pathlib.Path(__file__).resolve().parent
TESTDATA = FUZZ.parent / "openapi" / "testdata"


def write(target, data):
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    (directory / name).write_bytes(data)


def load(path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


policies = []
for example in sorted((TESTDATA / "upstream-examples").glob("*.yaml")):
    for document in yaml.safe_load_all(example.read_text()):
        if isinstance(document, dict) and document.get("kind") == "NodeNetworkConfigurationPolicy":
            policies.append(document)

# render: {"spec": <policy spec>, "current": <state>} per nmpolicy vector.
for vector in sorted((TESTDATA / "nmpolicy").iterdir()):
    spec, current = load(vector / "policy.yaml"), load(vector / "current.yaml")
    if isinstance(spec, dict):
        write("render", json.dumps({"spec": spec, "current": current or {}}).encode())

# decode: flag byte (kind, YAML, fieldValidation, status) + body.
state = {
    "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
    "metadata": {"name": "node01"},
    "status": {"currentState": load(TESTDATA / "nmpolicy" / "001-go-doc-bridge-on-default-gw-dhcp" / "current.yaml"),
               "lastSuccessfulUpdateTime": "2026-12-07T00:00:00Z"},
}
enactment = {
    "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationEnactment",
    "metadata": {"name": "node01.p", "labels": {"nmstate.io/node": "node01", "nmstate.io/policy": "p"}},
    "status": {"desiredState": {"interfaces": []}, "policyGeneration": 1,
               "conditions": [{"type": "Available", "status": "True", "reason": "SuccessfullyConfigured"}]},
}
for flags, document in [(1, p) for p in policies] + [(0, state), (2, enactment), (32 + 2, enactment)]:
    write("decode", bytes([flags]) + json.dumps(document).encode())
    write("decode", bytes([flags | 4]) + yaml.safe_dump(document).encode())
    write("decode", bytes([flags | 8]) + json.dumps(document).encode())

# patch: flag byte (JSON patch, merge patch, apply; force; status) + body.
patches = [
    (0, [{"op": "replace", "path": "/spec/maxUnavailable", "value": 1},
         {"op": "add", "path": "/metadata/labels/b", "value": "c"}]),
    (0, [{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
         {"op": "remove", "path": "/spec/nodeSelector"}]),
    (0, [{"op": "move", "from": "/spec/desiredState/interfaces/0", "path": "/spec/desiredState/interfaces/1"}]),
    (1, {"metadata": {"labels": {"a": None, "x": "y"}}, "spec": {"maxUnavailable": "10%"}}),
    (1, {"status": {"conditions": [{"type": "Available", "status": "True"}]}}),
    (2, {"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
         "metadata": {"name": "p", "labels": {"a": "c"}}, "spec": {"maxUnavailable": 3}}),
    (6, {"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
         "metadata": {"name": "p"}, "spec": {"desiredState": {"interfaces": []}}}),
]
for policy in policies[:4]:
    patches.append((2, policy))
for flags, body in patches:
    write("patch", bytes([flags]) + json.dumps(body).encode())
write("patch", bytes([10]) + b"apiVersion: nmstate.io/v1\nkind: NodeNetworkConfigurationPolicy\nstatus: {}\n")

# selectors: the selector, a newline, then key=value labels.
for selector in ["a=b,c!=d", "env in (prod, test),!gone", "x notin (a),y", "a==b", "",
                 "metadata.name=node01.policy", "spec.nodeName!=n\\,x", "status.x=1",
                 "kubernetes.io/hostname=node01", "a in (b),a notin (c),!d,e"]:
    write("selectors", f"{selector}\na=b\nc=e\nenv=prod\nkubernetes.io/hostname=node01".encode())

# record_codec: a current value, a put and a delete history record, a revision.
def value(create, modified, data):
    return bytes([1]) + struct.pack("<qq", create, modified) + data

key = b"/registry/nmstate.io/nodenetworkstates/node01"
write("record_codec", value(3, 9, b'{"a":1}'))
write("record_codec", bytes([1, 0]) + struct.pack("<I", len(key)) + key + bytes([1])
      + struct.pack("<qqI", 3, 5, 2) + b"{}" + struct.pack("<qq", 3, 9) + b'{"a":2}')
write("record_codec", bytes([1, 1]) + struct.pack("<I", len(key)) + key + bytes([0]))
write("record_codec", struct.pack("<q", 42))
