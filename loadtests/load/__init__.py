"""The open-model load generator: requests leave at scheduled times whether or not earlier
ones were answered, and each one's latency counts from its intended start.

Locust is closed-loop (a user waits for each answer before its next request), so a slow moment
hides the requests that should have been sent during it. The measured curves use this package
instead: `schedule` says when, `generator` sends from one or more pinned processes, `histogram`
keeps and merges the latencies (HDR, `hdrhistogram`), `affinity` keeps the load and the system
on different CPUs.
"""

from loadtests.load.affinity import Isolation, isolate, pin
from loadtests.load.generator import Plan, Window, Workers, run_window, run_window_sync
from loadtests.load.histogram import Latency, merge, new_histogram
from loadtests.load.schedule import Schedule
from loadtests.load.worker import Target

__all__ = [
    "Isolation",
    "Latency",
    "Plan",
    "Schedule",
    "Target",
    "Window",
    "Workers",
    "isolate",
    "merge",
    "new_histogram",
    "pin",
    "run_window",
    "run_window_sync",
]
