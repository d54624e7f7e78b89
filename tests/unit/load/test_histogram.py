"""Latency histograms recorded in separate processes and merged through their encoding."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from loadtests.load import histogram
from loadtests.load.histogram import Latency


def record(latencies_ms: list[float]) -> str:
    """Runs in another process: what a load process sends back."""
    h = histogram.new_histogram()
    for ms in latencies_ms:
        histogram.record_seconds(h, ms / 1000)
    return histogram.encode(h)


def test_histograms_from_two_processes_merge_into_their_sum() -> None:
    fast = [1.0] * 990  # one process: 990 answers of 1 ms
    slow = [float(ms) for ms in range(100, 110)]  # the other: 10 answers of 100..109 ms
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        blobs = list(pool.map(record, [fast, slow]))
    assert all(isinstance(b, str) for b in blobs) and blobs[0] != blobs[1]
    latency = Latency.of(histogram.merge(blobs))
    assert latency.count == 1000
    # 3 significant digits: every figure within 0.1 % of the value recorded.
    assert latency.p50_ms == pytest.approx(1.0, rel=1e-3)
    assert latency.p90_ms == pytest.approx(1.0, rel=1e-3)
    # The 990th value is the last 1 ms one; the 991st..1000th are 100..109 ms, so the 999th
    # (p99.9) is 108 ms.
    assert latency.p99_ms == pytest.approx(1.0, rel=1e-3)
    assert latency.p999_ms == pytest.approx(108.0, rel=1e-3)
    assert latency.max_ms == pytest.approx(109.0, rel=1e-3)
    only_slow = Latency.of(histogram.merge(blobs[1:]))
    assert only_slow.count == 10
    assert only_slow.p50_ms == pytest.approx(104.0, rel=1e-3)


def test_a_latency_past_the_range_is_kept_at_the_top_not_dropped() -> None:
    h = histogram.new_histogram()
    histogram.record_seconds(h, 120.0)
    histogram.record_seconds(h, 0.0)
    latency = Latency.of(h)
    assert latency.count == 2
    assert latency.max_ms == pytest.approx(60_000, rel=1e-3)


def test_an_empty_histogram_has_no_figures() -> None:
    assert Latency.of(histogram.merge([])) == Latency(0, None, None, None, None, None)
