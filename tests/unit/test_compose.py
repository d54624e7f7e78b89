"""docker compose, checked without a Docker engine: the file validates, every variable it sets is
one the service reads, every address is set for compose, and it matches the local launcher."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.auth.settings import Settings as AuthSettings
from services.common.settings import REPO_ROOT
from services.gateway.settings import Settings as GatewaySettings
from services.orders.settings import Settings as OrdersSettings
from services.stack import Ports, Stack

COMPOSE = REPO_ROOT / "docker-compose.yml"
SETTINGS = {"auth": AuthSettings, "orders": OrdersSettings, "gateway": GatewaySettings}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


class Recorder(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {k: _DEFAULTED.sub(lambda m: m.group(2), str(v)) for k, v in env.items()}


def read_by(name: str, env: Mapping[str, str]) -> tuple[Any, set[str]]:
    recorder = Recorder(env)
    settings = SETTINGS[name].from_env(recorder)
    return settings, recorder.read


def strings(value: Any) -> list[str]:
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strings(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [s for v in value for s in strings(v)]
    return [str(value)]


def test_compose_file_validates() -> None:
    if shutil.which("docker-compose"):
        argv = ["docker-compose", "-f", str(COMPOSE), "config", "-q"]
    elif (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        argv = ["docker", "compose", "-f", str(COMPOSE), "config", "-q"]
    elif os.environ.get("CI"):
        pytest.fail("CI must install docker-compose to validate docker-compose.yml")
    else:
        pytest.skip(
            "no docker compose CLI here (apt-get install docker-compose); CI validates the file"
        )
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for profile_args in (["--profile", "loadtest"],):
        services = subprocess.run(
            [*argv[:-2], *profile_args, "config", "--services"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert {"locust-master", "locust-worker", "gateway", "orders"} <= set(services)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_variable_compose_sets_is_read(compose: dict[str, Any], name: str) -> None:
    env = environment(compose["services"][name])
    _, read = read_by(name, env)
    assert set(env) <= read, f"{name} ignores {sorted(set(env) - read)}"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_address_is_set_for_compose(compose: dict[str, Any], name: str) -> None:
    settings, _ = read_by(name, environment(compose["services"][name]))
    assert settings.server.host == "0.0.0.0"
    local = [s for s in strings(settings) if "127.0.0.1" in s or "localhost" in s]
    assert not local, f"{name} would use a local-only default inside compose: {local}"
    repo_paths = [s for s in strings(settings) if s.startswith(str(REPO_ROOT))]
    assert not repo_paths, f"{name} would look for files in the source tree: {repo_paths}"


def test_compose_matches_the_local_launcher(compose: dict[str, Any], tmp_path: Path) -> None:
    services = compose["services"]
    stack = Stack(ports=Ports(), workdir=tmp_path)
    launched = {re.sub(r"-\d+$", "", n) for n in stack.components}
    assert launched == {"session-store", "data-store", "auth", "orders", "gateway"}
    assert launched <= set(services)

    ports = Ports()
    assert int(environment(services["auth"])["PORT"]) == ports.auth
    assert int(environment(services["orders"])["PORT"]) == ports.orders[0]
    assert int(environment(services["gateway"])["PORT"]) == ports.gateway
    assert services["gateway"]["ports"] == [f"{ports.gateway}:{ports.gateway}"]
    assert services["orders"]["deploy"]["replicas"] == len(ports.orders)

    # Every setting the launcher gives a service, compose gives it too (under the same name).
    launcher_env = stack.service_env()
    for name in SETTINGS:
        _, read = read_by(name, launcher_env)
        needed = (read & set(launcher_env)) - {"HOST"}
        assert needed <= set(environment(services[name])), (
            name,
            needed - set(environment(services[name])),
        )

    data = " ".join(services["data-store"]["command"])
    assert "--appendonly yes" in data and "--appendfsync always" in data
    assert "--enable-debug-command local" in " ".join(services["session-store"]["command"])


def test_compose_services_are_built_safely(compose: dict[str, Any]) -> None:
    for name in ("auth", "orders", "gateway"):
        service = compose["services"][name]
        assert isinstance(service["command"], list), f"{name} must use the exec form"
        assert service["depends_on"] and all(
            v["condition"] in {"service_healthy", "service_completed_successfully"}
            for v in service["depends_on"].values()
        )
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["restart"] == "unless-stopped"
    for name in ("orders", "gateway"):
        assert compose["services"][name]["volumes"] == ["keys-public:/keys/public:ro"]
    assert compose["services"]["auth"]["volumes"] == ["keys-signing:/keys/signing:ro"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    assert "--only-binary=:all:" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "PYTHONUNBUFFERED=1" in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "keys", "reports"} <= set(ignored)
