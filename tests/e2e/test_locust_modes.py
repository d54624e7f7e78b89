"""The locustfile runs unchanged in Locust's web UI and in distributed mode (master + worker),
its user classes are the modes' table, and every class runs against a stack with its mode's
settings (and refuses to run against one with other settings)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack.processes import free_port, stop_process
from devstack.stack import Ports, Stack
from loadtests.measure.client import PASSWORD, Gateway
from loadtests.measure.servers import answered
from loadtests.modes import (
    HYBRID,
    JWT_COOKIE,
    JWT_OFF,
    JWT_PUSH,
    MODES,
    SESSION,
    Mode,
    settings_groups,
)
from services.common.settings import REPO_ROOT
from tests.stackutil import launch

LOCUSTFILE = str(REPO_ROOT / "loadtests" / "locustfile.py")
ENV = {
    **os.environ,
    "AUTHSCALE_USER_PREFIX": "locust-mode",
    "AUTHSCALE_USER_COUNT": "2",
    "AUTHSCALE_USER_RPS": "5",
}


def locust(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args],
            cwd=REPO_ROOT,
            env={**ENV, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def headless_run(stack: Stack, seconds: int, csv_prefix: Path) -> list[str]:
    """Locust's options for a headless run of 2 users against the stack, stats to CSV files."""
    users = ["-u", "2", "-r", "2", "-t", f"{seconds}s"]
    return ["--headless", *users, "--host", stack.gateway_url, "--csv", str(csv_prefix)]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop_process(process)


def test_user_classes_are_the_modes_table(tmp_path: Path) -> None:
    lister = locust("--list", log=tmp_path / "list.log")
    assert lister.wait(timeout=60) == 0, (tmp_path / "list.log").read_text()[-2000:]
    listed = (tmp_path / "list.log").read_text().split("Available Users:")[1].split()
    assert sorted(listed) == sorted(mode.user_class for mode in MODES)


def test_web_ui_swarm(
    stack: Stack, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    processes.append(
        locust(
            "--class-picker",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(port),
            "--host",
            stack.gateway_url,
            log=tmp_path / "ui.log",
        )
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "ui.log").read_text()[-2000:]
        time.sleep(0.2)
    form = urllib.parse.urlencode(
        [
            ("user_count", "2"),
            ("spawn_rate", "2"),
            ("host", stack.gateway_url),
            ("user_classes", SESSION.user_class),
            ("user_classes", JWT_PUSH.user_class),
        ]
    ).encode()
    with urllib.request.urlopen(
        urllib.request.Request(base + "/swarm", data=form), timeout=5
    ) as response:
        assert json.loads(response.read())["success"] is True
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(base + "/stats/requests", timeout=5) as response:
            stats = json.loads(response.read())
        total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
        if total["num_requests"] >= 20:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.3)
    names = {s["name"] for s in stats["stats"]}
    assert {"/orders?limit=[n]", "/orders"} <= names
    assert total["num_failures"] == 0, stats.get("errors")
    urllib.request.urlopen(urllib.request.Request(base + "/stop", data=b""), timeout=5).close()


def test_distributed_master_and_worker(
    stack: Stack, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    master = locust(
        "--master",
        "--expect-workers",
        "1",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        *headless_run(stack, 4, tmp_path / "dist"),
        SESSION.user_class,
        JWT_PUSH.user_class,
        log=tmp_path / "master.log",
    )
    processes.append(master)
    processes.append(
        locust(
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
            log=tmp_path / "worker.log",
        )
    )
    master.wait(timeout=90)
    with (tmp_path / "dist_stats.csv").open() as handle:
        total = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) >= 10, (tmp_path / "master.log").read_text()[-2000:]
    assert int(total["Failure Count"]) == 0, (tmp_path / "master.log").read_text()[-2000:]


@pytest.fixture(scope="module")
def group_stacks(
    tmp_path_factory: pytest.TempPathFactory, redis_available: None
) -> Iterator[dict[str, Stack]]:
    """A stack per settings group (by its first mode's name), started at once with the group's
    settings; access tokens live 32 s, so the JWT classes refresh (30 s before expiry) every
    2 s of a short run."""
    groups = settings_groups(MODES)
    # Every stack's ports chosen here, before any starts: none can take another's.
    ports = {group[0].name: Ports.free() for group in groups}
    root = tmp_path_factory.mktemp("designs")
    for group in groups:
        (root / group[0].name).mkdir()
    with ThreadPoolExecutor(len(groups)) as pool:
        starting = {
            group[0].name: pool.submit(
                launch,
                root / group[0].name,
                ports[group[0].name],
                ACCESS_TOKEN_SECONDS="32",
                **group[0].settings,
            )
            for group in groups
        }
        stacks: dict[str, Stack] = {}
        try:
            for name, future in starting.items():
                stacks[name] = future.result(timeout=120)
            yield stacks
        finally:
            for future in starting.values():
                if future.done() and future.exception() is None:
                    stack = future.result()
                    stack.stop()
                    stack.log.close()


def start_headless(
    stack: Stack, user_class: str, seconds: int, prefix: Path
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start one class headless for `seconds`, as the accounts locust-<prefix's name>-0 and -1
    (PASSWORD); finish_headless waits for it."""
    process = locust(
        *headless_run(stack, seconds, prefix),
        user_class,
        log=prefix.with_suffix(".log"),
        env={"AUTHSCALE_USER_PREFIX": f"locust-{prefix.name}", "AUTHSCALE_PASSWORD": PASSWORD},
    )
    return process, seconds, prefix


def finish_headless(
    process: subprocess.Popen[bytes], seconds: int, prefix: Path
) -> dict[str, dict[str, str]]:
    """Wait for a run start_headless began; Locust's stats rows by name."""
    try:
        process.wait(timeout=seconds + 60)
    finally:
        if process.poll() is None:
            process.kill()
    with prefix.parent.joinpath(f"{prefix.name}_stats.csv").open() as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def served(gateway: str, count: int, timeout: float = 30.0) -> None:
    """Until the gateway (restarted: its counters start at 0) has answered `count` requests."""
    deadline = time.monotonic() + timeout
    while answered(gateway) < count:
        assert time.monotonic() < deadline, f"the gateway answered < {count} in {timeout:.0f} s"
        time.sleep(0.1)


def failures(prefix: Path) -> list[tuple[str, str]]:
    """Locust's failures CSV: (request name, error) of each kind of failure."""
    with prefix.parent.joinpath(f"{prefix.name}_failures.csv").open() as handle:
        return [
            (row["Name"], row["Error"].removeprefix("CatchResponseError('").removesuffix("')"))
            for row in csv.DictReader(handle)
        ]


@pytest.mark.timeout(600)  # four stacks, eight Locust runs at once
def test_every_class_runs_against_a_stack_with_its_settings(
    group_stacks: dict[str, Stack], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # Where a group's settings are not another class's, that class runs against it too and
    # must stop at its settings check.
    strangers = {HYBRID.name: SESSION, JWT_OFF.name: JWT_PUSH}
    groups = settings_groups(MODES)
    # Each run logs in with accounts of its own, made beforehand on the stack it runs against:
    # runs side by side never sign up, nor count failed logins, on the same account at once.
    for group in groups:
        stack = group_stacks[group[0].name]
        gateway = Gateway(stack.gateway_url)
        names = [m.name for m in group]
        if group[0].name in strangers:
            names.append(f"{strangers[group[0].name].name}-on-{group[0].name}")
        for name in names:
            for index in range(2):
                gateway.ensure_user(f"locust-{name}-{index}")

    def start(
        stack: Stack, mode: Mode, seconds: int, label: str
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        run = start_headless(stack, mode.user_class, seconds, tmp_path / label)
        processes.append(run[0])
        return run

    # Every group's classes at once, each in a Locust of its own, against its group's stack.
    runs = {
        mode.name: start(group_stacks[group[0].name], mode, 5, mode.name)
        for group in groups
        for mode in group
    }
    for group_name, stranger in strangers.items():
        # It starts once the group's class is served: the gateway has then shown, in its
        # /metrics, the settings the stranger's first check (before it logs in) reads.
        served(group_stacks[group_name].gateway_url, 20)
        label = f"{stranger.name}-on-{group_name}"
        runs[label] = start(group_stacks[group_name], stranger, 4, label)
    table = {name: finish_headless(*run) for name, run in runs.items()}
    for mode in MODES:
        rows = table[mode.name]
        log = (tmp_path / f"{mode.name}.log").read_text()[-3000:]
        # Only a shed login (503 when password hashing is saturated: the contract's answer
        # on an overloaded machine, retried by the class) may fail.
        failed = failures(tmp_path / mode.name)
        assert all(error == "login answered 503" for _, error in failed), (mode.name, failed)
        total = rows["Aggregated"]
        assert int(total["Request Count"]) >= 20, (mode.name, log)
        assert int(rows["/orders"]["Request Count"]) >= 2, (mode.name, rows)
        if mode.credential.kind == "jwt":
            # The access token lives 32 s: the class refreshed it, by its carrier.
            name = "/auth/refresh (cookie)" if mode is JWT_COOKIE else "/auth/refresh"
            assert int(rows[name]["Request Count"]) >= 1, (mode.name, rows)
    # A class against a stack with other settings stops at its settings check.
    rows = table[f"{SESSION.name}-on-{HYBRID.name}"]
    check = rows["/metrics (settings check)"]
    assert int(check["Failure Count"]) >= 1, rows
    assert int(rows["Aggregated"]["Request Count"]) < 20, rows
    rows = table[f"{JWT_PUSH.name}-on-{JWT_OFF.name}"]
    assert int(rows["/metrics (settings check)"]["Failure Count"]) >= 1, rows
    assert "/orders" not in rows, rows
