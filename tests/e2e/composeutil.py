"""docker compose projects for the tests, on a real Docker engine.

One image is built per test session (the `compose_image` fixture in tests/e2e/conftest.py) and
every project runs it under a name of its own, so a build here never retags an image another
stack is using. Each project has its own name, gateway port and volumes, and is taken down with
its volumes afterwards. Where no engine answers, the compose tests are skipped with the reason.

Long because it is the one place that runs compose for every compose test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import free_port
from services.common.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
CLUSTER_FILE = REPO_ROOT / "docker-compose.cluster.yml"
DEMO = {"username": "demo", "password": "demo-password"}
# The design variables compose passes through; a project starts with each at its default.
DESIGN_VARIABLES = ("JWT_REVOCATION", "SESSION_CACHE", "GATEWAY_TOKEN_EXCHANGE")


def run(
    argv: Sequence[str],
    timeout: float = 30,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to the end (or `timeout`), its output captured as text; never raises on
    a non-zero exit, so the caller asserts with the output in the message."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, check=False, timeout=timeout, env=env, cwd=cwd
    )


def compose_cli() -> tuple[list[str] | None, str]:
    """The compose command to use, or None and why there is none."""
    if shutil.which("docker") is None:
        return None, "no docker client installed (apt-get install docker.io)"
    try:
        info = run(["docker", "info"])
    except subprocess.TimeoutExpired:
        return None, "the Docker engine did not answer `docker info` within 30 s"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return None, f"no Docker engine answers ({detail}); .ci/run starts one"
    if run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"], ""
    if shutil.which("docker-compose"):
        return ["docker-compose"], ""
    return None, "neither `docker compose` (v2 plugin) nor docker-compose (v1) is installed"


def require_compose() -> list[str]:
    command, reason = compose_cli()
    if command is None:
        pytest.skip(reason)
    return command


def built_image(command: list[str]) -> Iterator[str]:
    """Build the project's one image under a tag of its own; remove the tag afterwards (the
    layers stay cached for the next run)."""
    tag = f"authscale:test-{uuid.uuid4().hex[:8]}"
    env = compose_env(f"authscale-build-{uuid.uuid4().hex[:8]}", tag, free_port())
    started = time.monotonic()
    done = run([*command, "build", "keys"], timeout=900, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, f"compose build failed:\n{done.stdout}\n{done.stderr}"
    print(f"\ncompose: image {tag} built in {time.monotonic() - started:.1f} s")
    try:
        yield tag
    finally:
        run(["docker", "image", "rm", tag])


def compose_env(
    project: str, image: str, port: int, files: Sequence[Path] = (COMPOSE_FILE,)
) -> dict[str, str]:
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "COMPOSE_FILE": os.pathsep.join(str(f) for f in files),
        "GATEWAY_PORT": str(port),
        # An image name of its own, so that a build here never retags the image another stack
        # (or another test run on the same engine) is using; the layers are shared and cached.
        "AUTHSCALE_IMAGE": image,
    }
    for name in (*DESIGN_VARIABLES, "COMPOSE_PROFILES", "COMPOSE_PATH_SEPARATOR"):
        env.pop(name, None)
    return env


@dataclass
class ComposeStack:
    command: list[str]
    env: dict[str, str]
    gateway_url: str
    port: int
    profiles: tuple[str, ...] = ()
    up_seconds: float = 0.0

    @property
    def project(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    def run(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        profiles = [a for p in self.profiles for a in ("--profile", p)]
        done = run([*self.command, *profiles, *args], timeout=timeout, env=self.env, cwd=REPO_ROOT)
        if check:
            assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def up(self, *args: str, **variables: str) -> float:
        """`up -d` (with --wait where the CLI has it), then until the gateway is ready; keyword
        arguments set variables for this and every later `up` (a changed one recreates the
        services that read it). Returns the seconds it took."""
        self.env.update(variables)
        wait = ["--wait"] if self.command == ["docker", "compose"] else []
        started = time.monotonic()
        self.run("up", "-d", *wait, *args)
        wait_ready(self.gateway_url)
        return time.monotonic() - started

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "-t", "5", timeout=300, check=False)

    def containers(self) -> dict[str, set[str]]:
        """Every container of the project (running or exited), by service."""
        ids = self.run("ps", "-a", "-q").stdout.split()
        by_service: dict[str, set[str]] = {}
        if not ids:
            return by_service
        inspected = run(["docker", "inspect", *ids])
        assert inspected.returncode == 0, inspected.stderr
        for container in json.loads(inspected.stdout):
            service = container["Config"]["Labels"]["com.docker.compose.service"]
            by_service.setdefault(service, set()).add(container["Id"])
        return by_service

    def replicas(self, service: str) -> dict[int, str]:
        """The service's running containers: replica number (`exec --index`) -> id, in order."""
        ids = self.run("ps", "-q", service).stdout.split()
        if not ids:
            return {}
        inspected = run(["docker", "inspect", *ids])
        assert inspected.returncode == 0, inspected.stderr
        by_number = {
            int(c["Config"]["Labels"]["com.docker.compose.container-number"]): c["Id"]
            for c in json.loads(inspected.stdout)
            if c["State"]["Running"]
        }
        return dict(sorted(by_number.items()))

    def running(self, service: str) -> list[str]:
        """The ids of the service's running containers, in replica order."""
        return list(self.replicas(service).values())

    def docker(self, *args: str, timeout: float = 60) -> str:
        done = run(["docker", *args], timeout=timeout)
        assert done.returncode == 0, f"docker {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def exec(
        self, service: str, *argv: str, index: int = 1, timeout: float = 60, check: bool = True
    ) -> str:
        """A command in one of the service's containers (`compose exec`); its stdout."""
        done = self.run(
            "exec", "-T", "--index", str(index), service, *argv, timeout=timeout, check=check
        )
        return done.stdout

    def http_inside(
        self,
        service: str,
        port: int,
        path: str,
        headers: Mapping[str, str] | None = None,
        index: int = 1,
    ) -> tuple[int, str]:
        """GET a service on its own address, from inside its container: (status, body)."""
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            "request = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))\n"
            "try:\n"
            "    response = urllib.request.urlopen(request, timeout=5)\n"
            "except urllib.error.HTTPError as error:\n"
            "    response = error\n"
            "print(response.status)\n"
            "print(response.read().decode())\n"
        )
        url = f"http://127.0.0.1:{port}{path}"
        out = self.exec(
            service, "python", "-c", script, url, json.dumps(dict(headers or {})), index=index
        )
        status, _, body = out.partition("\n")
        return int(status), body

    def metrics(self, service: str, port: int, index: int = 1) -> dict[str, float]:
        """A service's /metrics (from inside its container), as `name{labels}` -> value."""
        status, text = self.http_inside(service, port, "/metrics", index=index)
        assert status == 200, text
        return parse_metrics(text)

    def logs(self, *services: str) -> str:
        done = self.run("logs", "--no-color", "--tail", "200", *services, check=False)
        return done.stdout + done.stderr


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as `name{label="value",...}` (labels sorted by name) -> value."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def metric_sum(values: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include these."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for key, value in values.items():
        sample, _, rest = key.partition("{")
        if sample == name and all(w in rest.rstrip("}").split(",") for w in wanted):
            total += value
    return total


def gateway_metrics(stack: ComposeStack) -> dict[str, float]:
    with urllib.request.urlopen(f"{stack.gateway_url}/metrics", timeout=5) as response:
        return parse_metrics(response.read().decode())


def wait_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            error.close()  # not ready yet (503): the answer's socket is closed, not leaked
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the compose gateway never became ready at {url}"
        time.sleep(0.25)


def compose_project(
    image: str,
    *,
    files: Sequence[Path] = (COMPOSE_FILE,),
    profiles: Sequence[str] = (),
    label: str = "default",
    **variables: str,
) -> Iterator[ComposeStack]:
    """A project of its own (name, gateway port, volumes) running `image`: up, yield, down."""
    command = require_compose()
    project = f"authscale-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = compose_env(project, image, port, files)
    stack = ComposeStack(command, env, f"http://127.0.0.1:{port}", port, tuple(profiles))
    try:
        try:
            stack.up_seconds = stack.up(**variables)
        except (AssertionError, subprocess.TimeoutExpired):
            print(stack.logs())
            raise
        files_text = " ".join(f"-f {shlex.quote(f.name)}" for f in files)
        print(
            f"\ncompose ({label}: {files_text}{''.join(f' --profile {p}' for p in profiles)}): "
            f"up -d --wait to a ready gateway in {stack.up_seconds:.1f} s"
        )
        yield stack
    finally:
        stack.down()
