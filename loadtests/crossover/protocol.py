"""What the runner and the Locust processes tell each other, through files in one directory.

The runner writes `control.json` (atomically: written aside, then renamed): which designs'
users are active, what they do and at what total rate. Every Locust process that runs users
polls it, counts what its users see per control `seq` from `measure_from` on, and writes
`worker-<pid>.json` (atomically too) each time it takes up a new control and every half second.
A control's counts are final once every process has taken up a later one (`seen_seq`).
Standard library only: the Locust side imports this in every worker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, TypedDict, cast

Task = Literal["idle", "mix", "get", "post"]
CONTROL = "control.json"
WORKER_PREFIX = "worker-"


class Control(TypedDict):
    seq: int
    designs: list[str]  # mode names whose users run; the others wait
    task: Task  # mix: the locustfile's own task mix; get/post: one request type
    rate: float  # requests/s offered in total, shared evenly by the active users
    url: str  # base URL for `get` ("" = the host Locust was started with)
    measure_from: float  # epoch seconds: completions before this are not counted
    relogin_at: float  # epoch seconds (0: never): every active user logs in again once


class Counts(TypedDict):
    n: int  # completed requests
    fail: int
    hist: dict[str, int]  # loadtests.crossover.hist
    errors: dict[str, int]  # failure message -> count (the first 40 distinct)


class WorkerReport(TypedDict):
    pid: int
    seen_seq: int
    ready: int  # users whose on_start finished
    stopped: int  # users that gave up in on_start (StopUser)
    segments: dict[str, Counts]  # by control seq


def idle(seq: int) -> Control:
    return {
        "seq": seq,
        "designs": [],
        "task": "idle",
        "rate": 0.0,
        "url": "",
        "measure_from": 0.0,
        "relogin_at": 0.0,
    }


def write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_control(directory: Path) -> Control | None:
    try:
        return cast(Control, json.loads((directory / CONTROL).read_text()))
    except (OSError, ValueError):
        return None


def read_workers(directory: Path) -> list[WorkerReport]:
    reports = []
    for path in sorted(directory.glob(f"{WORKER_PREFIX}*.json")):
        try:
            reports.append(cast(WorkerReport, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # replaced while read: the next poll sees it
    return reports
