"""Locust phases: one headless Locust run per mode, measured between two server snapshots."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtests.bench import log
from loadtests.bench.client import PASSWORD, USER_PREFIX
from loadtests.bench.results import LocustStats, Phase
from loadtests.bench.scrape import NO_IDLE, Idle, Target, delta
from loadtests.modes import JWT_OFF, JWT_PUSH, SESSION, Mode
from services.common.settings import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class Load:
    users: int
    user_rps: float
    duration: float
    warmup: float


def phase_plan(rounds: int) -> list[Mode]:
    """Interleave the modes, reversing the order every other round, so drift hits all alike.

    The order needs one restart of the services per round: jwt-off alone, then the two modes
    that run with JWT_REVOCATION=push, and the reversed round starts where the last one ended.
    """
    plan: list[Mode] = []
    for index in range(rounds):
        order = [JWT_OFF, SESSION, JWT_PUSH]
        plan += order if index % 2 == 0 else order[::-1]
    return plan


def read_locust_stats(prefix: Path) -> LocustStats:
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
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
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(load.users),
        "-r",
        str(load.users),
        "-t",
        f"{run_time:.0f}s",
        "--host",
        gateway,
        "--csv",
        str(prefix),
        "--only-summary",
        "--reset-stats",
        "--loglevel",
        "ERROR",
        "--stop-timeout",
        "2",
        mode.user_class,
    ]
    with (prefix.parent / f"{prefix.name}.locust.log").open("w") as stderr:  # the child keeps it
        return subprocess.Popen(
            argv, env=env, cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=stderr
        )


def run_phase(
    target: Target, mode: Mode, load: Load, workdir: Path, label: str, idle: Idle = NO_IDLE
) -> Phase:
    """One Locust run; the measurement window starts after spawn and warm-up."""
    prefix = workdir / label
    run_time = load.warmup + load.duration + 1
    process = start_locust(target.gateway, mode, load, prefix, run_time)
    locust = psutil.Process(process.pid)
    time.sleep(load.warmup)  # spawn, logins and warm-up stay outside the window
    before = target.snapshot()
    cpu_before = sum(locust.cpu_times()[:2])
    time.sleep(load.duration)
    cpu_after = sum(locust.cpu_times()[:2])
    after = target.snapshot()
    try:
        process.wait(timeout=run_time + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
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
