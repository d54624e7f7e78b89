"""How fast this machine runs right now: the same small piece of work, timed over and over by a
process at idle priority on the load generator's CPU.

This machine's CPUs slow down now and then, for seconds to tens of seconds, by 10-60 %, on
every CPU at once: the load generator's too (in a run, its windows there turn generator-limited
in the same seconds as the system's knee falls). No steal is reported. A window taken then
measures the machine: a design's capacity searched during one is a third lower, and one such
stretch in a run was the widest interval of the table. The gauge sees it: its piece of work
takes as much longer (`slowdown`, against the run's typical time). A window taken while the
gauge ran slow is not used; the run waits for the machine to be back and measures it again.

The gauge's process only runs when the generator's CPU has nothing else to run (SCHED_IDLE),
so it never delays a request; it keeps that CPU out of halt, which steadies the generator too.
It counts its own CPU time (not wall time): a piece the generator interrupted costs no more.
It publishes (pieces, nanoseconds) in a 32-byte file, twice, so a reader never takes half an
update for a whole one.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PIECE = 20_000  # iterations of the piece of work: about 1.5 ms of this machine's CPU
SLOW = 1.08  # a window whose pieces took this much longer than typical ran on a slow machine
BACK = 1.04  # and the machine is back when they take at most this much longer
_LAYOUT = struct.Struct("<QQ")  # pieces done, CPU nanoseconds spent on them
SIZE = 2 * _LAYOUT.size


@dataclass(frozen=True, slots=True)
class Reading:
    pieces: int
    ns: int


def per_piece(before: Reading, after: Reading) -> float | None:
    """CPU nanoseconds per piece between two readings (None: no piece done in between)."""
    done = after.pieces - before.pieces
    return (after.ns - before.ns) / done if done > 0 else None


@dataclass
class Gauge:
    """The gauge's process and its readings; `typical_ns` is the run's usual time per piece."""

    path: Path
    process: subprocess.Popen[bytes] | None = None
    typical: list[float] = field(default_factory=list)  # per-piece times of the windows so far
    calibrated_ns: float | None = None

    def read(self) -> Reading:
        """The gauge's counters now (zero before its first piece)."""
        with self.path.open("rb") as file:
            data = file.read(SIZE)
        for _ in range(100):
            if len(data) < SIZE:
                return Reading(0, 0)
            first, second = _LAYOUT.unpack_from(data, 0), _LAYOUT.unpack_from(data, _LAYOUT.size)
            if first == second:
                return Reading(*first)
            with self.path.open("rb") as file:
                data = file.read(SIZE)
        return Reading(*_LAYOUT.unpack_from(data, _LAYOUT.size))

    def calibrate(self, seconds: float = 2.0, step: float = 0.25, warm_s: float = 0.5) -> float:
        """The time per piece with nothing else running: the median of `step` readings after
        `warm_s` (a new process's first pieces run slower); the typical until windows have
        given their own."""
        samples: list[float] = []
        time.sleep(warm_s)  # not measured: the gauge's process warming up
        before = self.read()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(step)  # the length of one reading, not a wait for something
            after = self.read()
            value = per_piece(before, after)
            if value is not None:
                samples.append(value)
            before = after
        if not samples:
            raise RuntimeError("the speed gauge did no work: is its CPU taken?")
        self.calibrated_ns = statistics.median(samples)
        return self.calibrated_ns

    @property
    def typical_ns(self) -> float | None:
        return statistics.median(self.typical) if self.typical else self.calibrated_ns

    def slowdown(self, before: Reading, after: Reading) -> float | None:
        """How much longer a piece took between the readings than typically (1.0: as usual);
        None when nothing can be said (no piece done, or no typical yet)."""
        value, typical = per_piece(before, after), self.typical_ns
        if value is None or not typical:
            return None
        return value / typical

    def note(self, before: Reading, after: Reading) -> None:
        """A window's time per piece, into the typical (a slow window's too: the typical is
        a median, and a machine slow for most of the run is the run's machine)."""
        value = per_piece(before, after)
        if value is not None:
            self.typical.append(value)

    def wait_back(self, limit_s: float = 15.0, step: float = 0.25) -> float:
        """Wait, up to `limit_s`, until a reading of `step` shows the machine back (a piece
        within BACK of typical); returns the seconds waited."""
        began = time.monotonic()
        before = self.read()
        while time.monotonic() - began < limit_s:
            time.sleep(step)  # the length of one reading, not a wait for something
            after = self.read()
            ratio = self.slowdown(before, after)
            if ratio is not None and ratio <= BACK:
                break
            before = after
        return time.monotonic() - began


_PROGRAM = (
    "import mmap, os, struct, sys, time\n"
    "cpu, path = int(sys.argv[1]), sys.argv[2]\n"
    "if cpu >= 0:\n"
    "    os.sched_setaffinity(0, {cpu})\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "layout = struct.Struct('<QQ')\n"
    "with open(path, 'r+b') as file:\n"
    "    shared = mmap.mmap(file.fileno(), 2 * layout.size)\n"
    "pieces = spent = 0\n"
    "while True:\n"
    "    began = time.thread_time_ns()\n"
    "    total = 0\n"
    f"    for i in range({PIECE}):\n"
    "        total += i * i\n"
    "    spent += time.thread_time_ns() - began\n"
    "    pieces += 1\n"
    "    layout.pack_into(shared, 0, pieces, spent)\n"
    "    layout.pack_into(shared, layout.size, pieces, spent)\n"
)


@contextlib.contextmanager
def gauge(cpus: Sequence[int]) -> Iterator[Gauge | None]:
    """A gauge on the first of `cpus` while the block runs (None where the platform has no
    SCHED_IDLE or no CPU is given: nothing is judged slow)."""
    if not hasattr(os, "SCHED_IDLE") or not cpus:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="authscale-gauge-") as directory:
        path = Path(directory) / "gauge"
        path.write_bytes(b"\0" * SIZE)
        process = subprocess.Popen(
            [sys.executable, "-c", _PROGRAM, str(cpus[0]), str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found = Gauge(path, process)
        try:
            deadline = time.monotonic() + 10
            while found.read().pieces == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the speed gauge did not start")
                time.sleep(0.01)  # polling its first piece, with a deadline
            yield found
        finally:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
