"""The Locust side of the crossover: every design's user class, paced by the runner.

`python -m loadtests.crossover` starts Locust with this file; it is not meant to be run by hand.
Every concrete user class of loadtests/locustfile.py (so every design of loadtests/modes.py)
gets a `Crossover<Name>` subclass here, with `fixed_count` users (CROSSOVER_USERS). It keeps
its parent's login, credential handling, settings check and task mix, and adds two things:

- pace and task come from the runner's control file (loadtests/crossover/protocol.py): the
  users of the designs it names run at an even share of its total rate (constant throughput:
  each user starts a task every 1/rate s, never catching up more than one), doing the parent's
  own weighted task mix, or one request type (`get`: list orders through the gateway the
  control names; `post`: create an order); the others wait without sending anything.
- every completed request from `measure_from` on is counted per control into a histogram
  (loadtests/crossover/hist.py), which each Locust process writes to CROSSOVER_DIR.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import events, task
from locust.exception import StopUser

import loadtests.locustfile as designs
from loadtests.crossover import hist, protocol

DIRECTORY = Path(os.environ.get("CROSSOVER_DIR", "."))
USERS_PER_DESIGN = int(os.environ.get("CROSSOVER_USERS", "10"))
POLL_S = 0.02
FLUSH_S = 0.5
MAX_ERRORS = 40
RELOGIN_SPREAD_S = 1.0  # users log in again spread over this long, not all at once


class _Process:
    """What one Locust process (a worker, or the only one) knows and has counted."""

    def __init__(self) -> None:
        self.pid = 0
        self.reset()

    def reset(self) -> None:
        self.control = protocol.idle(0)
        self.changed = Event()
        self.ready = 0
        self.stopped = 0
        self.segments: dict[str, protocol.Counts] = {}

    def ensure_started(self) -> None:
        """Start polling the control file, once per process (Locust forks its workers)."""
        if self.pid == os.getpid():
            return
        self.reset()  # a forked copy starts afresh
        self.pid = os.getpid()
        gevent.spawn(self._poll)

    def _poll(self) -> None:
        flushed = 0.0
        while True:
            control = protocol.read_control(DIRECTORY)
            if control is not None and control["seq"] != self.control["seq"]:
                self.control = control
                changed, self.changed = self.changed, Event()
                changed.set()
                self.flush()
                flushed = time.monotonic()
            elif time.monotonic() - flushed > FLUSH_S:
                self.flush()
                flushed = time.monotonic()
            gevent.sleep(POLL_S)

    def flush(self) -> None:
        report: protocol.WorkerReport = {
            "pid": self.pid,
            "seen_seq": self.control["seq"],
            "ready": self.ready,
            "stopped": self.stopped,
            "segments": self.segments,
        }
        protocol.write_json(DIRECTORY / f"{protocol.WORKER_PREFIX}{self.pid}.json", report)

    def record(self, response_time: float, exception: BaseException | None) -> None:
        control = self.control
        if control["task"] == "idle" or time.time() < control["measure_from"]:
            return
        counts = self.segments.setdefault(
            str(control["seq"]), {"n": 0, "fail": 0, "hist": {}, "errors": {}}
        )
        counts["n"] += 1
        hist.add(counts["hist"], response_time)
        if exception is not None:
            counts["fail"] += 1
            message = f"{type(exception).__name__}: {exception}"[:160]
            if message in counts["errors"] or len(counts["errors"]) < MAX_ERRORS:
                counts["errors"][message] = counts["errors"].get(message, 0) + 1


PROCESS = _Process()


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    **kwargs: Any,
) -> None:
    if PROCESS.pid == os.getpid():
        PROCESS.record(response_time, exception)


events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]


def _crossover(base: type[designs.AuthscaleUser]) -> type[designs.AuthscaleUser]:
    """`base` paced and tasked by the runner; its task mix read from its own task list."""
    weights: Counter[Callable[[Any], None]] = Counter(base.tasks)  # type: ignore[arg-type]
    mix = list(weights)
    mix_weights = [weights[t] for t in mix]

    class Crossover(base):  # type: ignore[valid-type,misc]
        fixed_count = USERS_PER_DESIGN

        def on_start(self) -> None:
            PROCESS.ensure_started()
            self._next: float | None = None
            self._seq = -1
            self._relogged = 0.0
            self._jitter = random.random() * RELOGIN_SPREAD_S
            try:
                super().on_start()
            except StopUser:
                PROCESS.stopped += 1
                raise
            PROCESS.ready += 1

        def _active(self) -> protocol.Control | None:
            control = PROCESS.control
            if control["task"] == "idle" or self.mode.name not in control["designs"]:
                return None
            return control

        def wait_time(self) -> float:
            control = self._active()
            if control is None or control["rate"] <= 0:
                return 0.0  # the task waits for the next control itself
            share = control["rate"] / (USERS_PER_DESIGN * len(control["designs"]))
            interval = 1.0 / share
            now = time.monotonic()
            if self._next is None or self._seq != control["seq"]:
                self._seq = control["seq"]
                self._next = now + random.random() * interval  # spread the users' phases
            else:
                self._next = max(self._next + interval, now - interval)
            return max(0.0, self._next - now)

        @task
        def crossover(self) -> None:
            control = self._active()
            if control is None:
                PROCESS.changed.wait(1.0)
                self._next = None
                return
            relogin = control["relogin_at"]
            if relogin and self._relogged < relogin and time.time() >= relogin + self._jitter:
                self._relogged = relogin
                self.login()
                return
            if control["task"] == "mix":
                random.choices(mix, mix_weights)[0](self)
            elif control["task"] == "get":
                self.client.get(
                    control["url"] + "/orders?limit=10",
                    headers=self.auth_headers(),
                    name="/orders?limit=[n]",
                )
            else:
                self.order()

    Crossover.tasks = [Crossover.crossover]
    Crossover.__name__ = Crossover.__qualname__ = f"Crossover{base.__name__}"
    return Crossover


def _design_classes() -> dict[str, type[designs.AuthscaleUser]]:
    found = {}
    for value in vars(designs).values():
        if (
            isinstance(value, type)
            and issubclass(value, designs.AuthscaleUser)
            and not value.abstract
            and "mode" in dir(value)
        ):
            crossover = _crossover(value)
            found[crossover.__name__] = crossover
    return found


globals().update(_design_classes())
