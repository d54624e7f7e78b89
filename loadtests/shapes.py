"""A ramp for exploring capacity: `locust -f loadtests/locustfile.py,loadtests/shapes.py`.

Steps the user count up (AUTHSCALE_RAMP="users:seconds,...", default 5:20,10:20,20:20,40:20)
and stops at the end. Kept apart from locustfile.py because Locust applies any shape it finds,
and the comparison runs need a fixed user count.
"""

from __future__ import annotations

import os

from locust import LoadTestShape


def parse_ramp(text: str) -> list[tuple[int, float]]:
    steps = []
    for part in text.split(","):
        users, _, seconds = part.partition(":")
        steps.append((int(users), float(seconds)))
    return steps


class RampShape(LoadTestShape):
    steps = parse_ramp(os.environ.get("AUTHSCALE_RAMP", "5:20,10:20,20:20,40:20"))

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        for users, seconds in self.steps:
            if elapsed < seconds:
                return users, float(users)
            elapsed -= seconds
        return None
