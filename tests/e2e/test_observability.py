"""The compose profile `observability`: Prometheus, the Grafana dashboard, the compose overlay.

(a) promtool checks observability/prometheus/prometheus.yml and its local rendering, and every
    dashboard expression as PromQL; the dashboard's structure (every panel has targets with an
    expr, on the provisioned data source, no two panels on the same cells).
(b) Debian's `prometheus` scrapes a local stack with that same file, its targets rewritten to the
    local ports (same jobs, same labels), and both stores through Debian's redis_exporter. The
    stack runs the hybrid with cached sessions (GATEWAY_TOKEN_EXCHANGE=on, SESSION_CACHE=push), so
    the design-specific families exist too, and sheds logins early (LOGIN_QUEUE_SECONDS=0.01).
    After traffic with every credential type, every expression of every panel must answer with
    data (a finite value) through /api/v1/query: no panel is silently empty.
(c) the overlay parses and names the same services and ports as docker-compose.yml, merges under
    `docker compose config`, and runs for real where its images are present (not on a machine
    without a registry, where the test says so).

Binaries: `apt-get install prometheus prometheus-redis-exporter` (scripts/install-prometheus.sh).

Long because (a), (b) and (c) share one Prometheus, one stack and one dashboard file.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar

from devstack.processes import free_port, spawn, stop_process
from devstack.stack import Ports, Stack
from services.common.settings import REPO_ROOT
from tests.e2e.composeutil import run

T = TypeVar("T")

OBSERVABILITY = REPO_ROOT / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "authscale.json"
DATASOURCES = OBSERVABILITY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "authscale.yml"
OTEL_COLLECTOR = OBSERVABILITY / "otel-collector.yaml"
OVERLAY = OBSERVABILITY / "docker-compose.observability.yml"
COMPOSE = REPO_ROOT / "docker-compose.yml"

PROFILE = "observability"
APP_SERVICES = ("gateway", "auth", "orders")
STORES = ("session-store", "data-store")
INSTALL_HINT = "apt-get install -y prometheus (or scripts/install-prometheus.sh)"
EXPORTER_HINT = "apt-get install -y prometheus-redis-exporter (or scripts/install-prometheus.sh)"
# Grafana's built-in variables, at values that fit the local scrape interval: the test queries
# run well within this window of the first scrape.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "5s",
    "$__range": "2m",
}
LOCAL_SCRAPE_INTERVAL = "1s"


# -- the files --------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows, including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str  # as the dashboard has it, Grafana variables included

    @property
    def concrete(self) -> str:
        return concrete(self.expr)

    @property
    def needs_exporter(self) -> bool:
        """Read from redis_exporter's families (redis_*), not from the services' own."""
        return re.search(r"\bredis_\w+", self.expr) is not None


def dashboard_queries() -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in dashboard_panels(load_dashboard())
        for target in panel.get("targets", [])
    ]


def concrete(expr: str) -> str:
    """The expression with Grafana's variables replaced as Grafana would, at fixed values."""
    # Longest names first: $__range would otherwise eat the start of $__range_s.
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def render_local(config: dict[str, Any], targets: dict[str, list[str]]) -> dict[str, Any]:
    """The compose configuration with each job's targets replaced by local addresses.

    Jobs, their labels and everything else stay as they are; a job missing from `targets` is
    left out (the caller says why). Service discovery (DNS in compose) becomes static targets.
    """
    rendered = copy.deepcopy(config)
    rendered["global"] = {
        **rendered.get("global", {}),
        "scrape_interval": LOCAL_SCRAPE_INTERVAL,
        "scrape_timeout": LOCAL_SCRAPE_INTERVAL,
        "evaluation_interval": LOCAL_SCRAPE_INTERVAL,
    }
    jobs = []
    for job in rendered["scrape_configs"]:
        if job["job_name"] not in targets:
            continue
        labels: dict[str, str] = {}
        for static in job.get("static_configs", []):
            labels.update(static.get("labels", {}))
        for key in [k for k in job if k == "static_configs" or k.endswith("_sd_configs")]:
            del job[key]
        static_config: dict[str, Any] = {"targets": targets[job["job_name"]]}
        if labels:
            static_config["labels"] = labels
        job["static_configs"] = [static_config]
        jobs.append(job)
    rendered["scrape_configs"] = jobs
    return rendered


def scrape_targets(config: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """Each job's (host, port) targets, static or from DNS service discovery."""
    found: dict[str, list[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        pairs = found.setdefault(job["job_name"], [])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                pairs.append((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            pairs.extend((name, int(dns["port"])) for name in dns["names"])
    return found


# -- (a) promtool and the dashboard's structure -------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    return run([binary, *args], timeout=60)


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    shipped = tmp_path / "prometheus.yml"
    shutil.copy(PROMETHEUS_CONFIG, shipped)
    local = tmp_path / "prometheus.local.yml"
    jobs = {
        job["job_name"]: [f"127.0.0.1:{9000 + i}"] for i, job in enumerate(config["scrape_configs"])
    }
    local.write_text(yaml.safe_dump(render_local(config, jobs)))
    for path in (shipped, local):
        done = promtool("check", "config", str(path))
        assert done.returncode == 0, f"{path.name}:\n{done.stdout}\n{done.stderr}"
        assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Each expr as a recording rule: `promtool check rules` parses it as PromQL, offline."""
    queries = dashboard_queries()
    rules = [
        {"record": f"authscale:dashboard:query_{n}", "expr": query.concrete}
        for n, query in enumerate(queries)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "authscale" and dashboard["title"]
    provisioned = {d["uid"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    panels = dashboard_panels(dashboard)
    assert len(panels) >= 10
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{title}: refIds repeat"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"{title} {target['refId']}: empty expr"
            for source in (panel["datasource"], target.get("datasource", panel["datasource"])):
                assert source["uid"] in provisioned, f"{title}: unknown data source {source}"
                assert provisioned[source["uid"]]["type"] == source["type"] == "prometheus"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title} overlaps {cells[(x, y)]}"
                cells[(x, y)] = title
    # The panels the issue asks for (item 3), by the families they read.
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for family in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "auth_check_duration_seconds_bucket",
        "store_calls_total",
        "process_cpu_seconds_total",
        'op=~"revoke_jti|record_revocation"',
        "session_cache_total",
        "token_exchanges_total",
        "logins_shed_total",
        "authscale_info",
    ):
        assert family in exprs, f"no panel reads {family}"


def test_grafana_provisioning_points_at_the_overlay() -> None:
    overlay = load_yaml(OVERLAY)["services"]
    prometheus = next(d for d in load_yaml(DATASOURCES)["datasources"] if d["type"] == "prometheus")
    url = urllib.parse.urlsplit(prometheus["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    listen = [c for c in overlay["prometheus"]["command"] if c.startswith("--web.listen-address")]
    assert listen in ([], ["--web.listen-address=:9090"]), listen
    assert 9090 in published_container_ports(overlay["prometheus"])
    grafana = overlay["grafana"]
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in grafana["volumes"])}
    assert mounts[provider["options"]["path"]] == "./observability/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./observability/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    # Step and rate windows follow the scrape interval.
    interval = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == interval


# -- (b) Prometheus against a local stack ---------------------------------------------------------


@dataclass
class Observed:
    stack: Stack
    prometheus_url: str
    exporters: bool  # redis_exporter scraped both stores
    jobs: dict[str, int]  # job -> number of targets


def start_process(argv: list[str], log: IO[bytes], cleanup: contextlib.ExitStack) -> None:
    """A child that dies with the test run (parent-death signal), stopped at cleanup."""
    process = spawn(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    cleanup.callback(stop_process, process)


def prom_get(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def instant(base: str, expr: str) -> list[dict[str, Any]]:
    answer = prom_get(base, "/api/v1/query", query=expr)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def finite(sample: dict[str, Any]) -> bool:
    return math.isfinite(float(sample["value"][1]))


def wait_until(what: str, check: Callable[[], T], seconds: float = 20.0, pause: float = 0.2) -> T:
    """The first truthy answer of check() (connection errors count as none) within the time."""
    deadline = time.monotonic() + seconds
    while True:
        value: T | None
        try:
            value = check()
        except (urllib.error.URLError, OSError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(pause)


def wait_for_scrape_after(base: str, moment: float, targets: int) -> None:
    """Until every target has been scraped by a scrape that started after `moment`."""

    def scraped() -> bool:
        samples = instant(base, "timestamp(up)")
        return len(samples) == targets and all(float(s["value"][1]) > moment for s in samples)

    wait_until("a scrape of every target after the traffic", scraped)


@contextlib.contextmanager
def local_stack(workdir: Path, **env: str) -> Iterator[Stack]:
    """The whole local stack on free ports, launched as tests/stackutil.py launches it.

    (Not through tests.stackutil itself: it imports tests/openapi_check.py, whose jsonschema
    has no type stubs here, which would fail `mypy --strict` on this file.)
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "stack.log").open("w") as log:
        stack = Stack(
            ports=Ports.free(),
            workdir=workdir,
            keys_dir=workdir / "keys",
            log=log,
            env={"HEALTH_INTERVAL_SECONDS": "0.2", "LOG_LEVEL": "WARNING", **env},
        )
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    cookies: dict[str, str]


@dataclass
class Client:
    """A client of the gateway; cookies are always explicit."""

    http: ClientSession
    base: str

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        async with self.http.request(
            method, self.base + path, headers=headers, json=body, allow_redirects=False
        ) as response:
            raw = await response.read()
            parsed = json.loads(raw) if raw and response.content_type.endswith("json") else None
            cookies = {name: morsel.value for name, morsel in response.cookies.items()}
            return Answer(response.status, parsed, cookies)

    async def unshed(self, path: str, body: dict[str, str], status: int = 200) -> Answer:
        """A sign-up or login, retried while it is shed (503): a burst may have just ended."""
        for _ in range(20):
            answer = await self.call("POST", path, body=body)
            if answer.status != 503:
                assert answer.status == status, answer
                return answer
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path}: shed 20 times in a row")


async def drive(base: str) -> dict[str, int]:
    """One round of traffic through the gateway with every credential type; statuses seen."""
    seen: dict[str, int] = {}
    async with ClientSession(timeout=ClientTimeout(total=20), cookie_jar=DummyCookieJar()) as http:
        client = Client(http, base)
        password = "correct horse"
        username = "obs" + uuid.uuid4().hex[:12]
        credentials = {"username": username, "password": password}
        await client.unshed("/auth/users", credentials, 201)
        order = {"item": "tea", "quantity": 1}

        # JWT bearer.
        token = (await client.unshed("/auth/token", credentials)).body["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            seen["jwt list"] = (await client.call("GET", "/orders", bearer)).status
        created = await client.call("POST", "/orders", bearer, order)
        seen["jwt create"] = created.status
        path = f"/orders/{created.body['id']}"
        seen["jwt get"] = (await client.call("GET", path, bearer)).status

        # Session cookie with X-CSRF-Token (the hybrid: checked at the gateway, exchanged).
        answer = await client.unshed("/auth/session", credentials)
        session = {"Cookie": f"sid={answer.cookies['sid']}"}
        session_csrf = {**session, "X-CSRF-Token": answer.body["csrf_token"]}
        for _ in range(3):
            seen["session list"] = (await client.call("GET", "/orders", session)).status
        seen["session create"] = (await client.call("POST", "/orders", session_csrf, order)).status

        # JWT in a cookie: the `at` cookie, with the CSRF token bound to it.
        answer = await client.unshed("/auth/token", {**credentials, "carrier": "cookie"})
        cookie = {"Cookie": f"at={answer.cookies['at']}"}
        cookie_csrf = {**cookie, "X-CSRF-Token": answer.body["csrf_token"]}
        for _ in range(3):
            seen["cookie list"] = (await client.call("GET", "/orders", cookie)).status
        seen["cookie create"] = (await client.call("POST", "/orders", cookie_csrf, order)).status

        # Refused credentials.
        seen["no credential"] = (await client.call("GET", "/orders")).status
        junk = {"Authorization": "Bearer x.y.z"}
        seen["bad token"] = (await client.call("GET", "/orders", junk)).status

        # Logouts: the bearer's revokes its jti (record_revocation, then revoke_jti).
        seen["jwt logout"] = (await client.call("POST", "/auth/logout", bearer)).status
        seen["revoked token"] = (await client.call("GET", "/orders", bearer)).status
        seen["cookie logout"] = (await client.call("POST", "/auth/logout", cookie_csrf)).status
        seen["session logout"] = (await client.call("POST", "/auth/logout", session_csrf)).status

        # A few bad passwords, then bursts that saturate password hashing until one is shed.
        wrong = {**credentials, "password": "not the password"}
        for _ in range(2):
            seen["bad password"] = (await client.unshed("/auth/token", wrong, 401)).status
        for _ in range(3):
            burst = await asyncio.gather(
                *(
                    client.call(
                        "POST",
                        "/auth/token",
                        body={"username": f"nobody{uuid.uuid4().hex[:8]}", "password": "wrong1"},
                    )
                    for _ in range(16)
                )
            )
            if any(answer.status == 503 for answer in burst):
                seen["burst shed"] = 503
                break
    return seen


EXPECTED_STATUSES = {
    "jwt list": 200,
    "jwt create": 201,
    "jwt get": 200,
    "session list": 200,
    "session create": 201,
    "cookie list": 200,
    "cookie create": 201,
    "no credential": 401,
    "bad token": 401,
    "jwt logout": 204,
    "revoked token": 401,
    "cookie logout": 204,
    "session logout": 204,
    "bad password": 401,
    "burst shed": 503,
}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Observed]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip(f"the prometheus binary is not installed: {INSTALL_HINT}")
    exporter = shutil.which("prometheus-redis-exporter")
    workdir = tmp_path_factory.mktemp("observability")
    with contextlib.ExitStack() as cleanup:
        stack = cleanup.enter_context(
            local_stack(
                workdir / "stack",
                GATEWAY_TOKEN_EXCHANGE="on",
                SESSION_CACHE="push",
                LOGIN_QUEUE_SECONDS="0.01",
            )
        )
        log = cleanup.enter_context((workdir / "observability.log").open("wb"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        targets = {
            "gateway": [f"127.0.0.1:{stack.ports.gateway}"],
            "auth": [f"127.0.0.1:{stack.ports.auth}"],
            "orders": [f"127.0.0.1:{p}" for p in stack.ports.orders],
            "prometheus": [f"127.0.0.1:{port}"],
        }
        if exporter is not None:
            for job, store_port in (
                ("session-store", stack.ports.session_store),
                ("data-store", stack.ports.data_store),
            ):
                address = f"127.0.0.1:{free_port()}"
                start_process(
                    [
                        exporter,
                        "-redis.addr",
                        f"redis://127.0.0.1:{store_port}",
                        "-web.listen-address",
                        address,
                    ],
                    log,
                    cleanup,
                )
                targets[job] = [address]
        # else: the stores' jobs are left out, and the redis_exporter panels' queries skip.
        config = load_yaml(PROMETHEUS_CONFIG)
        missing = {j["job_name"] for j in config["scrape_configs"]} - set(targets)
        assert missing <= ({"session-store", "data-store"} if exporter is None else set()), (
            f"jobs of prometheus.yml with no local target: {missing}"
        )
        rendered = workdir / "prometheus.yml"
        rendered.write_text(yaml.safe_dump(render_local(config, targets)))
        start_process(
            [
                prometheus,
                f"--config.file={rendered}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            log,
            cleanup,
        )
        count = sum(len(t) for t in targets.values())

        def all_up() -> bool:
            samples = instant(url, "up")
            return len(samples) == count and all(s["value"][1] == "1" for s in samples)

        wait_until("every target up in Prometheus", all_up, seconds=30)
        # Two rounds with a scrape between them: every series has a sample before and after
        # the second round, so rates and ratios are computed from a real increase.
        for _ in range(2):
            seen = asyncio.run(drive(stack.gateway_url))
            assert seen == EXPECTED_STATUSES
            wait_for_scrape_after(url, time.time(), count)
        yield Observed(stack, url, exporter is not None, {k: len(v) for k, v in targets.items()})


def test_prometheus_scrapes_every_service_and_store(observed: Observed) -> None:
    samples = instant(observed.prometheus_url, "up")
    by_job: dict[str, int] = {}
    for sample in samples:
        assert sample["value"][1] == "1", sample["metric"]
        by_job[sample["metric"]["job"]] = by_job.get(sample["metric"]["job"], 0) + 1
    assert by_job == observed.jobs
    assert by_job["orders"] == len(observed.stack.orders_urls)
    if observed.exporters:
        stores = instant(observed.prometheus_url, "redis_up")
        assert {s["metric"]["store"] for s in stores if s["value"][1] == "1"} == {
            "session_store",
            "data_store",
        }


def test_traffic_reached_every_credential_type(observed: Observed) -> None:
    samples = instant(
        observed.prometheus_url,
        'sum by (auth_mode) (http_requests_total{service="gateway", route=~"/orders.*"})',
    )
    assert {s["metric"]["auth_mode"] for s in samples} >= {"jwt", "session", "none"}
    # The hybrid: orders saw internal JWTs only, never a session.
    orders = instant(observed.prometheus_url, 'sum by (mode) (auth_checks_total{service="orders"})')
    assert {s["metric"]["mode"] for s in orders} == {"jwt"}


@pytest.mark.parametrize("query", dashboard_queries(), ids=lambda q: f"{q.panel} [{q.ref}]")
def test_every_dashboard_query_has_data(observed: Observed, query: Query) -> None:
    if query.needs_exporter and not observed.exporters:
        pytest.skip(f"redis_exporter panel; prometheus-redis-exporter missing: {EXPORTER_HINT}")
    expr = query.concrete

    def answered() -> list[dict[str, Any]]:
        return [s for s in instant(observed.prometheus_url, expr) if finite(s)]

    samples = wait_until(f"{query.panel} [{query.ref}] has data: {expr}", answered, seconds=10)
    assert samples


# -- (c) the compose overlay --------------------------------------------------------------------


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    for entry in service.get("expose", []):
        ports.add(int(str(entry).split("/")[0]))
    return ports


def service_port(service: dict[str, Any]) -> int:
    """The port an app service listens on inside compose (its PORT)."""
    return int(service["environment"]["PORT"])


def redis_port(service: dict[str, Any]) -> int:
    command = [str(c) for c in service.get("command", [])]
    return int(command[command.index("--port") + 1]) if "--port" in command else 6379


def test_overlay_parses_and_matches_compose() -> None:
    base = load_yaml(COMPOSE)["services"]
    overlay = load_yaml(OVERLAY)["services"]

    # The app services only gain the OTLP endpoint (merged into their environment); the rest
    # are new services of the profile, none replacing a service of docker-compose.yml.
    jaeger = overlay["jaeger"]
    for name in APP_SERVICES:
        assert name in base
        assert set(overlay[name]) == {"environment"}, f"{name}: the overlay only adds variables"
        endpoint = str(overlay[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
        endpoint = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", endpoint)
        url = urllib.parse.urlsplit(endpoint)
        assert url.hostname == "jaeger" and url.port == 4318, endpoint
    assert 4318 in published_container_ports(jaeger) and 16686 in published_container_ports(jaeger)
    assert "jaegertracing/all-in-one" in jaeger["image"]
    added = set(overlay) - set(APP_SERVICES)
    assert not added & set(base), f"the overlay redefines {added & set(base)}"
    for name in added:
        assert overlay[name].get("profiles") == [PROFILE], f"{name} is not in the profile"
        assert ":" in overlay[name]["image"] and not overlay[name]["image"].endswith(":latest")
        for volume in overlay[name].get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                # Relative to the project directory (docker-compose.yml's), not the overlay's.
                assert source.startswith("./observability/"), volume
                assert (REPO_ROOT / source).exists(), f"{name}: {source} does not exist"
    images = {name: overlay[name]["image"].split(":")[0] for name in added}
    assert images["prometheus"] == "prom/prometheus"
    assert images["grafana"] == "grafana/grafana"
    assert 3000 in published_container_ports(overlay["grafana"])
    env = overlay["grafana"]["environment"]
    assert str(env["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"

    # The exporters read the stores at the addresses docker-compose.yml gives them.
    exporters: dict[str, str] = {}
    for name in added:
        if images[name] != "oliver006/redis_exporter":
            continue
        addr = urllib.parse.urlsplit(overlay[name]["environment"]["REDIS_ADDR"])
        assert addr.hostname in STORES and addr.port == redis_port(base[addr.hostname]), addr
        exporters[name] = addr.hostname
    assert sorted(exporters.values()) == sorted(STORES)

    # Prometheus scrapes every service at its compose port and each store's exporter.
    prometheus = overlay["prometheus"]
    mounts = {t: s for s, t, *_ in (str(v).split(":") for v in prometheus["volumes"])}
    config_arg = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    assert mounts[config_arg.split("=", 1)[1]] == "./observability/prometheus/prometheus.yml"
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    scraped = scrape_targets(config)
    for name in APP_SERVICES:
        assert scraped[name] == [(name, service_port(base[name]))], scraped[name]
    orders = next(j for j in config["scrape_configs"] if j["job_name"] == "orders")
    assert orders["dns_sd_configs"][0]["type"] == "A", "one target per orders replica"
    for exporter, store in exporters.items():
        listen = str(
            overlay[exporter]["environment"].get("REDIS_EXPORTER_WEB_LISTEN_ADDRESS", ":9121")
        )
        assert scraped[store] == [(exporter, int(listen.rsplit(":", 1)[1]))]
    assert scraped["prometheus"] == [("localhost", 9090)]


def test_otel_collector_config_is_consistent() -> None:
    """The optional collector: OTLP/HTTP in on 4318, every pipeline part defined, out to Jaeger."""
    config = load_yaml(OTEL_COLLECTOR)
    endpoint = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint.rsplit(":", 1)[1] == "4318"
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for part in pipeline.get(kind, []):
                assert part in config[kind], f"{part} is not defined under {kind}"
    assert "traces" in config["service"]["pipelines"]
    overlay = load_yaml(OVERLAY)["services"]
    for exporter in config["exporters"].values():
        host, _, port = exporter["endpoint"].rpartition(":")
        assert host in overlay and int(port) in (4317, 4318), exporter


def ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


def compose_command() -> list[str] | None:
    if shutil.which("docker") is not None:
        version = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if version.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    return None


def test_overlay_merges_under_compose_config() -> None:
    """`compose config` (no engine needed) merges the overlay: base variables kept, OTLP added,
    the profile's services only with --profile, mounted files resolved in the repository."""
    command = compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install docker-compose to validate the overlay")
        pytest.skip("no docker compose CLI here (apt-get install docker-compose)")
    files = ["-f", str(COMPOSE), "-f", str(OVERLAY)]

    def config(*args: str) -> str:
        done = run([*command, *files, *args], timeout=60, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    plain = set(config("config", "--services").split())
    profiled = set(config("--profile", PROFILE, "config", "--services").split())
    added = set(load_yaml(OVERLAY)["services"]) - set(APP_SERVICES)
    assert not plain & added and added <= profiled
    merged = yaml.safe_load(config("--profile", PROFILE, "config"))["services"]
    base = load_yaml(COMPOSE)["services"]
    for name in APP_SERVICES:
        env = merged[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert set(base[name]["environment"]) <= set(env), f"{name} lost a variable"
    for name in added:
        for volume in merged[name].get("volumes", []):
            # The long form (compose v2) or "source:target[:mode]" (docker-compose v1).
            if isinstance(volume, dict):
                source = volume["source"] if volume.get("type") == "bind" else ""
            else:
                source = str(volume).split(":")[0]
            if source.startswith("/"):
                path = Path(source)
                assert path.is_relative_to(OBSERVABILITY) and path.exists(), volume


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_observability_profile_runs_under_compose(tmp_path: Path) -> None:
    """The profile for real: Prometheus scrapes every target, Grafana serves the dashboard to
    an anonymous viewer, Jaeger has the gateway's traces. Needs an engine and the images."""
    command = compose_command()
    if command is None or shutil.which("docker") is None:
        pytest.skip("no docker compose CLI here (apt-get install docker.io docker-compose)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode:
        pytest.skip("no Docker engine answers (docker info failed)")
    added = {
        name: service
        for name, service in load_yaml(OVERLAY)["services"].items()
        if name not in APP_SERVICES
    }
    images = sorted({service["image"] for service in added.values()})
    absent = [
        image
        for image in images
        if subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False, timeout=30
        ).returncode
    ]
    if absent:
        pytest.skip(
            f"images not present on this engine: {', '.join(absent)}; no registry is reachable "
            "here to pull them (where one is: `docker compose -f docker-compose.yml -f "
            "observability/docker-compose.observability.yml --profile observability pull`)"
        )
    project = f"authscale-obs-{uuid.uuid4().hex[:8]}"
    ports = {
        name: free_port()
        for name in ("GATEWAY_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT", "JAEGER_UI_PORT")
    }
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "COMPOSE_PROJECT_NAME": project,
        "AUTHSCALE_IMAGE": f"authscale:{project}",
        "OTLP_HTTP_PORT": str(free_port()),
    }
    files = ["-f", str(COMPOSE), "-f", str(OVERLAY), "--profile", PROFILE]

    def compose(*args: str, timeout: float = 900) -> None:
        done = run([*command, *files, *args], timeout=timeout, env=env, cwd=REPO_ROOT)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"

    try:
        compose("build")
        compose("up", "-d", *(["--wait"] if command == ["docker", "compose"] else []))
        gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        wait_until("the gateway", lambda: ready(f"{gateway}/readyz"), 120)
        request = urllib.request.Request(
            f"{gateway}/auth/token",
            json.dumps({"username": "demo", "password": "demo-password"}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]
        orders = urllib.request.Request(
            f"{gateway}/orders", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(orders, timeout=10) as response:
            assert response.status == 200
        prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"

        def targets_up() -> bool:
            active = prom_get(prometheus, "/api/v1/targets")["data"]["activeTargets"]
            jobs = {t["labels"]["job"] for t in active if t["health"] == "up"}
            return jobs >= {*APP_SERVICES, *STORES} and all(t["health"] == "up" for t in active)

        wait_until("every compose target up", targets_up, 120, pause=1)
        grafana = f"http://127.0.0.1:{ports['GRAFANA_PORT']}"
        found = wait_until(
            "the provisioned dashboard",
            lambda: prom_get(grafana, "/api/search", query="authscale"),
            120,
            pause=1,
        )
        assert any(d.get("uid") == "authscale" for d in found)
        jaeger = f"http://127.0.0.1:{ports['JAEGER_UI_PORT']}"

        def traced() -> bool:
            return "authscale-gateway" in (prom_get(jaeger, "/api/services")["data"] or [])

        wait_until("the gateway's traces in Jaeger", traced, 60, pause=1)
    finally:
        subprocess.run(
            [*command, *files, "down", "-v", "--remove-orphans"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
            timeout=300,
        )
        subprocess.run(
            ["docker", "image", "rm", env["AUTHSCALE_IMAGE"]],
            capture_output=True,
            check=False,
            timeout=120,
        )
