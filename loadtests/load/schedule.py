"""When each request is meant to leave: a constant or Poisson arrival schedule.

The schedule is decided before the run and never waits for answers; that is what makes the load
open-model. Offsets are seconds from the window's start, so every process of one window can
share one start time and take its own share of the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["constant", "poisson"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """`rate` requests per second over `seconds`, evenly spaced or Poisson (`seed` fixes it)."""

    rate: float
    seconds: float
    kind: Kind = "constant"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.seconds <= 0:
            raise ValueError(f"a schedule needs a positive rate and length, not {self}")

    def offsets(self) -> list[float]:
        """Every intended send time in [0, seconds), in order."""
        if self.kind == "constant":
            interval = 1.0 / self.rate
            # Multiplying (not adding up intervals) keeps the last offsets free of drift.
            return [i * interval for i in range(round(self.rate * self.seconds))]
        # Poisson arrivals: exponential gaps. A private generator, so a seed gives one schedule
        # whatever else in the process draws random numbers.
        draw = random.Random(self.seed)
        out: list[float] = []
        t = draw.expovariate(self.rate)
        while t < self.seconds:
            out.append(t)
            t += draw.expovariate(self.rate)
        return out

    def share(self, index: int, count: int) -> list[float]:
        """Process `index` of `count`'s part: every count-th request, so each process carries
        rate/count with its own phase and the parts together are exactly the schedule."""
        if not 0 <= index < count:
            raise ValueError(f"share {index} of {count}")
        return self.offsets()[index::count]
