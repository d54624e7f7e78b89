"""CPU time of the services' processes to the nanosecond: the scheduler's own account
(/proc/<pid>/task/<tid>/schedstat, its first field), summed over every thread.

/metrics' process_cpu_seconds_total (and psutil) count in clock ticks, 10 ms here: over a
window of a few hundred requests that alone is tens of microseconds per request per process,
as large as the difference between two designs. The stores' CPU comes from INFO cpu
(getrusage, microseconds), read with the other store counters.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds the process's threads have run (0 for a process that is gone)."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as stat,
            ):
                total += int(stat.read().split()[0])
    return total / 1e9


def available() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat")


@dataclass(frozen=True)
class Reading:
    at: float
    seconds: dict[str, float]  # process group (gateway, orders, relay, ...) -> CPU seconds


def group_of(name: str) -> str:
    """orders-1 and orders-2 are `orders`, relay-3 is `relay`."""
    return name.split("-")[0]


def read(pids: Mapping[str, Sequence[int]]) -> Reading:
    """CPU seconds by process group, now."""
    seconds: dict[str, float] = {}
    for name, group in pids.items():
        seconds[name] = sum(process_cpu_seconds(pid) for pid in group)
    return Reading(time.monotonic(), seconds)


def rates(before: Reading, after: Reading) -> dict[str, float]:
    """CPU seconds per second of each group between two readings."""
    wall = max(after.at - before.at, 1e-9)
    return {
        name: max(after.seconds.get(name, 0.0) - before.seconds.get(name, 0.0), 0.0) / wall
        for name in after.seconds
    }


def steal_seconds(cpus: Sequence[int]) -> float:
    """CPU seconds the hypervisor gave to someone else on `cpus` (/proc/stat's steal), so far.
    A window with steal on the system's CPU ran on a slower machine than its neighbours."""
    tick = os.sysconf("SC_CLK_TCK")
    wanted = {f"cpu{c}" for c in cpus}
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/stat") as stat:
        for line in stat:
            fields = line.split()
            if fields and fields[0] in wanted and len(fields) > 8:
                total += int(fields[8])
    return total / tick
