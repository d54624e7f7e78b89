"""Keeping the load and the system under test on different CPUs.

A generator that shares CPUs with the system takes its cycles at the worst moments and reports
the system's slowness as its own (or the reverse). `isolate` splits the CPUs this process may use
(on a 2-CPU machine: one each), pins the system's processes to their part, and returns the split;
the generator's processes pin themselves to the other part (`pin` in the worker) before they
start any thread, so every thread they make inherits it. The split goes into every window's
result, with whether it was applied at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (all of them where the platform cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def cpus_of(pid: int) -> tuple[int, ...]:
    """The CPUs process `pid` may run on now (empty where the platform cannot say)."""
    if not hasattr(os, "sched_getaffinity"):
        return ()
    return tuple(sorted(os.sched_getaffinity(pid)))


def _threads(pid: int) -> list[int]:
    """Every thread of `pid`: sched_setaffinity(pid) moves only its main thread, and a service's
    other threads (Redis's I/O threads, a resolver pool) would stay where they were."""
    tasks = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        return [int(t.name) for t in tasks.iterdir()]
    return [pid]


def pin(pids: Iterable[int], cpus: Sequence[int]) -> bool:
    """Pin every thread of each of `pids` to `cpus`; False where the platform has no affinity.
    A process or thread that exited meanwhile is skipped: it has nothing left to run."""
    if not hasattr(os, "sched_setaffinity") or not cpus:
        return False
    for pid in pids:
        for tid in _threads(pid):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, cpus)
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """Which CPUs the generator and the system were given, and the system's pinned PIDs.
    `isolated` is False when the two share CPUs (one CPU only, or no affinity support)."""

    generator_cpus: tuple[int, ...]
    system_cpus: tuple[int, ...]
    system_pids: tuple[int, ...] = ()
    isolated: bool = False


def split(cpus: Sequence[int], generator_count: int = 1) -> Isolation:
    """The last `generator_count` CPUs for the load, the rest for the system; everything for
    both when there is a single CPU (the window then says it was not isolated)."""
    cpus = tuple(sorted(cpus))
    if len(cpus) < 2:
        return Isolation(generator_cpus=cpus, system_cpus=cpus)
    n = min(max(generator_count, 1), len(cpus) - 1)
    return Isolation(generator_cpus=cpus[-n:], system_cpus=cpus[:-n], isolated=True)


def isolate(
    system_pids: Iterable[int], generator_count: int = 1, cpus: Sequence[int] | None = None
) -> Isolation:
    """Split `cpus` (default: this process's) and pin `system_pids` (every thread) to the
    system's part."""
    plan = split(available_cpus() if cpus is None else cpus, generator_count)
    pids = tuple(system_pids)
    # Isolated only if there was a system to move: the generator alone on its CPU is not.
    applied = plan.isolated and bool(pids) and pin(pids, plan.system_cpus)
    return Isolation(
        generator_cpus=plan.generator_cpus,
        system_cpus=plan.system_cpus,
        system_pids=pids,
        isolated=applied,
    )


def system_pids(exclude: Sequence[int] = ()) -> list[int]:
    """Every process this one started (the stack, its stores, a store in a namespace, a
    proxy), less the trees of `exclude` (the load processes): what `isolate` pins."""
    me = psutil.Process(os.getpid())
    skipped: set[int] = set()
    for pid in exclude:
        try:
            skipped |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
        except psutil.Error:
            skipped.add(pid)
    return [c.pid for c in me.children(recursive=True) if c.pid not in skipped]


# One process per system CPU, at the lowest priority there is (SCHED_IDLE: any other runnable
# task takes the CPU from it at once), spinning so that the CPU never halts. It counts its laps
# (LAP turns of an empty loop each) into an 8-byte shared file: its CPU time over its laps in a
# window is how fast the CPU ran the same work in that window, in the gaps the system left it.
LAP = 50_000  # about 1 ms of a CPU on the machines seen here
_SPIN = (
    "import mmap, os\n"
    "os.sched_setaffinity(0, {{{cpu}}})\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "counter = mmap.mmap(os.open({counter!r}, os.O_RDWR), 8)\n"
    "laps = 0\n"
    "while True:\n"
    "    for _ in range({lap}):\n"
    "        pass\n"
    "    laps += 1\n"
    "    counter[:8] = laps.to_bytes(8, 'little')\n"
)


@dataclass(frozen=True, slots=True)
class Spinner:
    """One spinner: its CPU, its process and the file it counts its laps in."""

    cpu: int
    pid: int
    counter: Path

    def laps(self) -> int:
        """The laps it has run so far (0 before its first). The spinner's 8-byte write is not
        atomic against this read, so a read is taken only when the next one agrees (the count
        moves about once a millisecond; a torn read could be off by 255 laps)."""
        last = -1
        for _ in range(5):
            with contextlib.suppress(OSError):
                now = int.from_bytes(self.counter.read_bytes()[:8], "little")
                if now == last:
                    return now
                last = now
        return max(last, 0)


@contextlib.contextmanager
def kept_awake(cpus: Sequence[int]) -> Iterator[tuple[Spinner, ...]]:
    """Keep `cpus` out of halt while the block runs; yields the spinners (none where the
    platform has no SCHED_IDLE).

    A virtual CPU with nothing to run halts, and the hypervisor may run something else on it:
    the next request then starts on cold caches, and what a service spends per request depends
    on how long the CPU was idle before it. `idle=poll` would do this for the whole machine at
    boot; a spinner at idle priority does it for the system's CPUs only, for the run. Its own
    CPU time is nobody's request: only the services' and the stores' processes are counted."""
    if not hasattr(os, "SCHED_IDLE") or not cpus:
        yield ()
        return
    # In memory where there is a /dev/shm: a counter on disk would cost writeback on the CPUs
    # it measures.
    shm = Path("/dev/shm")  # noqa: S108 (mkdtemp below: a private directory of its own)
    counters = Path(tempfile.mkdtemp(prefix="authscale-spin-", dir=shm if shm.is_dir() else None))
    processes: list[subprocess.Popen[bytes]] = []
    spinners: list[Spinner] = []
    try:
        for cpu in cpus:
            counter = counters / f"cpu{cpu}"
            counter.write_bytes(bytes(8))
            process = subprocess.Popen(
                [sys.executable, "-c", _SPIN.format(cpu=cpu, counter=str(counter), lap=LAP)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(process)
            spinners.append(Spinner(cpu, process.pid, counter))
        yield tuple(spinners)
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        shutil.rmtree(counters, ignore_errors=True)
