"""What a crossover run will do, in order, and how long that should take: the options, the
stack configurations (one restart of the services each), the tasks, and the progress line.

Pure apart from the clock: tests/unit/test_crossover_report.py checks the plan and the ETA.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from loadtests.modes import Mode
from services.common.settings import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "reports" / "latest" / "crossover"


@dataclass(frozen=True)
class Options:
    out: Path = DEFAULT_OUT
    long: bool = False
    designs: tuple[str, ...] = ()  # mode names; empty: every mode of loadtests.modes.MODES
    slo_ms: float = 50.0
    # Offered load ladder of the knee: start, x factor per step, ladder_steps planned steps; the
    # search goes on past them while a design still holds (up to search_steps in all: the
    # open-model generator's own limit ends it before that on any machine seen here), then
    # bisects between the last rate held and the first that was not until they are within
    # refine_to of each other.
    ladder_start: float = 100.0
    ladder_factor: float = 1.5
    ladder_steps: int = 9
    search_steps: int = 16
    refine_to: float = 0.05
    step_s: float = 1.5  # measured seconds per window
    settle_s: float = 0.5  # seconds after a change before measuring
    rounds: int = 1  # knee rounds (the later ones in reverse group order)
    hop_rps: float = 150.0
    hop_s: float = 1.75
    rtts_ms: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)
    distance_rps: float = 80.0
    distance_s: float = 1.5
    distance_all: bool = False  # also the JWT designs (no store call per request)
    revocation_samples: int = 10
    revocation_limit_s: float = 1.5
    rotation_all: bool = False  # rotate in every group with a JWT verifier, not only the first
    rotation_rps: float = 100.0
    rotation_s: float = 4.0
    users: int = 60  # Locust users per design
    processes: int = 2  # Locust worker processes
    nginx_s: float = 2.0
    nginx_rounds: int = 2  # interleaved, each proxy's least disturbed round counts
    nginx_connections: int = 16
    shard_requests: int = 30_000
    jwks_cooldown_s: float = 2.0

    @classmethod
    def long_run(cls, **given: object) -> Options:
        """--long: the full curves (finer ladder, longer windows, two knee rounds, every
        design at every distance, 50 logouts per design, a rotation in every group)."""
        base = cls(
            long=True,
            ladder_start=80.0,
            ladder_factor=1.2,
            ladder_steps=16,
            step_s=5.0,
            settle_s=1.0,
            rounds=2,
            hop_s=6.0,
            distance_s=5.0,
            distance_all=True,
            revocation_samples=50,
            revocation_limit_s=3.0,
            rotation_all=True,
            rotation_s=10.0,
            users=100,
            nginx_s=5.0,
            nginx_rounds=3,
            shard_requests=200_000,
        )
        return replace(base, **given)  # type: ignore[arg-type]

    def ladder(self) -> list[float]:
        """Offered rates of the knee's planned steps."""
        return [self.ladder_rate(step) for step in range(self.ladder_steps)]

    def ladder_rate(self, step: int) -> float:
        """The offered rate of the knee's step `step` (0 first), planned or past the plan."""
        return float(round(self.ladder_start * self.ladder_factor**step))

    def refine_steps(self) -> int:
        """Bisections that bring one ladder step's interval within refine_to."""
        return max(
            0, math.ceil(math.log2(math.log(self.ladder_factor) / math.log1p(self.refine_to)))
        )


Purpose = Literal["main", "distance", "knee"]


@dataclass(frozen=True)
class Config:
    """One start of the services: a settings group, where the session store is, and what is
    measured on it."""

    designs: tuple[str, ...]
    purpose: Purpose
    remote_store: bool  # the session store at a distance (namespace / proxy)
    round: int = 1
    hops: bool = False
    knee: bool = False
    distance: tuple[str, ...] = ()  # the designs measured at each store distance
    rotation: bool = False
    revocation: bool = False
    nginx: bool = False


def verifies_jwt(mode: Mode) -> bool:
    """A design whose verifiers check JWTs (and so care about the signing key)."""
    return mode.credential.kind == "jwt" or mode.exchanges


def configs(groups: Sequence[Sequence[Mode]], options: Options, netem: bool) -> list[Config]:
    """The stack configurations in order. With netem the session store sits across the veth
    pair for the whole run (the kernel adds the delay, at no CPU cost to anyone), so the
    distance windows run in the main configuration; with the proxy fallback the proxy would
    cost CPU beside the services, so the distance windows get a configuration of their own."""
    rotation_groups = [g for g in groups if any(verifies_jwt(m) for m in g)]
    if not options.rotation_all:
        rotation_groups = rotation_groups[:1]
    out: list[Config] = []
    for index, group in enumerate(groups):
        names = tuple(m.name for m in group)
        distant = tuple(
            m.name
            for m in group
            if options.rtts_ms and (options.distance_all or m.credential.kind == "session")
        )
        out.append(
            Config(
                names,
                "main",
                remote_store=netem,
                hops=True,
                knee=True,
                distance=distant if netem else (),
                rotation=any(g is group for g in rotation_groups),
                revocation=True,
                nginx=index == 0,
            )
        )
        if distant and not netem:
            out.append(Config(distant, "distance", remote_store=True, distance=distant))
    for round_ in range(2, options.rounds + 1):
        order = list(groups) if round_ % 2 else list(reversed(groups))
        for group in order:
            out.append(
                Config(
                    tuple(m.name for m in group),
                    "knee",
                    remote_store=netem,
                    round=round_,
                    knee=True,
                )
            )
    return out


@dataclass(frozen=True)
class Task:
    key: str
    seconds: float


RESTART_S = 4.5
REPORT_S = 6.0


def tasks(plan: Sequence[Config], options: Options) -> list[Task]:
    """Every task of the run with its estimated seconds, in order."""
    window = options.settle_s + options.step_s + 0.4
    out = [Task("start", 8.0), Task("shards", 3.0 + options.shard_requests / 40_000)]
    for index, config in enumerate(plan):
        tag = f"{index}"
        if index:
            out.append(Task(f"{tag}:restart", RESTART_S))
        out.append(Task(f"{tag}:locust", 2.5 + 0.01 * options.users * len(config.designs)))
        if config.hops:
            hop_window = options.settle_s + options.hop_s + 0.4
            out += [
                Task(f"{tag}:hop:{h}:{d}", hop_window) for h in (1, 2, 3) for d in config.designs
            ]
        if config.knee:
            for step in range(len(options.ladder())):
                out += [Task(f"{tag}:knee:{d}:{step}", window) for d in config.designs]
            for step in range(options.refine_steps()):
                out += [Task(f"{tag}:refine:{d}:{step}", window) for d in config.designs]
        if config.distance:
            distance_window = options.settle_s + options.distance_s + 0.5
            out += [
                Task(f"{tag}:distance:{r}:{d}", distance_window)
                for r in options.rtts_ms
                for d in config.distance
            ]
        if config.rotation:
            out.append(Task(f"{tag}:rotation", max(options.rotation_s, 4.0) + 6.0))
        if config.revocation:
            out += [
                Task(f"{tag}:revocation:{d}", 0.25 * options.revocation_samples + 1.0)
                for d in config.designs
            ]
        if config.nginx:
            windows = 4 * max(1, options.nginx_rounds)  # nginx, the floor, two gateways
            out.append(Task(f"{tag}:nginx", windows * (options.nginx_s + 0.5) + 3.0))
    out.append(Task("report", REPORT_S))
    return out


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class Progress:
    """Which tasks are done; what is left and when it should end, calibrated by how the
    estimates held so far. `say` gets one line per event."""

    planned: Sequence[Task]
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    done: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.estimates = {t.key: t.seconds for t in self.planned}

    @property
    def estimated_s(self) -> float:
        return sum(self.estimates.values())

    def pace(self) -> float:
        """Actual seconds per estimated second so far (1 until a few tasks are done)."""
        spent = sum(self.estimates[k] for k in self.done)
        if spent < 5.0:
            return 1.0
        return min(3.0, max(0.5, (self.clock() - self.started) / spent))

    def left_s(self) -> float:
        pending = [k for k in self.estimates if k not in self.done and k not in self.skipped]
        return sum(self.estimates[k] for k in pending) * self.pace()

    def line(self, phase: str) -> str:
        left = self.left_s()
        eta = time.strftime("%H:%M:%S", time.localtime(self.wall() + left))
        counted = len(self.done) + len(self.skipped)
        return (
            f"{phase}  [{counted}/{len(self.estimates)} tasks, "
            f"{duration(self.clock() - self.started)} in, ~{duration(left)} left, ETA {eta}]"
        )

    def finish(self, key: str, phase: str) -> None:
        if key in self.estimates:
            self.done.add(key)
        self.say(self.line(phase))

    def skip(self, keys: Sequence[str]) -> None:
        self.skipped.update(k for k in keys if k in self.estimates and k not in self.done)

    def skip_prefix(self, prefix: str) -> None:
        self.skip([k for k in self.estimates if k.startswith(prefix)])
