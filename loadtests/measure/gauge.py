"""The machine's own speed through a run: the CPU time one fixed piece of work takes on each CPU,
sampled between windows.

Every figure of the bench is CPU time or a rate the CPUs allow, so it moves with the speed of
the machine under it. On a dedicated machine the same work costs the same CPU time within a
percent or two, minute after minute; on a shared virtual machine the host's other tenants slow
a virtual CPU without taking it away (no steal time is reported: the work itself runs slower),
and that slowness lands in the figures as if the design had cost it. The gauge makes that a
measured figure of the run instead of a guess after it: the same pure-Python loop (the kind of
work the services do: the interpreter's dispatch, small integers), timed by its thread's own CPU
clock on each of the system's CPUs (kept from halting, as in the windows) in turn: before every
window of the phases in EVERY_WINDOW, once the services rest, and before any other window
`EVERY_S` seconds or more after the last sample (never during one: it would take the system's
CPU from the window it measures), and once at the end. A window with a sample just before it
keeps its reading (`speed_ms`: the mean over the system's CPUs).

The load generator's CPU is not sampled: it halts between windows, and a halted virtual CPU
reads the work 15 ms or 25 ms at random on the AMD EPYC host (the system's CPUs, kept awake,
read 14.8-15.5 ms for minutes on end).

Its spread, the coefficient of variation of the samples on a CPU, is what the machine alone
adds to every repeated figure: with five repeats a 95 % interval's half-width is
t(4) / sqrt(5) = 1.24 times the repeats' CV, so a machine at 5 % uses more than half of the
+-10 % the issue allows, before any design has varied at all (`analysis.check_machine_steady`).

    python -m loadtests.measure.gauge [seconds]   # this machine, now: each CPU every 0.5 s
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

WORK_ITERATIONS = 300_000  # 15-25 ms on the AMD EPYC host (2.6 GHz, CPython 3.11)
EVERY_S = 10.0  # between samples, during a run, outside EVERY_WINDOW's phases
# The phases whose every window gets a sample before it: CPU per request at the common rate,
# the figure the machine's speed moves most directly (30 windows of 1.5 s by default).
EVERY_WINDOW = ("cpu",)
STEADY_CV_PCT = 5.0  # the most a steady machine's samples vary on one CPU (see above)
JOIN_TIMEOUT_S = 30.0  # a sample is milliseconds of arithmetic; anything longer is a fault
WORK = f"total += i * i % 7 for i in range({WORK_ITERATIONS:,}): a Python loop, one thread"


class Sample(TypedDict):
    t_s: float  # since the gauge started
    cpu: int
    ms: float  # the thread's CPU time for WORK


class Spread(TypedDict):
    n: int
    median_ms: float
    min_ms: float
    max_ms: float
    cv_pct: float  # standard deviation over mean, in %


class Speed(TypedDict):
    """environment.speed in results.json."""

    work: str
    every_s: float
    samples: list[Sample]
    by_cpu: dict[str, Spread]  # str(cpu) -> its samples' spread


def work(iterations: int = WORK_ITERATIONS) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def sample(cpu: int, iterations: int = WORK_ITERATIONS) -> float:
    """Milliseconds of CPU time `work` takes on `cpu`, in a thread pinned there (the caller's
    own affinity is left as it was: sched_setaffinity(0) is the calling thread's)."""
    found: list[float] = []
    failed: list[BaseException] = []

    def measure() -> None:
        try:
            os.sched_setaffinity(0, {cpu})
            begin = time.thread_time()
            work(iterations)
            found.append((time.thread_time() - begin) * 1e3)
        except BaseException as error:  # reported by the caller's thread
            failed.append(error)

    thread = threading.Thread(target=measure, name=f"gauge-cpu{cpu}", daemon=True)
    thread.start()
    thread.join(JOIN_TIMEOUT_S)
    if failed:
        raise failed[0]
    if not found:
        raise TimeoutError(f"the speed gauge on CPU {cpu} took over {JOIN_TIMEOUT_S:g} s")
    return found[0]


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("a spread needs at least one sample")
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 3),
        "min_ms": round(min(values), 3),
        "max_ms": round(max(values), 3),
        "cv_pct": round(sd / mean * 100, 2) if mean > 0 else 0.0,
    }


def summarise(samples: Iterable[Sample], every_s: float = EVERY_S) -> Speed:
    kept = list(samples)
    cpus = sorted({s["cpu"] for s in kept})
    return {
        "work": WORK,
        "every_s": every_s,
        "samples": kept,
        "by_cpu": {str(c): spread([s["ms"] for s in kept if s["cpu"] == c]) for c in cpus},
    }


def by_cpu(speed: Mapping[str, Any] | None, cpus: Iterable[int]) -> dict[int, Spread]:
    """The spreads of `cpus` a run's environment.speed holds (none where it has no gauge)."""
    found = (speed or {}).get("by_cpu", {})
    return {c: found[str(c)] for c in cpus if str(c) in found}


class Gauge:
    """Samples every CPU of `cpus` now and then: `take` at once, `maybe` when `every_s` has
    passed since the last, `before` a window. `cpus` may be set later (the system's CPUs are
    known once the run has pinned them); with none, nothing is sampled."""

    def __init__(
        self,
        cpus: Sequence[int],
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        iterations: int = WORK_ITERATIONS,
    ) -> None:
        self.cpus = tuple(cpus)
        self.every_s = every_s
        self.clock = clock
        self.iterations = iterations
        self.began = clock()
        self.last: float | None = None
        self.samples: list[Sample] = []

    def take(self) -> None:
        for cpu in self.cpus:
            ms = round(sample(cpu, self.iterations), 3)
            self.samples.append({"t_s": round(self.clock() - self.began, 2), "cpu": cpu, "ms": ms})
        self.last = self.clock()

    def maybe(self) -> None:
        if self.last is None or self.clock() - self.last >= self.every_s:
            self.take()

    def before(self, phase: str) -> float | None:
        """Before a window of `phase`: a sample where one is due, and its reading (the mean
        over the CPUs) if it took one."""
        taken = len(self.samples)
        if phase in EVERY_WINDOW:
            self.take()
        else:
            self.maybe()
        fresh = [s["ms"] for s in self.samples[taken:]]
        return round(statistics.fmean(fresh), 3) if fresh else None

    def figure(self) -> Speed:
        return summarise(self.samples, self.every_s)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    seconds = float(args[0]) if args else 30.0
    gauge = Gauge(sorted(os.sched_getaffinity(0)), every_s=0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        gauge.maybe()
        time.sleep(0.05)
    found = gauge.figure()
    print(WORK)
    for cpu, s in found["by_cpu"].items():
        print(
            f"CPU {cpu}: {s['n']} samples, median {s['median_ms']:.1f} ms, "
            f"{s['min_ms']:.1f}-{s['max_ms']:.1f} ms, CV {s['cv_pct']:.1f} % "
            f"({'steady' if s['cv_pct'] <= STEADY_CV_PCT else 'NOT steady'}: "
            f"at most {STEADY_CV_PCT:g} %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
