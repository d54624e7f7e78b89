"""Kubernetes manifests (deploy/k8s), checked without a cluster: every overlay renders with
`kubectl kustomize` and validates offline against the Kubernetes schemas (kubernetes-validate
--strict); the containers set the variables the services read, under compose's names and values,
on the same ports; only auth mounts the signing key; every container is locked down; the
NetworkPolicies admit only what the topology needs; the key Job's script works against an API
server that answers as Kubernetes does.

Long because every overlay, container and policy is checked against one rendering of the tree.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devstack.stack import Ports, Stack
from services.common import keys as keylib
from services.common.settings import REPO_ROOT
from tests.httputil import serving
from tests.settingsutil import SETTINGS, Recorder, read_by, resolve, strings

K8S = REPO_ROOT / "deploy" / "k8s"
COMPOSE = REPO_ROOT / "docker-compose.yml"
OVERLAYS = ("dev", "scale", "loadtest")
TREES = ("base", *OVERLAYS)
# The oldest Kubernetes still commonly run, and a recent one: both must accept every object.
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
STORES = ("session-store", "data-store")
NAME = "app.kubernetes.io/name"
SIGNING_SECRET = "authscale-signing-key"
PUBLIC_CONFIGMAP = "authscale-public-key"
Doc = dict[str, Any]


# -- rendering ------------------------------------------------------------------------------


@functools.cache
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide kubectl (scripts/install-kubectl.sh) to render deploy/k8s")
        pytest.skip("kubectl is not installed (scripts/install-kubectl.sh installs it)")
    return found


def tree(name: str) -> Path:
    return K8S / name if name == "base" else K8S / "overlays" / name


@functools.cache
def rendered(name: str) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(tree(name))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl kustomize {name}: {done.stderr}"
    return done.stdout


def documents(name: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(rendered(name)) if d]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet"]
    for version in KUBERNETES_VERSIONS:
        argv += ["-k", version]
    return subprocess.run(
        [*argv, str(path)], capture_output=True, text=True, check=False, timeout=100
    )


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_owners(docs: list[Doc]) -> dict[str, Doc]:
    """Every object that runs pods, by name."""
    kinds = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob", "ReplicaSet", "Pod"}
    owners = {d["metadata"]["name"]: d for d in docs if d["kind"] in kinds}
    assert not {d["kind"] for d in owners.values()} - {"Deployment", "StatefulSet", "Job"}
    return owners


def pod_spec(owner: Doc) -> Doc:
    spec: Doc = owner["spec"]["template"]["spec"]
    return spec


def pod_labels(owner: Doc) -> dict[str, str]:
    labels: dict[str, str] = owner["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(owner: Doc) -> list[Doc]:
    spec = pod_spec(owner)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(docs: list[Doc], name: str) -> Doc:
    (only,) = pod_spec(pod_owners(docs)[name])["containers"]
    assert isinstance(only, dict)
    return only


def environment(docs: list[Doc], item: Doc) -> dict[str, str]:
    """A container's environment as the kubelet gives it: envFrom ConfigMaps, then env."""
    env: dict[str, str] = {}
    for source in item.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps feed envFrom: {source}"
        configmap = one(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(configmap["data"])
    for var in item.get("env", []):
        assert "value" in var, f"{var['name']}: literal values or the settings ConfigMap only"
        env[var["name"]] = var["value"]
    return env


# -- compose and the services -----------------------------------------------------------------


@functools.cache
def compose() -> Doc:
    data: Doc = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    return {k: resolve(v) for k, v in env.items()}


# -- (a) every tree renders and validates ----------------------------------------------------


@pytest.mark.parametrize("name", TREES)
def test_renders_and_validates_strictly(name: str, tmp_path: Path) -> None:
    docs = documents(name)
    assert docs, f"{name} rendered nothing"
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(rendered(name))
    done = validate(manifest)
    assert done.returncode == 0, done.stdout + done.stderr
    # A kind without a schema is only a warning there; every object here must have one.
    assert "WARN" not in done.stdout and "ERROR" not in done.stdout, done.stdout
    for doc in docs:
        assert doc["metadata"].get("namespace") == "authscale" or doc["kind"] == "Namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "authscale", doc


def test_strict_validation_refuses_what_kubernetes_would(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field, or a wrong type, is refused."""
    for mistake in ("misspelt", "wrong type"):
        gateway = copy.deepcopy(pod_owners(documents("dev"))["gateway"])
        item = pod_spec(gateway)["containers"][0]
        if mistake == "misspelt":
            item["readinesProbe"] = item.pop("readinessProbe")
        else:
            item["ports"][0]["containerPort"] = "eight thousand"
        manifest = tmp_path / "broken.yaml"
        manifest.write_text(yaml.safe_dump(gateway))
        done = validate(manifest)
        assert done.returncode != 0 and "ERROR" in done.stdout, (mistake, done.stdout)


# -- (b) the same variables, values and ports as compose and the local launcher --------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_k8s_sets_is_read(overlay: str, service: str) -> None:
    docs = documents(overlay)
    env = environment(docs, container(docs, service))
    _, read = read_by(service, env)
    assert set(env) <= read, f"{service} ignores {sorted(set(env) - read)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_k8s_sets_what_compose_sets(overlay: str, service: str) -> None:
    """The same names and values: the Services are named as compose's services, so every
    address (store URLs, upstreams, AUTH_URL) and key path reads the same."""
    docs = documents(overlay)
    k8s, theirs = environment(docs, container(docs, service)), compose_env(service)
    # The one deliberate difference: per-hop timings tell cache state, so they are on for
    # people trying the stack (compose) and off in the cluster (docs/API.md).
    assert (k8s.pop("SERVER_TIMING"), theirs.pop("SERVER_TIMING")) == ("0", "1")
    differences = {
        name: {"k8s": k8s.get(name), "compose": theirs.get(name)}
        for name in set(k8s) | set(theirs)
        if k8s.get(name) != theirs.get(name)
    }
    assert not differences, (
        f"{service}: deploy/k8s (base/settings.env or base/{service}.yaml) and "
        f"docker-compose.yml disagree: {differences}"
    )


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_address_is_set_for_k8s(service: str) -> None:
    docs = documents("dev")
    settings, _ = read_by(service, environment(docs, container(docs, service)))
    assert settings.server.host == "0.0.0.0"
    local = [s for s in strings(settings) if "127.0.0.1" in s or "localhost" in s]
    assert not local, f"{service} would use a local-only default in a pod: {local}"
    repo_paths = [s for s in strings(settings) if s.startswith(str(REPO_ROOT))]
    assert not repo_paths, f"{service} would look for files in the source tree: {repo_paths}"


def test_every_address_names_a_service_and_its_port() -> None:
    docs = documents("loadtest")
    services = {
        d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
        for d in docs
        if d["kind"] == "Service"
    }
    addresses = []
    for owner in pod_owners(docs).values():
        for item in containers(owner):
            env = environment(docs, item)
            env.pop("JWT_ISSUER", None)  # a name the tokens carry, not an address
            addresses += [v for v in [*env.values(), *item.get("command", [])] if "://" in v]
    assert len(addresses) >= 7, addresses
    for address in addresses:
        for part in address.split(","):
            url = urlsplit(part)
            assert url.hostname in services, address
            assert url.port in services[url.hostname], address


def test_ports_match_compose_and_the_launcher(tmp_path: Path) -> None:
    docs = documents("dev")
    ports = Ports()
    expected = {"gateway": ports.gateway, "auth": ports.auth, "orders": ports.orders[0]}
    for service, port in expected.items():
        item = container(docs, service)
        assert int(environment(docs, item)["PORT"]) == port
        assert int(compose_env(service)["PORT"]) == port
        assert [p["containerPort"] for p in item["ports"]] == [port]
        assert [p["port"] for p in one(docs, "Service", service)["spec"]["ports"]] == [port]
    for store in STORES:  # compose's in-container Redis port, which the URLs name
        assert [p["containerPort"] for p in container(docs, store)["ports"]] == [6379]
        assert [p["port"] for p in one(docs, "Service", store)["spec"]["ports"]] == [6379]
    # The gateway is published on 8080 by compose and served on 8080 by its Service.
    assert compose()["services"]["gateway"]["ports"] == ["${GATEWAY_PORT:-8080}:8080"]

    # Every setting the launcher gives a service, k8s gives it too (under the same name).
    launcher_env = Stack(ports=ports, workdir=tmp_path).service_env()
    for service in SETTINGS:
        _, read = read_by(service, launcher_env)
        needed = (read & set(launcher_env)) - {"HOST"}
        missing = needed - set(environment(docs, container(docs, service)))
        assert not missing, (service, missing)


def test_commands_match_compose() -> None:
    services = compose()["services"]
    docs = documents("loadtest")
    for name in (*SETTINGS, "locust-master", "locust-worker"):
        assert container(docs, name)["command"] == services[name]["command"], name
    for store in STORES:
        command = container(docs, store)["command"]
        assert command[: len(services[store]["command"])] == services[store]["command"], store
        assert command[len(services[store]["command"]) :] == ["--dir", "/data"], store
    data_store = pod_owners(docs)["data-store"]
    assert data_store["kind"] == "StatefulSet"
    (claim,) = data_store["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container(docs, "data-store")["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert "--appendonly yes" in " ".join(container(docs, "data-store")["command"])
    assert "--appendonly no" in " ".join(container(docs, "session-store")["command"])
    assert pod_owners(docs)["session-store"]["kind"] == "Deployment"


def test_probes_and_images() -> None:
    docs = documents("dev")
    for service in SETTINGS:
        item = container(docs, service)
        assert item["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert item["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert item["startupProbe"]["httpGet"]["path"] == "/healthz"
    for store in STORES:
        item = container(docs, store)
        assert item["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
        assert "livenessProbe" in item
    redis = {resolve(compose()["services"][s]["image"]) for s in STORES}
    for owner in pod_owners(documents("loadtest")).values():
        for item in containers(owner):
            assert item["image"] in {"authscale:latest", *redis}, item["image"]
            # IfNotPresent: an image loaded into kind or minikube is used, never pulled.
            assert item["imagePullPolicy"] == "IfNotPresent"


def test_replicas_per_overlay() -> None:
    def replicas(name: str) -> dict[str, int | None]:
        return {
            n: o["spec"].get("replicas")
            for n, o in pod_owners(documents(name)).items()
            if o["kind"] != "Job"
        }

    assert replicas("base")["orders"] == compose()["services"]["orders"]["deploy"]["replicas"]
    assert set(replicas("dev").values()) == {1}
    scaled = replicas("scale")
    assert scaled["gateway"] is None and scaled["orders"] is None  # the HPAs own them
    assert scaled["auth"] == 2


def test_an_overlay_renames_the_image_and_changes_a_setting(tmp_path: Path) -> None:
    """What the README tells a cloud user to write: their registry's image, a setting."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    scale = os.path.relpath(tree("scale"), overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [scale],
                "images": [{"name": "authscale", "newName": "r.example/a", "newTag": "v1"}],
                "configMapGenerator": [
                    {
                        "name": "authscale-settings",
                        "behavior": "merge",
                        "literals": ["JWT_REVOCATION=off"],
                    }
                ],
            }
        )
    )
    done = subprocess.run(
        [kubectl(), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    images = {item["image"] for owner in pod_owners(docs).values() for item in containers(owner)}
    assert images == {"r.example/a:v1", resolve(compose()["services"]["data-store"]["image"])}
    for service in SETTINGS:
        assert environment(docs, container(docs, service))["JWT_REVOCATION"] == "off"


# -- the scale overlay -------------------------------------------------------------------------


def test_scale_has_autoscalers_budgets_and_sized_resources() -> None:
    docs = documents("scale")
    owners = pod_owners(docs)
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"gateway", "orders"}
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert hpa["spec"]["minReplicas"] >= 2
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    covered = {
        name
        for budget in budgets
        for name, owner in owners.items()
        if selects(budget["spec"]["selector"], pod_labels(owner))
    }
    assert covered == {"gateway", "orders", "auth"}
    for owner in owners.values():
        for item in containers(owner):
            resources = item["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), owner["metadata"]["name"]
            assert "memory" in resources["limits"], owner["metadata"]["name"]


_SIZING = re.compile(
    r"#\s+(gateway|orders|auth|session store|data store)\b.*?([\d,.]+) us x ([\d,]+)"
    r"(?: / (\d+))? req/s\s+= ([\d.]+) cores -> (\d+)m"
)


def test_scale_cpu_requests_follow_the_stated_measurements() -> None:
    """The comment's arithmetic holds, and the requests are the figures it derives."""
    text = (K8S / "overlays" / "scale" / "resources.yaml").read_text()
    assert re.search(r"run \d{8}T\d{6}Z", text), "name the run the figures came from"
    sizing = {}
    for match in _SIZING.finditer(text):
        service, us, rate, pods, cores, milli = match.groups()
        per_pod = float(rate.replace(",", "")) / int(pods or 1)
        computed = float(us.replace(",", "")) * per_pod / 1e6
        assert abs(computed - float(cores)) < 0.001, match.group(0)
        assert abs(int(milli) - computed * 1000) <= 10, match.group(0)
        sizing[service.replace(" ", "-")] = f"{milli}m"
    assert set(sizing) == {"gateway", "orders", "auth", "session-store", "data-store"}
    docs = documents("scale")
    for name, milli in sizing.items():
        assert container(docs, name)["resources"]["requests"]["cpu"] == milli, name


# -- (c) security ------------------------------------------------------------------------------


def secret_references(spec: Doc) -> set[str]:
    refs = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for volume in spec.get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                refs.add(source["secret"]["name"])
    for item in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in item.get("envFrom", []):
            if "secretRef" in source:
                refs.add(source["secretRef"]["name"])
        for var in item.get("env", []):
            if "secretKeyRef" in var.get("valueFrom", {}):
                refs.add(var["valueFrom"]["secretKeyRef"]["name"])
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_auth_mounts_the_signing_key(overlay: str) -> None:
    docs = documents(overlay)
    owners = pod_owners(docs)
    users = {name: secret_references(pod_spec(o)) for name, o in owners.items()}
    assert {n: refs for n, refs in users.items() if refs} == {"auth": {SIGNING_SECRET}}
    # Where auth reads it (KEYS_DIR), read-only; the public key where the verifiers read it.
    expected = {"auth": (SIGNING_SECRET, "KEYS_DIR"), "orders": None, "gateway": None}
    for service, secret in expected.items():
        item = container(docs, service)
        env = environment(docs, item)
        volumes = {v["name"]: v for v in pod_spec(owners[service])["volumes"]}
        mounts = {m["mountPath"]: m for m in item["volumeMounts"]}
        if secret:
            mount = mounts[env["KEYS_DIR"]]
            assert volumes[mount["name"]]["secret"]["secretName"] == SIGNING_SECRET
        else:
            mount = mounts[str(Path(env["JWT_PUBLIC_KEY_FILE"]).parent)]
            assert volumes[mount["name"]]["configMap"]["name"] == PUBLIC_CONFIGMAP
        assert mount["readOnly"] is True
    # Nothing in the manifests carries a key: the Job creates both at run time.
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [d for d in docs if d["metadata"]["name"] == PUBLIC_CONFIGMAP]


def effective(owner: Doc, item: Doc, field: str) -> Any:
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    own = item.get("securityContext", {})
    return own[field] if field in own else pod_spec(owner).get("securityContext", {}).get(field)


def dockerfile_uid() -> int:
    match = re.search(r"useradd\b.*--uid (\d+)", (REPO_ROOT / "Dockerfile").read_text())
    assert match, "the Dockerfile creates its user with a fixed --uid"
    return int(match.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay: str) -> None:
    docs = documents(overlay)
    namespace = one(docs, "Namespace", "authscale")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, owner in pod_owners(docs).items():
        spec = pod_spec(owner)
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        # Only the key Job talks to the API server.
        assert spec.get("automountServiceAccountToken") is (name == "keys"), name
        # No <SERVICE>_PORT=tcp://... variables beside the settings (GATEWAY_PORT and the like).
        assert spec.get("enableServiceLinks") is False, name
        for item in containers(owner):
            where = f"{name}/{item['name']}"
            assert effective(owner, item, "runAsNonRoot") is True, where
            uid = effective(owner, item, "runAsUser")
            assert isinstance(uid, int) and uid > 0, where  # numeric: the kubelet can check it
            if item["image"].startswith("authscale"):
                assert uid == dockerfile_uid(), where
            assert effective(owner, item, "readOnlyRootFilesystem") is True, where
            assert effective(owner, item, "allowPrivilegeEscalation") is False, where
            assert not effective(owner, item, "privileged"), where
            capabilities = item["securityContext"]["capabilities"]
            assert capabilities["drop"] == ["ALL"] and not capabilities.get("add"), where
            assert effective(owner, item, "seccompProfile") == {"type": "RuntimeDefault"}, where
            # The one writable place a read-only root leaves: an emptyDir on /tmp.
            tmp = [m for m in item.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], where


def test_the_key_job_has_only_namespaced_narrow_rights() -> None:
    docs = documents("dev")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    role = one(docs, "Role", "keys")
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""] and set(rule["resources"]) <= {"secrets", "configmaps"}
        assert "*" not in rule["verbs"] and not set(rule["verbs"]) & {"delete", "list", "watch"}
        if set(rule["verbs"]) - {"create"}:  # reads and updates name their one object
            assert rule["resourceNames"] in ([SIGNING_SECRET], [PUBLIC_CONFIGMAP]), rule
    binding = one(docs, "RoleBinding", "keys")
    assert binding["roleRef"]["name"] == "keys"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "keys", "namespace": "authscale"}
    ]
    job = pod_owners(docs)["keys"]
    assert pod_spec(job)["serviceAccountName"] == "keys"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


# -- NetworkPolicies -----------------------------------------------------------------------------


def selects(selector: Doc, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if (operator == "Exists") != present and operator in {"Exists", "DoesNotExist"}:
            return False
    return True


ANYONE = "anyone"


def admitted(docs: list[Doc], target: Doc) -> set[str]:
    """Who may open a connection to the target's pods: pod names, or ANYONE."""
    owners = pod_owners(docs)
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and "Ingress" in d["spec"]["policyTypes"]
        and selects(d["spec"]["podSelector"], pod_labels(target))
    ]
    assert policies, f"{target['metadata']['name']} is selected by no NetworkPolicy"
    sources: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("from"):
                sources.add(ANYONE)
            for peer in rule.get("from", []):
                assert set(peer) == {"podSelector"}, f"same-namespace pods only: {peer}"
                sources |= {
                    name
                    for name, owner in owners.items()
                    if selects(peer["podSelector"], pod_labels(owner))
                }
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_the_topology(overlay: str) -> None:
    docs = documents(overlay)
    owners = pod_owners(docs)
    expected = {
        "gateway": {ANYONE},  # the only way in
        "auth": {"gateway", "orders"},
        "orders": {"gateway"},
        "session-store": {"gateway", "auth", "orders"},
        "data-store": {"gateway", "auth", "orders"},
        "keys": set(),
        "locust-master": {"locust-worker"},
        "locust-worker": set(),
    }
    assert set(owners) <= set(expected)
    for name, owner in owners.items():
        assert admitted(docs, owner) == expected[name], name

    # One policy selects both stores and admits exactly gateway, auth and orders.
    def sources(policy: Doc) -> set[str]:
        return {
            name
            for name, owner in owners.items()
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
            if selects(peer["podSelector"], pod_labels(owner))
        }

    store_policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and all(selects(d["spec"]["podSelector"], pod_labels(owners[s])) for s in STORES)
        and sources(d) == {"gateway", "auth", "orders"}
    ]
    assert len(store_policies) == 1
    # The stores' and the services' ports are the only ones opened to them.
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']} opens every port"


# -- the key Job's script, against a fake API server ------------------------------------------


def keys_job() -> ModuleType:
    path = K8S / "base" / "keys" / "keys_job.py"
    spec = importlib.util.spec_from_file_location("keys_job", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in deploy/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


class _FakeApi(http.server.BaseHTTPRequestHandler):
    """Namespaced secrets and configmaps, answered as the API server does (404, 409, 201)."""

    server: Any

    def _route(self) -> tuple[str, str | None] | None:
        match = re.fullmatch(
            r"/api/v1/namespaces/authscale/(secrets|configmaps)(?:/([\w.-]+))?", self.path
        )
        return (match.group(1), match.group(2)) if match else None

    def _answer(self, status: int, body: Any = None) -> None:
        data = json.dumps(body or {"kind": "Status", "code": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        self.server.calls.append((method, self.path))
        route = self._route()
        if self.headers["Authorization"] != "Bearer sa-token" or route is None:
            self._answer(403 if route else 404)
            return
        kind, name = route
        store: dict[str, Doc] = self.server.objects[kind]
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else None
        if method == "GET":
            if name in store:
                self._answer(200, store[name])
            else:
                self._answer(404)
        elif method == "POST":
            name = body["metadata"]["name"]
            racing = self.server.racing.pop(kind, None)
            if racing is not None:  # another run created it since our GET
                store[name] = racing
            if name in store:
                self._answer(409)
                return
            store[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
            self._answer(201, store[name])
        elif method == "PUT":
            assert name is not None
            if store[name]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
                self._answer(409)
                return
            version = str(int(body["metadata"]["resourceVersion"]) + 1)
            store[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
            self._answer(200, store[name])

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fake_api() -> contextlib.AbstractContextManager[http.server.ThreadingHTTPServer]:
    return serving(_FakeApi, objects={"secrets": {}, "configmaps": {}}, calls=[], racing={})


def test_the_key_job_creates_the_keys_once(tmp_path: Path) -> None:
    docs = documents("dev")
    job_env = environment(docs, container(docs, "keys"))
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("authscale")
    module = keys_job()
    with fake_api() as server:
        api: Any = server
        env = Recorder(
            {**job_env, "KUBERNETES_API_URL": f"http://127.0.0.1:{server.server_address[1]}"}
        )
        assert module.main(env, tmp_path) == 0
        assert set(job_env) <= env.read, "every variable the Job sets is read by its script"
        secret = api.objects["secrets"][SIGNING_SECRET]
        files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        assert set(files) == {"private.pem", "public.pem"}
        # What auth's key ring loads, and the public key the verifiers get is its own.
        private = keylib.load_private_pem(files["private.pem"])
        public = keylib.load_public_pem(files["public.pem"])
        assert keylib.thumbprint(private.public_key()) == keylib.thumbprint(public)
        published = {"public.pem": files["public.pem"].decode()}
        assert api.objects["configmaps"][PUBLIC_CONFIGMAP]["data"] == published

        # Again: nothing is created or changed.
        api.calls.clear()
        assert module.main(Recorder(env), tmp_path) == 0
        assert {method for method, _ in api.calls} == {"GET"}
        assert api.objects["secrets"][SIGNING_SECRET] == secret

        # A public key that drifted from the Secret's is put back.
        api.objects["configmaps"][PUBLIC_CONFIGMAP]["data"] = {"public.pem": "stale"}
        assert module.main(Recorder(env), tmp_path) == 0
        assert api.objects["configmaps"][PUBLIC_CONFIGMAP]["data"] == published
        assert api.objects["secrets"][SIGNING_SECRET] == secret


def test_the_key_job_keeps_the_key_another_run_created(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("authscale")
    module = keys_job()
    with fake_api() as server:
        api: Any = server
        url = f"http://127.0.0.1:{server.server_address[1]}"
        first = module.generate()
        theirs = {
            "metadata": {"name": SIGNING_SECRET, "resourceVersion": "1"},
            "data": {k: base64.b64encode(v).decode() for k, v in first.items()},
        }

        # The Secret appears between our GET (404) and our POST (409): theirs is used.
        api.racing["secrets"] = theirs
        assert module.main({"KUBERNETES_API_URL": url}, tmp_path) == 0
        assert api.objects["secrets"][SIGNING_SECRET] == theirs
        published = api.objects["configmaps"][PUBLIC_CONFIGMAP]["data"]["public.pem"]
        assert published == first["public.pem"].decode()

        # A wrong token is refused, and the Job fails loudly (the Job retries it).
        (tmp_path / "token").write_text("wrong")
        with pytest.raises(SystemExit, match="HTTP 403"):
            module.main({"KUBERNETES_API_URL": url}, tmp_path)
