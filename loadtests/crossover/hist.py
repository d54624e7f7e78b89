"""Latency histograms small enough to pass between processes as JSON.

A latency in milliseconds falls in bucket `floor(log(ms / FLOOR_MS) / log(RATIO))`: 2 % wide
buckets from 10 us up, so a percentile read back is within 2 % of the true one, whatever the
number of samples. The Locust workers count into them; the runner merges the workers' counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

FLOOR_MS = 0.01
RATIO = 1.02
_LOG_RATIO = math.log(RATIO)

Histogram = dict[str, int]  # bucket index (as text, for JSON) -> count


def bucket(ms: float) -> int:
    return max(0, int(math.log(max(ms, FLOOR_MS) / FLOOR_MS) / _LOG_RATIO))


def bucket_ms(index: int) -> float:
    """The middle of a bucket (geometric), in ms."""
    return float(FLOOR_MS * RATIO ** (index + 0.5))


def add(histogram: Histogram, ms: float) -> None:
    key = str(bucket(ms))
    histogram[key] = histogram.get(key, 0) + 1


def merge(histograms: Iterable[Mapping[str, int]]) -> Histogram:
    out: Histogram = {}
    for histogram in histograms:
        for key, count in histogram.items():
            out[key] = out.get(key, 0) + count
    return out


def count(histogram: Mapping[str, int]) -> int:
    return sum(histogram.values())


def percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """The `fraction` (0..1) percentile in ms; None for an empty histogram."""
    total = count(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(int(k) for k in histogram):
        seen += histogram[str(index)]
        if seen >= rank:
            return round(bucket_ms(index), 3)
    raise AssertionError("unreachable: rank <= total")


def maximum(histogram: Mapping[str, int]) -> float | None:
    if not histogram:
        return None
    return round(bucket_ms(max(int(k) for k in histogram)), 3)
