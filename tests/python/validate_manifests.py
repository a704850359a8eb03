#!/usr/bin/env python3
"""Checks the cluster manifests in deploy/, offline.

1. Renders deploy/ and every overlay with `kubectl kustomize` (no cluster).
2. Validates every rendered object against the Kubernetes JSON schemas of
   KUBERNETES_VERSION with the `kubernetes-validate` package, strictly
   (unknown fields are errors). The package ships the schemas, so nothing is
   fetched. A kind without a schema is a failure, not a skip.
3. Checks that the agent's ClusterRole grants no more than what node
   restriction leaves an agent (AGENT_ALLOWED), and that nothing else is
   bound to the agent's ServiceAccount.
4. Checks the facts a user relies on: replicas, probes, security contexts,
   in-cluster credentials for the apiserver (its service-account token
   mounted, no flag overriding what it reads from the cluster), the
   DaemonSet's rollout and tolerations, the APIService objects.

Before trusting a pass it proves that its checks can fail: the schema
validation must refuse a misspelled field and the RBAC check must refuse a
wildcard and an extra verb.

Prints `validate_manifests: all checks passed` on success; otherwise every
problem found, and exits 1.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import kubernetes_validate
except ImportError:
    sys.exit(
        "validate_manifests: the Python package kubernetes-validate is missing: "
        "run hack/setup-deps.sh"
    )

# The Kubernetes level the server reports and the setup installs kubectl of.
KUBERNETES_VERSION = "1.32"

# What node restriction leaves an agent (DESIGN.md §5): (API group, resource)
# → the verbs it may have. The apiserver narrows writes to the agent's own
# node; RBAC must not grant more than this to begin with.
AGENT_ALLOWED = {
    ("nmstate.io", "nodenetworkconfigurationpolicies"): {"get", "list", "watch"},
    ("nmstate.io", "nodenetworkstates"): {
        "get", "list", "watch", "create", "update", "patch",
    },
    ("nmstate.io", "nodenetworkstates/status"): {
        "get", "list", "watch", "create", "update", "patch",
    },
    ("nmstate.io", "nodenetworkconfigurationenactments"): {"get", "list", "watch"},
    ("nmstate.io", "nodenetworkconfigurationenactments/status"): {"update", "patch"},
    ("", "nodes"): {"get"},
}

APISERVICES = {"v1.nmstate.io": "v1", "v1beta1.nmstate.io": "v1beta1"}


class Problems:
    """Collects failed checks, each prefixed with where it was found."""

    def __init__(self):
        self.items = []

    def check(self, condition, where, message):
        if not condition:
            self.items.append(f"{where}: {message}")
        return condition


def render(root, target):
    """The objects `kubectl kustomize` renders for a kustomization."""
    try:
        result = subprocess.run(
            ["kubectl", "kustomize", str(root / target)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError:
        sys.exit("validate_manifests: kubectl is missing: run hack/setup-deps.sh")
    if result.returncode != 0:
        sys.exit(f"validate_manifests: kubectl kustomize {target} failed:\n{result.stderr}")
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def name_of(obj):
    metadata = obj.get("metadata", {})
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    return f"{obj.get('kind')} {namespace}/{name}" if namespace else f"{obj.get('kind')} {name}"


def schema_errors(obj):
    """Schema problems of one object (empty when it is valid)."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        return [f"schema: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"schema: {error.message}"]
    return []


def agent_rule_errors(rules):
    """Whatever the agent's rules grant beyond AGENT_ALLOWED."""
    errors = []
    for index, rule in enumerate(rules):
        where = f"rule {index}"
        if rule.get("nonResourceURLs"):
            errors.append(f"{where}: grants non-resource URLs {rule['nonResourceURLs']}")
        groups = rule.get("apiGroups", [])
        resources = rule.get("resources", [])
        verbs = rule.get("verbs", [])
        for field, values in (("apiGroups", groups), ("resources", resources), ("verbs", verbs)):
            if any("*" in value for value in values):
                errors.append(f"{where}: wildcard in {field}: {values}")
        for group in groups:
            for resource in resources:
                allowed = AGENT_ALLOWED.get((group, resource))
                if allowed is None:
                    errors.append(f"{where}: grants {resource!r} in group {group!r}")
                    continue
                extra = sorted(set(verbs) - allowed)
                if extra:
                    errors.append(f"{where}: verbs {extra} on {resource!r} in group {group!r}")
    return errors


def by_kind(objects, kind, name=None):
    return [
        obj for obj in objects
        if obj.get("kind") == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(problems, objects, kind, name, where):
    found = by_kind(objects, kind, name)
    problems.check(len(found) == 1, where, f"expected one {kind} {name}, found {len(found)}")
    return found[0] if found else None


def container(pod_spec, name):
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def check_probe(problems, where, probe, path):
    get = (probe or {}).get("httpGet", {})
    problems.check(get.get("path") == path, where, f"probe path {get.get('path')!r}, want {path!r}")
    problems.check(get.get("scheme") == "HTTPS", where, f"probe scheme {get.get('scheme')!r}, want HTTPS")


def check_apiserver(problems, objects, target, replicas, etcd):
    where = f"{target}: Deployment nmstate-apiserver"
    deployment = one(problems, objects, "Deployment", "nmstate-apiserver", target)
    if deployment is None:
        return
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    problems.check(spec.get("replicas") == replicas, where, f"replicas {spec.get('replicas')}, want {replicas}")
    problems.check(pod.get("serviceAccountName") == "nmstate-apiserver", where, "service account")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    problems.check(
        any(term.get("topologyKey") == "kubernetes.io/hostname" for term in terms),
        where, "no pod anti-affinity by kubernetes.io/hostname",
    )
    problems.check(pod.get("securityContext", {}).get("runAsNonRoot") is True, where, "runAsNonRoot")
    apiserver = container(pod, "apiserver")
    problems.check(apiserver["image"] == "nmstate-apiserver:latest", where, f"image {apiserver['image']}")
    check_probe(problems, f"{where} readinessProbe", apiserver.get("readinessProbe"), "/readyz")
    check_probe(problems, f"{where} livenessProbe", apiserver.get("livenessProbe"), "/livez")
    check_probe(problems, f"{where} startupProbe", apiserver.get("startupProbe"), "/livez")
    security = apiserver.get("securityContext", {})
    problems.check(security.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem")
    problems.check(security.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation")
    problems.check(security.get("capabilities", {}).get("drop") == ["ALL"], where, "capabilities drop ALL")
    resources = apiserver.get("resources", {})
    problems.check(resources.get("requests") and resources.get("limits"), where, "resource requests and limits")
    ports = {port["name"]: port["containerPort"] for port in apiserver.get("ports", [])}
    problems.check(ports.get("https") == 6443, where, f"port https {ports.get('https')}, want 6443")

    args = apiserver.get("args", [])
    flags = dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    mounts = {mount["mountPath"]: mount["name"] for mount in apiserver.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}

    def volume_of(path):
        """The volume mounted at the directory holding `path`."""
        directory = str(Path(path).parent)
        return volumes.get(mounts.get(directory))

    # In a fresh cluster the server authenticates kube-apiserver's front
    # proxy and delegates tokens and access with its service account's
    # in-cluster credentials (client CA and request-header settings come
    # from kube-system/extension-apiserver-authentication): the token must
    # be mounted, and no flag may point the server elsewhere.
    service_account = one(problems, objects, "ServiceAccount", "nmstate-apiserver", target)
    problems.check(
        pod.get("automountServiceAccountToken") is not False
        and (service_account or {}).get("automountServiceAccountToken") is not False,
        where, "the service-account token is not mounted: no in-cluster credentials",
    )
    for flag in (
        "--authentication-kubeconfig", "--authorization-kubeconfig",
        "--client-ca-file", "--requestheader-client-ca-file",
        # Rendering option left at its default (VLAN filtering on).
        "--default-bridge-vlan-filtering",
    ):
        problems.check(
            not any(arg.split("=", 1)[0] == flag for arg in args), where,
            f"{flag} is set: the in-cluster defaults are meant",
        )

    for flag in ("--tls-cert-file", "--tls-private-key-file"):
        volume = volume_of(flags.get(flag, "/missing/x"))
        problems.check(
            volume and volume.get("secret", {}).get("secretName") == "nmstate-apiserver-serving",
            where, f"{flag} is not a file of Secret nmstate-apiserver-serving",
        )
    data = volume_of(flags.get("--data-dir", "/missing") + "/x")
    if etcd:
        problems.check(
            flags.get("--etcd-servers", "").startswith("https://nmstate-etcd."),
            where, f"--etcd-servers {flags.get('--etcd-servers')!r} is not the etcd Service over TLS",
        )
        for flag in ("--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"):
            volume = volume_of(flags.get(flag, "/missing/x"))
            problems.check(
                volume and volume.get("secret", {}).get("secretName") == "nmstate-etcd-client",
                where, f"{flag} is not a file of Secret nmstate-etcd-client",
            )
    else:
        problems.check(not any(f.startswith("--etcd-servers") for f in flags), where, "uses etcd")
        problems.check(
            data and data.get("persistentVolumeClaim", {}).get("claimName") == "nmstate-apiserver-data",
            where, "--data-dir is not on PersistentVolumeClaim nmstate-apiserver-data",
        )
        problems.check(spec.get("strategy", {}).get("type") == "Recreate", where, "strategy must be Recreate")
        one(problems, objects, "PersistentVolumeClaim", "nmstate-apiserver-data", target)

    service = one(problems, objects, "Service", "nmstate-apiserver", target)
    if service:
        ports = service["spec"]["ports"]
        problems.check(
            [(p["port"], p.get("targetPort")) for p in ports] == [(443, "https")],
            f"{target}: Service nmstate-apiserver", "must map 443 to the https port",
        )


def check_apiservices(problems, objects, target):
    found = {obj["metadata"]["name"]: obj for obj in by_kind(objects, "APIService")}
    problems.check(set(found) == set(APISERVICES), target, f"APIService objects {sorted(found)}")
    for name, version in APISERVICES.items():
        spec = found.get(name, {}).get("spec", {})
        where = f"{target}: APIService {name}"
        problems.check(spec.get("group") == "nmstate.io" and spec.get("version") == version, where, "group/version")
        problems.check(
            spec.get("service") == {"name": "nmstate-apiserver", "namespace": "nmstate", "port": 443},
            where, f"service {spec.get('service')}",
        )
        problems.check(not spec.get("insecureSkipTLSVerify"), where, "must verify TLS")
    if len(found) == 2:
        problems.check(
            found["v1.nmstate.io"]["spec"].get("versionPriority", 0)
            > found["v1beta1.nmstate.io"]["spec"].get("versionPriority", 0),
            target, "v1 must be the preferred version",
        )


def check_etcd(problems, objects, target, present):
    statefulsets = by_kind(objects, "StatefulSet", "nmstate-etcd")
    if not present:
        problems.check(not statefulsets, target, "the embedded overlay must not run etcd")
        problems.check(
            not [s for s in by_kind(objects, "Service") if s["metadata"]["name"].startswith("nmstate-etcd")],
            target, "the embedded overlay must not have etcd Services",
        )
        return
    statefulset = one(problems, objects, "StatefulSet", "nmstate-etcd", target)
    if statefulset is None:
        return
    where = f"{target}: StatefulSet nmstate-etcd"
    spec = statefulset["spec"]
    problems.check(spec.get("replicas") == 3, where, "replicas must be 3")
    problems.check(spec.get("volumeClaimTemplates"), where, "no volumeClaimTemplates")
    peer = one(problems, objects, "Service", spec.get("serviceName"), target)
    problems.check(peer and peer["spec"].get("clusterIP") == "None", where, "serviceName must be headless")
    one(problems, objects, "Service", "nmstate-etcd", target)
    etcd = container(spec["template"]["spec"], "etcd")
    image = etcd["image"]
    problems.check(":" in image and not image.endswith(":latest"), where, f"image {image} is not pinned")
    args = etcd.get("args", [])
    for flag in ("--client-cert-auth=true", "--peer-client-cert-auth=true"):
        problems.check(flag in args, where, f"missing {flag}")
    problems.check(
        not any(arg.startswith(("--listen-client-urls=http:", "--listen-peer-urls=http:")) for arg in args),
        where, "client and peer URLs must be https",
    )


def check_agent(problems, objects, target):
    daemonset = one(problems, objects, "DaemonSet", "nmstate-agent", target)
    if daemonset:
        where = f"{target}: DaemonSet nmstate-agent"
        spec = daemonset["spec"]
        pod = spec["template"]["spec"]
        rolling = spec.get("updateStrategy", {}).get("rollingUpdate", {})
        problems.check(rolling.get("maxUnavailable") == "10%", where, f"maxUnavailable {rolling.get('maxUnavailable')!r}")
        problems.check(pod.get("tolerations") == [{"operator": "Exists"}], where, f"tolerations {pod.get('tolerations')}")
        problems.check(pod.get("hostNetwork") is True, where, "hostNetwork")
        problems.check(pod.get("priorityClassName") == "system-node-critical", where, "priorityClassName")
        problems.check(pod.get("serviceAccountName") == "nmstate-agent", where, "service account")
        agent = container(pod, "agent")
        problems.check(agent["image"] == "nmstate-agent:latest", where, f"image {agent['image']}")
        problems.check(agent.get("securityContext", {}).get("privileged") is True, where, "privileged")
        env = {var["name"]: var for var in agent.get("env", [])}
        problems.check(
            env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
            where, "NODE_NAME must come from spec.nodeName",
        )
        # The liveness probe reaches the health port the agent is told to
        # serve, on the node's loopback (host network).
        probe = agent.get("livenessProbe", {}).get("httpGet", {})
        ports = {p.get("name"): p.get("containerPort") for p in agent.get("ports", [])}
        port = ports.get(probe.get("port"), probe.get("port"))
        problems.check(
            probe.get("path") == "/healthz" and probe.get("host") == "127.0.0.1"
            and f"--health-address=127.0.0.1:{port}" in agent.get("args", []),
            where, f"livenessProbe {probe} must reach --health-address on 127.0.0.1",
        )
        host_paths = [v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v]
        problems.check(host_paths == ["/run/dbus/system_bus_socket"], where, f"hostPath volumes {host_paths}")

    role = one(problems, objects, "ClusterRole", "nmstate-agent", target)
    if role:
        for error in agent_rule_errors(role.get("rules", [])):
            problems.check(False, f"{target}: ClusterRole nmstate-agent", error)
        granted = {
            (group, resource, verb)
            for rule in role.get("rules", [])
            for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", [])
            for verb in rule.get("verbs", [])
        }
        wanted = {(g, r, v) for (g, r), verbs in AGENT_ALLOWED.items() for v in verbs}
        problems.check(
            granted >= wanted, f"{target}: ClusterRole nmstate-agent",
            f"misses {sorted(wanted - granted)}",
        )
    # Nothing else may be bound to the agent: that would widen its rights.
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        subjects = binding.get("subjects", [])
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == "nmstate-agent" for s in subjects):
            problems.check(
                binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nmstate-agent"},
                f"{target}: {name_of(binding)}", f"binds {binding['roleRef']} to the agent",
            )


def check_apiserver_rbac(problems, objects, target):
    refs = {
        (binding["kind"], binding["metadata"].get("namespace"), binding["roleRef"]["name"])
        for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding")
        if any(s.get("name") == "nmstate-apiserver" for s in binding.get("subjects", []))
    }
    problems.check(
        ("ClusterRoleBinding", None, "system:auth-delegator") in refs, target,
        "the apiserver is not bound to system:auth-delegator",
    )
    problems.check(
        ("RoleBinding", "kube-system", "extension-apiserver-authentication-reader") in refs, target,
        "the apiserver cannot read kube-system/extension-apiserver-authentication",
    )
    # The policy controller's Events (docs/api.md, "Events"): create and
    # patch events.k8s.io events in namespace default.
    granted = set()
    for binding in by_kind(objects, "RoleBinding"):
        if binding["metadata"].get("namespace") != "default" or binding["roleRef"]["kind"] != "Role":
            continue
        if not any(s.get("name") == "nmstate-apiserver" for s in binding.get("subjects", [])):
            continue
        for role in by_kind(objects, "Role"):
            if role["metadata"].get("namespace") == "default" and role["metadata"].get("name") == binding["roleRef"]["name"]:
                for rule in role.get("rules", []):
                    if "events.k8s.io" in rule.get("apiGroups", []) and "events" in rule.get("resources", []):
                        granted.update(rule.get("verbs", []))
    problems.check(
        {"create", "patch"} <= granted, target,
        f"the apiserver may not create and patch events.k8s.io events in namespace default (has {sorted(granted)})",
    )
    for level in ("view", "edit", "admin"):
        label = f"rbac.authorization.k8s.io/aggregate-to-{level}"
        roles = [
            role for role in by_kind(objects, "ClusterRole")
            if role["metadata"].get("labels", {}).get(label) == "true"
            and any("nmstate.io" in rule.get("apiGroups", []) for rule in role.get("rules", []))
        ]
        problems.check(roles, target, f"no ClusterRole aggregates nmstate.io to {level}")


def self_test(problems):
    """The checks must be able to fail, or a pass means nothing."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": 1, "selectr": {}, "template": {}},
    }
    problems.check(schema_errors(broken), "self-test", "schema validation accepted a misspelled field")
    missing = {"apiVersion": "nmstate.io/v1", "kind": "NoSuchKind", "metadata": {"name": "x"}}
    problems.check(schema_errors(missing), "self-test", "schema validation accepted an unknown kind")
    for rules in (
        [{"apiGroups": ["nmstate.io"], "resources": ["*"], "verbs": ["get"]}],
        [{"apiGroups": ["nmstate.io"], "resources": ["nodenetworkconfigurationpolicies"], "verbs": ["get", "delete"]}],
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    ):
        problems.check(agent_rule_errors(rules), "self-test", f"the agent RBAC check accepted {rules}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()

    problems = Problems()
    self_test(problems)
    targets = [("deploy", True), ("deploy/overlays/embedded", False)]
    for target, etcd in targets:
        objects = render(args.repo, target)
        invalid = 0
        for obj in objects:
            errors = schema_errors(obj)
            invalid += bool(errors)
            for error in errors:
                problems.check(False, f"{target}: {name_of(obj)}", error)
        check_apiserver(problems, objects, target, replicas=2 if etcd else 1, etcd=etcd)
        check_apiservices(problems, objects, target)
        check_etcd(problems, objects, target, present=etcd)
        check_agent(problems, objects, target)
        check_apiserver_rbac(problems, objects, target)
        kinds = sorted({obj["kind"] for obj in objects})
        print(f"validate_manifests: {target}: {len(objects)} objects ({', '.join(kinds)}), "
              f"{invalid} invalid against the Kubernetes {KUBERNETES_VERSION} schemas")

    if problems.items:
        for item in problems.items:
            print(f"FAIL {item}")
        sys.exit(1)
    print("validate_manifests: all checks passed")


if __name__ == "__main__":
    main()
