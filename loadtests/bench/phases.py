"""Locust phases: one headless Locust run per mode, measured between two server snapshots."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtests.bench import log
from loadtests.bench.client import PASSWORD, USER_PREFIX, get_text
from loadtests.bench.results import LocustStats, Phase
from loadtests.bench.scrape import NO_IDLE, Idle, Target, delta, scrape_service
from loadtests.modes import MODES, Mode, settings_groups
from services.common.settings import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class Load:
    users: int
    user_rps: float
    duration: float
    warmup: float


def phase_plan(rounds: int, modes: Sequence[Mode] = MODES) -> list[Mode]:
    """Interleave the modes, reversing the order every other round, so drift hits all alike.

    Modes that share settings run back to back, on one start of the services, so a round
    restarts them once per further group of settings and the reversed round starts where the
    last one ended: with the table's four groups (session, jwt-push, jwt-cookie | session-cached
    | hybrid | jwt-off), three restarts a round.
    """
    order = [mode for group in settings_groups(modes) for mode in group]
    plan: list[Mode] = []
    for index in range(rounds):
        plan += order if index % 2 == 0 else order[::-1]
    return plan


def read_locust_errors(prefix: Path) -> dict[str, int]:
    """Locust's failures CSV: occurrences by "METHOD name: error"."""
    path = prefix.parent / f"{prefix.name}_failures.csv"
    if not path.exists():
        return {}
    with path.open() as handle:
        return {
            f"{r['Method']} {r['Name']}: {r['Error']}": int(r["Occurrences"])
            for r in csv.DictReader(handle)
        }


def read_locust_stats(prefix: Path) -> LocustStats:
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "errors": read_locust_errors(prefix),
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "avg_ms": round(float(total["Average Response Time"]), 2),
        "by_name": {
            r["Name"]: {
                "requests": int(r["Request Count"]),
                "p50_ms": float(r["50%"]),
                "p99_ms": float(r["99%"]),
            }
            for r in rows
            if r["Name"] != "Aggregated"
        },
    }


def locust_argv(
    locustfile: Path,
    users: int,
    spawn_rate: int,
    host: str,
    loglevel: str,
    run_time: float,
    stop_timeout: float,
) -> list[str]:
    """Headless Locust's command line (the caller adds its user classes and own flags)."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(max(spawn_rate, 1)),
        "--host",
        host,
        "--loglevel",
        loglevel,
        "--only-summary",
        "--stop-timeout",
        f"{stop_timeout:g}",
        "-t",
        f"{run_time:.0f}s",
    ]


def start_locust(
    gateway: str, mode: Mode, load: Load, prefix: Path, run_time: float
) -> subprocess.Popen[bytes]:
    """Headless Locust with the mode's user class, its CSVs at `prefix`, its log beside them."""
    env = {
        **os.environ,
        "AUTHSCALE_USER_PREFIX": USER_PREFIX,
        "AUTHSCALE_USER_COUNT": str(load.users),
        "AUTHSCALE_PASSWORD": PASSWORD,
        "AUTHSCALE_USER_RPS": str(load.user_rps),
    }
    argv = locust_argv(LOCUSTFILE, load.users, load.users, gateway, "ERROR", run_time, 2)
    argv += ["--csv", str(prefix), "--reset-stats", mode.user_class]
    with (prefix.parent / f"{prefix.name}.locust.log").open("w") as stderr:  # the child keeps it
        return subprocess.Popen(
            argv, env=env, cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=stderr
        )


def answered(gateway: str) -> float:
    """Requests the gateway has answered so far (its probes left out)."""
    return scrape_service(get_text(gateway + "/metrics")).requests


def wait_for_traffic(
    gateway: str, needed: int, process: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    """Until the gateway has answered `needed` more requests: Locust has started (seconds on a
    busy machine), its users have logged in and are running their tasks."""
    start = answered(gateway)
    deadline = time.monotonic() + timeout
    while answered(gateway) - start < needed:
        if process.poll() is not None or time.monotonic() > deadline:
            log(f"Locust's users did not start within {timeout:.0f} s; measuring anyway")
            return
        time.sleep(0.1)


def stop_locust(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: Locust stops its users and closes its CSV files (written every second)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_phase(
    target: Target, mode: Mode, load: Load, workdir: Path, label: str, idle: Idle = NO_IDLE
) -> Phase:
    """One Locust run; the measurement window starts once its users run, after the warm-up."""
    prefix = workdir / label
    # Locust's own time limit is only a safety net: the phase stops it once the window is over.
    process = start_locust(target.gateway, mode, load, prefix, load.warmup + load.duration + 60)
    try:
        locust = psutil.Process(process.pid)
        # Start-up, spawn and logins stay outside the window, then the warm-up.
        wait_for_traffic(target.services.get("gateway", target.gateway), 3 * load.users, process)
        time.sleep(load.warmup)
        before = target.snapshot()
        cpu_before = sum(locust.cpu_times()[:2])
        time.sleep(load.duration)
        cpu_after = sum(locust.cpu_times()[:2])
        after = target.snapshot()
        time.sleep(1.1)  # Locust writes its CSV every second: the window's last second in it
    finally:
        stop_locust(process)
    costs = delta(before, after, cpu_after - cpu_before, idle)
    result: Phase = {
        "mode": mode.name,
        "label": label,
        **read_locust_stats(prefix),
        **costs,
        "locust_saturated": costs["locust_cpu_fraction"] > 0.9,
    }
    flag = "  ** Locust was the limit **" if result["locust_saturated"] else ""
    log(
        f"{label}: {result['rps']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['failures']} failures, Locust CPU {result['locust_cpu_fraction']:.0%}{flag}"
    )
    return result
