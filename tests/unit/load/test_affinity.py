"""The spinners that keep the system's CPUs out of halt during a run: one per CPU asked for,
pinned there, at idle priority (any other task takes the CPU from them), gone afterwards."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from loadtests.load.affinity import available_cpus, kept_awake

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
    with kept_awake(cpus) as pids:
        assert len(pids) == 1
        policy, pinned = _settled(pids[0])
        assert policy == os.SCHED_IDLE
        assert pinned == set(cpus)
        assert psutil.Process(pids[0]).status() != psutil.STATUS_ZOMBIE
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_no_cpus_no_spinners() -> None:
    with kept_awake(()) as pids:
        assert pids == ()
