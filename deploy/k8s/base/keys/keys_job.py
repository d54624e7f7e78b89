"""The Kubernetes counterpart of compose's one-shot `keys` service: the signing key pair, once.

Run by the `keys` Job (image authscale:latest, mounted from a ConfigMap):
- the Secret SIGNING_SECRET (private.pem + public.pem) is created when missing and never
  replaced: auth mounts it, and no other pod may;
- the ConfigMap PUBLIC_CONFIGMAP (public.pem) is made to carry the Secret's public key, for
  orders and the gateway (JWT_PUBLIC_KEY_FILE).
Running it again changes nothing. The key pair is made by services.common.keys, the same code
as auth's own first start and `python -m services.auth.keygen`, in a tmpfs that goes with the pod.
It talks to the API server (KUBERNETES_API_URL if set, else the in-cluster address Kubernetes
gives every pod) with the Job's ServiceAccount token (a Role in this namespace grants
create on Secrets and ConfigMaps and get/update on these two names only): no kubectl, no
cluster-wide permission.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from services.common.keys import ensure_keypair  # the image's own code

SERVICEACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_SECONDS = 10


class Api:
    """The few namespaced calls the Job makes: GET, POST and PUT of JSON, answers by status."""

    def __init__(self, base: str, namespace: str, token: str, ca_file: Path | None) -> None:
        if not base.startswith(("https://", "http://")):
            raise SystemExit(f"the API server's address must be http(s): {base!r}")
        self.base = base.rstrip("/")
        self.namespace = namespace
        self.token = token
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    def call(
        self, method: str, kind: str, name: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        url = f"{self.base}/api/v1/namespaces/{self.namespace}/{kind}"
        if name is not None:
            url += f"/{name}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s))
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(  # noqa: S310 (checked http(s) in __init__)
                request, timeout=TIMEOUT_SECONDS, context=self.context
            ) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, None


def generate() -> dict[str, bytes]:
    """A new key pair as auth's key directory holds it (private.pem, public.pem)."""
    with tempfile.TemporaryDirectory(prefix="authscale-keys-") as directory:
        ensure_keypair(Path(directory))
        return {
            name: (Path(directory) / name).read_bytes() for name in ("private.pem", "public.pem")
        }


def ensure_secret(api: Api, name: str) -> bytes:
    """The public key of the Secret `name`, created with a new key pair when missing."""
    status, secret = api.call("GET", "secrets", name)
    if status == 404:
        files = generate()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "authscale"}},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
        }
        status, _ = api.call("POST", "secrets", body=body)
        if status == 201:
            print(f"created Secret {name}")
            return files["public.pem"]
        if status != 409:  # 409: another run got there first; use its key
            raise SystemExit(f"creating Secret {name}: HTTP {status}")
        status, secret = api.call("GET", "secrets", name)
    if status != 200:
        raise SystemExit(f"reading Secret {name}: HTTP {status}")
    data = secret.get("data") or {}
    if "private.pem" not in data or "public.pem" not in data:
        raise SystemExit(f"Secret {name} lacks private.pem or public.pem")
    print(f"Secret {name} exists; kept")
    return base64.b64decode(data["public.pem"])


def ensure_configmap(api: Api, name: str, public_pem: bytes) -> None:
    """The ConfigMap `name` holds exactly public_pem as public.pem."""
    wanted = {"public.pem": public_pem.decode()}
    status, current = api.call("GET", "configmaps", name)
    if status == 404:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "authscale"}},
            "data": wanted,
        }
        status, _ = api.call("POST", "configmaps", body=body)
        if status != 201:
            raise SystemExit(f"creating ConfigMap {name}: HTTP {status}")
        print(f"created ConfigMap {name}")
        return
    if status != 200:
        raise SystemExit(f"reading ConfigMap {name}: HTTP {status}")
    if current.get("data") == wanted:
        print(f"ConfigMap {name} matches the Secret; kept")
        return
    current["data"] = wanted  # the resourceVersion it carries makes this a compare-and-set
    status, _ = api.call("PUT", "configmaps", name, current)
    if status != 200:
        raise SystemExit(f"updating ConfigMap {name}: HTTP {status}")
    print(f"updated ConfigMap {name} to the Secret's public key")


def main(env: dict[str, str], serviceaccount: Path = SERVICEACCOUNT) -> int:
    host = env.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    host = f"[{host}]" if ":" in host else host  # an IPv6 cluster
    base = (
        env.get("KUBERNETES_API_URL")
        or f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT', '443')}"
    )
    ca_file = serviceaccount / "ca.crt"
    api = Api(
        base,
        (serviceaccount / "namespace").read_text().strip(),
        (serviceaccount / "token").read_text().strip(),
        ca_file if base.startswith("https:") else None,
    )
    public_pem = ensure_secret(api, env.get("SIGNING_SECRET", "authscale-signing-key"))
    ensure_configmap(api, env.get("PUBLIC_CONFIGMAP", "authscale-public-key"), public_pem)
    return 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
