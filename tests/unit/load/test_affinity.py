"""The spinners that keep the system's CPUs out of halt during a run: one per CPU asked for,
pinned there, at idle priority (any other task takes the CPU from them), counting their laps,
gone afterwards."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from loadtests.load.affinity import LAP, available_cpus, kept_awake
from loadtests.measure.meter import spun, us_per_lap

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE on this platform: nothing is spun"
)


def _settled(pid: int) -> tuple[int, set[int]]:
    """The spinner's scheduling policy and CPUs once it has set them (it does so first)."""
    deadline = time.monotonic() + 10
    while True:
        policy, cpus = os.sched_getscheduler(pid), os.sched_getaffinity(pid)
        if policy == os.SCHED_IDLE or time.monotonic() > deadline:
            return policy, cpus
        time.sleep(0.02)  # polling the spinner's start-up, with a deadline


def test_one_spinner_per_cpu_pinned_there_at_idle_priority_and_gone_after() -> None:
    cpus = available_cpus()[-1:]
    with kept_awake(cpus) as spinners:
        assert [s.cpu for s in spinners] == list(cpus)
        pids = [s.pid for s in spinners]
        policy, pinned = _settled(pids[0])
        assert policy == os.SCHED_IDLE
        assert pinned == set(cpus)
        assert psutil.Process(pids[0]).status() != psutil.STATUS_ZOMBIE
        counter = spinners[0].counter
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not counter.exists()  # its lap counter goes with it


def test_a_spinner_counts_its_laps_and_its_cpu_time_per_lap_is_the_loops() -> None:
    cpus = available_cpus()[-1:]
    with kept_awake(cpus) as spinners:
        (spinner,) = spinners
        deadline = time.monotonic() + 20
        while spinner.laps() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling its start-up, with a deadline
        before = spun(spinners)
        while spinner.laps() < before[0][1] + 50 and time.monotonic() < deadline:
            time.sleep(0.02)  # fifty more laps, with a deadline
        after = spun(spinners)
    assert after[0][1] - before[0][1] >= 50
    per_lap = us_per_lap(before, after)
    # LAP turns of an empty loop: well under a second of CPU each, and more than LAP ns.
    assert per_lap is not None and LAP / 1e3 < per_lap < 1e6
    assert us_per_lap(before, before) is None  # no lap in between: no figure


def test_no_cpus_no_spinners() -> None:
    with kept_awake(()) as spinners:
        assert spinners == ()
