"""docker compose, checked without a Docker engine: the file validates, every variable it sets is
one the service reads, every address is set for compose, and it matches the local launcher."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.auth.settings import Settings as AuthSettings
from services.common.settings import REPO_ROOT
from services.gateway.settings import Settings as GatewaySettings
from services.orders.settings import Settings as OrdersSettings
from services.stack import DEMO_USER, Ports, Stack

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


def resolve(value: Any) -> str:
    """A compose value with every `${NAME:-default}` at its default."""
    return _DEFAULTED.sub(lambda m: m.group(2), str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {k: resolve(v) for k, v in env.items()}


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
    assert [resolve(p) for p in services["gateway"]["ports"]] == [
        f"{ports.gateway}:{ports.gateway}"
    ]
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


# Issue 9, item 12: one image build, shared; a second `up` recreates nothing that did not change.

APP_IMAGE = "authscale:latest"


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every service (in every profile) that runs the project's code."""
    return {
        name: service
        for name, service in compose["services"].items()
        if not resolve(service.get("image", "")).startswith("redis:")
    }


def test_one_image_is_built_once_and_shared(compose: dict[str, Any]) -> None:
    services = compose["services"]
    builders = sorted(name for name, service in services.items() if "build" in service)
    assert builders == ["keys"], (
        f"exactly one service may carry `build:` (compose builds once per such service and each "
        f"build retags the image, so a later `up` recreates every app container): {builders}"
    )
    apps = app_services(compose)
    assert {"keys", "seed", "auth", "orders", "gateway", "locust-master", "locust-worker"} <= set(
        apps
    )
    for name, service in apps.items():
        assert resolve(service.get("image")) == APP_IMAGE, f"{name} must run {APP_IMAGE}"
        if name not in builders:
            # Never pulled (it is in no registry): compose uses the one `keys` built.
            assert service.get("pull_policy") == "never", name
    # The image name can be changed as a whole (tests use one of their own), never per service.
    assert len({service["image"] for service in apps.values()}) == 1
    assert services["keys"]["build"] in (".", "./", {"context": "."})


def test_published_ports_can_be_moved(compose: dict[str, Any]) -> None:
    assert compose["services"]["gateway"]["ports"] == ["${GATEWAY_PORT:-8080}:8080"]
    assert compose["services"]["locust-master"]["ports"] == ["${LOCUST_PORT:-8089}:8089"]
    published = [n for n, s in compose["services"].items() if s.get("ports")]
    assert sorted(published) == ["gateway", "locust-master"]


def test_redis_accepts_the_other_containers(compose: dict[str, Any]) -> None:
    """Debian's redis-server (the stand-in image) keeps protected mode on unless told."""
    for name in ("session-store", "data-store"):
        command = compose["services"][name]["command"]
        assert command[:3] == ["redis-server", "--protected-mode", "no"], name


def test_base_images_are_the_ones_the_script_provides(compose: dict[str, Any]) -> None:
    """scripts/build-base-images.sh provides the Dockerfile's one base image and one redis tag."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    bases = set(re.findall(r"^FROM (\S+)", dockerfile, re.M))
    assert bases == {"python:3.11-slim"}, bases
    others = {
        resolve(s["image"])
        for s in compose["services"].values()
        if s not in app_services(compose).values()
    }
    assert len(others) == 1 and next(iter(others)).startswith("redis:"), others
    script = REPO_ROOT / "scripts" / "build-base-images.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    assert os.access(script, os.X_OK)


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next status of the server's `statuses` list."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self._answer()

    def _answer(self) -> None:
        statuses: list[int] = self.server.statuses  # type: ignore[attr-defined]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def answering(*statuses: int) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.statuses = list(statuses)  # type: ignore[attr-defined]
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_command(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A compose exec-form command run here, with this interpreter as `python`."""
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(("statuses", "code"), [((200,), 0), ((503,), 1), ((404,), 1)])
def test_the_health_check_reads_readyz(
    compose: dict[str, Any], statuses: tuple[int, ...], code: int
) -> None:
    for name in ("auth", "orders", "gateway"):
        check = compose["services"][name]["healthcheck"]
        assert check["interval"] == "1s" and check["retries"] >= 15
        assert check["test"][0] == "CMD"
        with answering(*statuses) as server:
            env = {"PORT": str(server.server_address[1])}
            done = run_command(check["test"][1:], env)
        assert done.returncode == code, (name, done.stderr)


def test_the_demo_user_is_seeded_before_the_gateway_starts(compose: dict[str, Any]) -> None:
    """The README's Try it commands work on compose: a one-shot creates the `make up` demo user
    (409, already there, is fine), and the gateway waits for it."""
    services = compose["services"]
    seed = services["seed"]
    assert seed["restart"] == "no"
    assert services["gateway"]["depends_on"]["seed"] == {
        "condition": "service_completed_successfully"
    }
    env = environment(seed)
    assert (env["DEMO_USERNAME"], env["DEMO_PASSWORD"]) == DEMO_USER
    assert env["USERS_URL"] == f"http://auth:{environment(services['auth'])['PORT']}/users"
    for statuses in ((201,), (409,), (503, 503, 201)):
        with answering(*statuses) as server:
            url = f"http://127.0.0.1:{server.server_address[1]}/users"
            done = run_command(seed["command"], {**env, "USERS_URL": url})
            bodies = server.bodies  # type: ignore[attr-defined]
        assert done.returncode == 0, (statuses, done.stderr)
        assert bodies[-1] == {"username": DEMO_USER[0], "password": DEMO_USER[1]}
        assert len(bodies) == len(statuses)
    with answering(422) as server:  # refused for good: fail at once, do not retry for minutes
        url = f"http://127.0.0.1:{server.server_address[1]}/users"
        done = run_command(seed["command"], {**env, "USERS_URL": url})
    assert done.returncode == 1 and "422" in done.stderr
