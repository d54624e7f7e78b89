"""docker compose, checked without a Docker engine: the file validates, every variable it sets is
one the service reads, every address is set for compose, and it matches the local launcher.

Long because it checks the whole compose file against the services and the launcher at once.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.launcher import DEMO_USER
from devstack.stack import Ports, Stack
from services.common.settings import REPO_ROOT
from tests.httputil import serving
from tests.settingsutil import SETTINGS, read_by, resolve, strings

COMPOSE = REPO_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {k: resolve(v) for k, v in env.items()}


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
    # Installed from the committed lock, wheels only for the dependencies (nothing built).
    assert re.search(r"uv sync --locked --no-install-project --no-build\b", dockerfile)
    makefile = (REPO_ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M)
    assert uv_version is not None
    assert f"ARG UV_VERSION={uv_version[1]}\n" in dockerfile  # one uv, in make and the image
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


def answering(*statuses: int) -> contextlib.AbstractContextManager[http.server.ThreadingHTTPServer]:
    return serving(_Answers, statuses=list(statuses), bodies=[])


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


# The designs between the two extremes (issue 11): chosen by variables at `up`, like
# JWT_REVOCATION, with the services' own defaults.

DESIGNS = {
    # variable: (services that read it, its default, the other value)
    "JWT_REVOCATION": (("auth", "orders", "gateway"), "push", "off"),
    "SESSION_CACHE": (("auth", "orders", "gateway"), "off", "push"),
    "GATEWAY_TOKEN_EXCHANGE": (("gateway",), "off", "on"),
}


@pytest.mark.parametrize("variable", sorted(DESIGNS))
def test_designs_are_chosen_by_variables(compose: dict[str, Any], variable: str) -> None:
    readers, default, other = DESIGNS[variable]
    for name in readers:
        env = compose["services"][name]["environment"]
        assert env[variable] == f"${{{variable}:-{default}}}", (name, env.get(variable))
    # The compose default is the service's own default, and the other value switches the design.
    for name in readers:
        env = environment(compose["services"][name])
        unset = {k: v for k, v in env.items() if k != variable}
        assert design_of(read_by(name, unset)[0], variable) == default
        assert design_of(read_by(name, {**env, variable: other})[0], variable) == other


def design_of(settings: Any, variable: str) -> str:
    if variable == "GATEWAY_TOKEN_EXCHANGE":
        return "on" if settings.token_exchange else "off"
    field = {"JWT_REVOCATION": "revocation", "SESSION_CACHE": "session_cache"}[variable]
    return str(getattr(settings.verifier, field))


# The `cluster` profile: docker-compose.cluster.yml, an overlay that runs the session store as a
# Redis Cluster and points SESSION_STORE_URL at it.

CLUSTER = REPO_ROOT / "docker-compose.cluster.yml"
NODES = [f"session-node-{n}" for n in range(1, 7)]


class _ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (`!reset`, `!override`), kept as ("!reset", value)."""


def _tagged(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> tuple[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return tag, loader.construct_scalar(node)
    return tag, loader.construct_object(node, deep=True)


_ComposeLoader.add_multi_constructor("!", _tagged)


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(CLUSTER.read_text(), Loader=_ComposeLoader)  # noqa: S506
    return data


def compose_v2() -> list[str]:
    """`docker compose` (v2; the overlay's `!reset` needs v2.24+), or skip where there is none."""
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose", "-f", str(COMPOSE), "-f", str(CLUSTER)]
    if os.environ.get("CI"):
        pytest.fail("CI must install the compose v2 plugin to validate docker-compose.cluster.yml")
    pytest.skip("no `docker compose` (v2) here; CI validates the cluster overlay")


def shell(command: list[str]) -> str:
    """The script of a `sh -c` exec-form command, as the container's shell gets it."""
    assert command[:2] == ["sh", "-c"], command
    return command[2].replace("$$", "$")


def test_cluster_overlay_validates_and_replaces_the_session_store() -> None:
    argv = compose_v2()
    done = subprocess.run(
        [*argv, "--profile", "cluster", "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in DESIGNS and k != "COOKIE_SECURE"},
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)["services"]
    assert "session-store" not in merged, "the single session store runs beside the cluster"
    assert set(NODES) | {"cluster-init", "data-store", "auth", "orders", "gateway"} <= set(merged)
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    url = ",".join(f"redis://{node}:6379" for node in NODES)
    for name in ("auth", "orders", "gateway"):
        # SESSION_STORE_URL names the nodes; everything else is as in docker-compose.yml.
        assert merged[name]["environment"] == {**environment(base[name]), "SESSION_STORE_URL": url}
    for name in ("auth", "orders"):
        depends = merged[name]["depends_on"]
        assert "session-store" not in depends
        assert depends["cluster-init"]["condition"] == "service_completed_successfully"
    # Without the profile the overlay is refused, never half-applied.
    refused = subprocess.run([*argv, "config", "-q"], capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "cluster-init" in refused.stderr


def test_cluster_nodes_and_their_init(compose: dict[str, Any], cluster: dict[str, Any]) -> None:
    services = cluster["services"]
    redis_image = compose["services"]["session-store"]["image"]
    assert sorted(n for n in services if n.startswith("session-node-")) == NODES
    for node in NODES:
        service = services[node]
        # The image scripts/build-base-images.sh provides (it reads docker-compose.yml's).
        assert service["image"] == redis_image and service["profiles"] == ["cluster"]
        assert service["restart"] == "unless-stopped" and service["user"] == "redis"
        script = shell(service["command"])
        assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
        server = " ".join(script.split("exec ", 1)[1].replace("\\\n", " ").split())
        for flag in (
            "--protected-mode no",
            "--cluster-enabled yes",
            '--save ""',
            "--appendonly no",
            "--enable-debug-command local",
        ):
            assert flag in server, (node, flag)
        assert "redis-cli" in " ".join(service["healthcheck"]["test"])
    init = services["cluster-init"]
    assert init["image"] == redis_image and init["restart"] == "no"
    assert init["profiles"] == ["cluster"]
    assert init["depends_on"] == {node: {"condition": "service_healthy"} for node in NODES}
    script = shell(init["command"])
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
    assert "redis-cli --cluster create" in script
    assert "--cluster-replicas 1 --cluster-yes" in script
    assert all(node in script for node in NODES)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_services_take_the_node_list_as_a_cluster(
    compose: dict[str, Any], cluster: dict[str, Any], name: str
) -> None:
    from services.common.store import cluster_nodes

    overlay = cluster["services"][name]["environment"]
    env = {**environment(compose["services"][name]), **overlay}
    settings, read = read_by(name, env)
    assert "SESSION_STORE_URL" in read
    url = settings.verifier.session_store_url
    assert cluster_nodes(url) == [f"redis://{node}:6379" for node in NODES]


def test_the_readme_gives_the_compose_commands_for_the_designs_and_the_cluster() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    for text in (
        "SESSION_CACHE=push",
        "GATEWAY_TOKEN_EXCHANGE=on",
        "JWT_REVOCATION=off",
        "-f docker-compose.yml -f docker-compose.cluster.yml --profile cluster",
    ):
        assert text in section, text
