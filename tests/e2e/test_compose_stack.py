"""The contract tests again, against `docker compose up` (needs a Docker engine).

Skipped, with the reason shown, where no engine runs (as on the project's CI machines); the
compose file itself is checked without an engine in tests/unit/test_compose.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from services.common.settings import REPO_ROOT
from tests.e2e.test_contract import (  # noqa: F401 - collected here against compose
    test_bearer_token_is_judged_alone,
    test_csrf_is_enforced_for_cookie_requests,
    test_gateway_refuses_path_tricks_and_unknown_routes,
    test_order_lifecycle,
    test_request_ids_are_created_or_forwarded,
    test_spoofed_identity_headers_change_nothing,
)

pytestmark = pytest.mark.docker


def _engine_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return "no Docker engine is running (docker info failed)"
    if subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode:
        return "the docker compose plugin is not installed"
    return None


@pytest.fixture(scope="module")
def stack() -> Iterator[SimpleNamespace]:
    reason = _engine_reason()
    if reason:
        pytest.skip(reason)
    compose = [
        "docker",
        "compose",
        "-p",
        "authscale-test",
        "-f",
        str(REPO_ROOT / "docker-compose.yml"),
    ]
    subprocess.run([*compose, "up", "-d", "--build", "--wait"], check=True, timeout=600)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "compose gateway never became ready"
            time.sleep(0.5)
        yield SimpleNamespace(gateway_url="http://127.0.0.1:8080")
    finally:
        subprocess.run([*compose, "down", "-v"], check=False, timeout=300)
