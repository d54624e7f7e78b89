"""Latency histograms: HDR (1 us .. 60 s, 3 significant digits), encoded to cross processes.

Each load process records into its own histogram and sends it back encoded; the window's figures
come from their sum, never from an average of per-process percentiles. Only the `hdrh` package's
public API is used: HdrHistogram(...), record_value, encode, decode_and_add, get_total_count,
get_value_at_percentile, get_max_value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s: longer than any request timeout the generator allows
DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record one latency; a value beyond the range is kept at the top, never dropped, so a
    request that took too long still counts as slow."""
    histogram.record_value(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """The sum of histograms encoded by `HdrHistogram.encode` (one per process)."""
    total = new_histogram()
    for blob in encoded:
        total.decode_and_add(blob)
    return total


def encode(histogram: HdrHistogram) -> str:
    """The histogram as text (base64 of the compressed HDR V2 format)."""
    blob = histogram.encode()
    return blob.decode("ascii") if isinstance(blob, bytes) else str(blob)


@dataclass(frozen=True, slots=True)
class Latency:
    """A histogram's figures in milliseconds (None when nothing was recorded)."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Latency:
        count = int(histogram.get_total_count())
        if count == 0:
            return cls(0, None, None, None, None, None)

        def ms(percentile: float) -> float:
            return round(float(histogram.get_value_at_percentile(percentile)) / 1000, 3)

        return cls(
            count,
            ms(50),
            ms(90),
            ms(99),
            ms(99.9),
            round(float(histogram.get_max_value()) / 1000, 3),
        )
