"""What a `make bench` run does and at what settings: the options (default, --quick, --long)
and the configurations of the services (one start each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from loadtests.modes import Mode
from services.common.settings import REPO_ROOT

REPORTS = REPO_ROOT / "reports"


# "Well inside every capacity": the common rate is at most this share of each design's lowest
# capacity run (nearer the knee, queueing and the batching it brings change what one request
# costs); chosen below `common_rps` in steps of COMMON_RATE_STEP, so that runs on one machine
# pick the same rate unless its speed moved by a step.
COMMON_RATE_SHARE = 0.6
COMMON_RATE_STEP = 50.0


def common_rate(ceiling: float, knees: Sequence[float | None]) -> float:
    """The rate of CPU per request: `ceiling` (Options.common_rps), or COMMON_RATE_SHARE of the
    lowest knee held (every design's every capacity run), rounded down to a multiple of
    COMMON_RATE_STEP (at least one step), where that is lower. No knee held: `ceiling`."""
    held = [k for k in knees if k]
    if not held:
        return ceiling
    steps = int(COMMON_RATE_SHARE * min(held) // COMMON_RATE_STEP)
    return min(ceiling, max(steps, 1) * COMMON_RATE_STEP)


@dataclass(frozen=True)
class Options:
    out: Path | None = None  # default: reports/<timestamp>/
    quick: bool = False
    long: bool = False
    designs: tuple[str, ...] = ()  # mode names; empty: every mode of loadtests.modes.MODES
    # Capacity: p99 SLO, the shortfall of served against offered that ends a rate, the search.
    slo_ms: float = 50.0
    shortfall: float = 0.02
    # Five runs: a t interval over three is +-2.5 standard deviations of one run, and one run's
    # knee on this machine moves by 5-15 % (its CPU's speed alone by 3 % from second to second).
    repeats: int = 5
    start_rps: float = 1200.0
    factor: float = 1.5  # first repeat; later ones start at the median knee so far, step `near`
    near: float = 1.1
    refine_to: float = 0.05
    confirm: int = 2  # windows in a row that must hold for a rate to hold
    # A capacity window that failed while the machine ran over slow_pct % slower than its
    # usual (gauge.Pace) is measured again, once, and at most slow_budget windows a design
    # (capacity.retried): each costs about 1.5 s, and a default run has no more to spare.
    slow_pct: float = 5.0
    slow_retries: int = 1
    slow_budget: int = 2
    settle_s: float = 0.3  # load before the measured part of every window near capacity
    # ... and of every window at a low fixed rate (the write, the login, the chain, the
    # distance; 50-150 req/s, at most three fifths of the common rate): a few requests reach its
    # steady state, where the capacity windows' queues need the longer settle.
    low_settle_s: float = 0.15
    # Unrecorded load on each design after every start of the services, near the capacities
    # seen here: connection pools (the load's 64, the gateway's upstream pools), caches and
    # allocators grow here, so the first repeat's ladder, which jumps, starts from about the
    # state the later repeats, which creep up, reach on their own.
    warmup_rps: float = 1800.0
    warmup_s: float = 0.7
    window_s: float = 1.0
    idle_s: float = 1.0  # each start's idle baseline: its services' and stores' CPU at rest
    # CPU per request: one rate common to every design, well inside every capacity: this, or
    # lower where the run's slowest knee asks for it (common_rate).
    common_rps: float = 400.0
    cpu_repeats: int = 5
    cpu_window_s: float = 1.2
    # The write (POST /orders, an fsynced order) and the login, request types of their own,
    # each `type_repeats` times per design (one window each differed by 10-15 % from run to
    # run: a single one ranked designs that do the same work).
    type_repeats: int = 3
    post_rps: float = 100.0
    post_window_s: float = 0.5
    # The login at a modest rate, so no login waits for a password-hashing slot (shed with
    # 503 after LOGIN_QUEUE_SECONDS) and no account has LOGIN_MAX_FAILURES attempts in flight
    # at once (429).
    login_rps: float = 50.0
    login_window_s: float = 0.5
    # The chain of k verifying services (and the control), k = 1..5.
    # Well below the system CPU's capacity at every k, or a point's p50 is queueing, not hops:
    # a session chain of 5 relays cost 5,800 us a request on the AMD EPYC host, 0.87 of a CPU
    # at 150 req/s, where its p50 read 18.7 ms against the model's 6.7 (0.58 of a CPU at 100).
    chain_rps: float = 100.0
    chain_repeats: int = 2
    chain_window_s: float = 0.8
    # The session store at a distance: the same host, a zone, two, a region's edge. (0.5 ms
    # too, until 2026-12-07: its 18 windows went to the capacity windows measured again when
    # the machine ran slow, and 0 and 1 ms bracket it on a line the model draws through all.)
    rtts_ms: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0)
    distance_rps: float = 150.0
    distance_window_s: float = 0.5
    distance_repeats: int = 3  # windows per distance and design; the point is their median
    distance_groups: int = 0  # settings groups measured at a distance, 0: every one
    revocation_samples: int = 10
    revocation_limit_s: float = 1.5
    outage: bool = True
    # The system's CPUs kept out of halt (loadtests.load.affinity.kept_awake) while measuring.
    keep_awake: bool = True
    microbench_n: int = 1000
    users: int = 8
    # --long (loadtests/measure/long.py): windows beside the curves, none of them a curve's.
    nginx_rps: float = 400.0  # nginx and the gateway at the same offered rate
    nginx_s: float = 3.0
    rotation_rps: float = 150.0
    rotation_s: float = 5.0  # auth restarts with a new key about a second in (takes ~1 s)
    failover_rps: float = 150.0
    failover_s: float = 8.0  # the cluster's replica takes over within a few seconds
    store_bench_requests: int = 50_000  # redis-benchmark, one shard against the cluster
    traced_rps: float = 100.0
    traced_s: float = 2.0
    traced_designs: tuple[str, ...] = ()  # empty: every design of the run

    @classmethod
    def quick_run(cls, **given: object) -> Options:
        """--quick: every design and figure once, short windows (CI's smoke test, <= 3 min)."""
        base = cls(
            quick=True,
            repeats=1,
            start_rps=1200.0,  # near every design's knee here: one rate fewer than from 600
            # x1.5 then bisection to 25 %: a knee under 1,800 req/s in three rates (x2: four),
            # one of 1,800-2,700 in four, offering at most 2,700 (x2: up to 4,800, past what one
            # load CPU offered on the AMD EPYC machine); above 2,700, five rates as with x2.
            factor=1.5,
            refine_to=0.25,
            confirm=1,
            settle_s=0.15,
            warmup_s=0.3,
            window_s=0.4,
            idle_s=0.5,
            common_rps=200.0,
            cpu_repeats=1,
            cpu_window_s=0.6,
            type_repeats=1,
            post_window_s=0.5,
            login_window_s=0.4,
            chain_repeats=1,
            # 40 requests a window: at 30 (0.3 s) the chain's CPU per request scattered so that
            # the model missed 10 of 30 points by 25-53 % (1-3 at 0.4 s).
            chain_window_s=0.4,
            rtts_ms=(0.0, 2.0),
            distance_window_s=0.6,
            distance_repeats=1,
            distance_groups=1,
            revocation_samples=2,
            revocation_limit_s=1.0,
            outage=False,
            microbench_n=200,
            nginx_s=1.0,
            rotation_s=2.0,  # auth's restart starts 0.65 s in and takes about 1 s
            failover_s=5.0,
            store_bench_requests=5_000,
            traced_rps=60.0,
            traced_s=1.0,
        )
        return replace(base, **given)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Config:
    """One start of the services: a settings group, and whether the session store is the
    distant one (then only the distance windows run)."""

    designs: tuple[str, ...]
    distant: bool
    control: bool = True  # the control chain runs beside the designs' (same start)


def configs(
    groups: Sequence[Sequence[Mode]], rtts: Sequence[float], distance_groups: int = 0
) -> list[Config]:
    out: list[Config] = []
    for index, group in enumerate(groups):
        names = tuple(m.name for m in group)
        out.append(Config(names, distant=False))
        if rtts and (distance_groups <= 0 or index < distance_groups):
            out.append(Config(names, distant=True, control=False))
    return out
