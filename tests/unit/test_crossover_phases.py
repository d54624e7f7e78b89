"""The knee's ladder (loadtests/crossover/phases.py, Run.measure_knee): which windows it measures
and when a design's ladder ends, driven by scripted windows in place of Locust's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from loadtests.crossover.phases import Run
from loadtests.crossover.plan import Config, Options, Progress
from loadtests.crossover.results import Segment
from loadtests.modes import MODES


@dataclass
class ScriptedDriver:
    """Each design's p99 per window, in order; every window asked for is recorded."""

    p99s: dict[str, list[float]]
    limited: dict[str, list[bool]] = field(default_factory=dict)  # generator-limited windows
    asked: list[tuple[str, float]] = field(default_factory=list)

    def measure(
        self,
        servers: object,
        idle: object,
        designs: Sequence[str],
        task: str,
        rate: float,
        seconds: float,
        settle: float,
    ) -> SimpleNamespace:
        (name,) = designs
        self.asked.append((name, rate))
        segment: Segment = {
            "window_s": seconds,
            "gateway_requests": rate * seconds,
            "achieved_rps": rate,
            "cpu_us_per_request": {},
            "cpu_us_services": 1000.0,
            "cpu_us_total": 1500.0,
            "checks_per_request": 2.0,
            "store_ops_per_request": {},
            "design": name,
            "task": task,
            "offered_rps": rate,
            "requests": int(rate * seconds),
            "failures": 0,
            "errors": {},
            "p50_ms": 3.0,
            "p90_ms": 5.0,
            "p99_ms": self.p99s[name].pop(0),
            "max_ms": 90.0,
            "locust_cpu": [0.1],
            "generator_limited": bool(self.limited.get(name)) and self.limited[name].pop(0),
        }
        return SimpleNamespace(segment=segment)


def ladder(
    designs: Sequence[str],
    p99s: dict[str, list[float]],
    limited: dict[str, list[bool]] | None = None,
    refine_to: float = 1.0,
) -> tuple[Run, ScriptedDriver, list[str]]:
    """Run the knee's ladder on scripted windows: the run, the driver, the progress lines.
    refine_to: 1.0 (a step's x2 already within it) leaves out the bisection."""
    options = Options(
        ladder_start=100.0, ladder_factor=2.0, ladder_steps=3, users=60, refine_to=refine_to
    )
    lines: list[str] = []
    run = Run(
        options=options,
        modes=list(MODES),
        workdir=Path("."),
        say=lines.append,
        store=cast(Any, None),
        stack=cast(Any, None),
        side=cast(Any, None),
        progress=Progress([], lines.append),
    )
    driver = ScriptedDriver(p99s, limited or {})
    config = Config(tuple(designs), "main", remote_store=False, knee=True)
    run.measure_knee("t", config, cast(Any, driver), cast(Any, None))
    return run, driver, lines


def test_a_step_past_the_slo_is_measured_twice_then_ends_the_ladder() -> None:
    run, driver, _ = ladder(["session"], {"session": [10.0, 80.0, 20.0, 80.0, 90.0]})
    # 100 held; 200 failed once, then held; 400 failed twice: the ladder ends there.
    assert driver.asked == [("session", r) for r in (100.0, 200.0, 200.0, 400.0, 400.0)]
    assert [(s["offered_rps"], s["attempt"], s["held"]) for s in run.steps["session"]] == [
        (100.0, 1, True),
        (200.0, 1, False),
        (200.0, 2, True),
        (400.0, 1, False),
        (400.0, 2, False),
    ]


def test_the_first_step_gets_a_third_window_before_a_design_is_left_without_a_knee() -> None:
    run, driver, lines = ladder(
        ["session", "jwt-push"],
        {"session": [60.0, 70.0, 20.0, 80.0, 90.0], "jwt-push": [60.0, 70.0, 75.0]},
    )
    steps = run.steps
    assert [(s["attempt"], s["held"]) for s in steps["session"][:3]] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    # jwt-push failed all three windows of the first step: no more windows for it.
    assert [s["offered_rps"] for s in steps["jwt-push"]] == [100.0, 100.0, 100.0]
    assert not any(s["held"] for s in steps["jwt-push"])
    # session went on to the next step, where two windows past the SLO end its ladder.
    assert [(s["offered_rps"], s["attempt"]) for s in steps["session"][3:]] == [
        (200.0, 1),
        (200.0, 2),
    ]
    assert len(driver.asked) == 8
    # The progress lines say how often the deciding window's step was measured.
    said = [line for line in lines if line.startswith("knee")]
    assert any("session at 100 req/s" in line and "(measured 3 times)" in line for line in said)
    assert any("session at 200 req/s" in line and "(measured 2 times)" in line for line in said)


def test_the_search_goes_past_the_plan_then_bisects_the_knee_to_within_five_percent() -> None:
    from loadtests.crossover.knee import summarize

    # 100, 200, 400 planned (ladder_steps=3) all held, and 800 past the plan; 1600 failed
    # twice. Bisection: 1131 held, 1345 failed twice, 1233 held, 1288 held: 1345 / 1288 is
    # within 5 %, so the knee is 1288.
    held, past = 10.0, 80.0
    run, driver, _ = ladder(
        ["session"],
        {"session": [held, held, held, held, past, past, held, past, past, held, held]},
        refine_to=0.05,
    )
    assert [r for _, r in driver.asked] == [
        100.0, 200.0, 400.0, 800.0, 1600.0, 1600.0, 1131.0, 1345.0, 1345.0, 1233.0, 1288.0,
    ]  # fmt: skip
    knee = summarize(run.options, [m for m in MODES if m.name == "session"], run.steps)
    design = knee["designs"]["session"]
    assert design["knee_rps"] == 1288.0
    assert design["limit"] == "slo"
    assert 1345.0 / 1288.0 <= 1.05


def test_the_ladder_has_no_cap_and_its_bisections_reach_the_precision() -> None:
    options = Options(users=10, ladder_start=100, ladder_factor=2, ladder_steps=5)
    assert options.ladder() == [100, 200, 400, 800, 1600]  # no cap: the load is open-model
    for factor, precision in ((1.5, 0.05), (2.0, 0.05), (1.2, 0.02)):
        o = Options(ladder_factor=factor, refine_to=precision)
        assert factor ** (0.5 ** o.refine_steps()) <= 1 + precision
        assert factor ** (0.5 ** (o.refine_steps() - 1)) > 1 + precision


@pytest.mark.parametrize(
    "attempt, text", [(1, ": held"), (2, "(measured 2 times)"), (3, "(measured 3 times)")]
)
def test_the_progress_line_says_how_often_a_step_was_measured(attempt: int, text: str) -> None:
    from loadtests.crossover.lines import knee_line

    run, _, _ = ladder(["session"], {"session": [10.0, 80.0, 90.0]})
    step = {**run.steps["session"][0], "attempt": attempt}
    line = knee_line(1, cast(Any, step))
    assert text in line
    assert ("measured" in line) == (attempt > 1)


def test_a_window_the_generator_limited_is_not_counted_but_measured_again() -> None:
    from loadtests.crossover.knee import summarize

    # 100 held; at 200 the first window was generator-limited (fast, but not the system's
    # figure), the second held; at 400 both windows were generator-limited.
    run, driver, lines = ladder(
        ["session"],
        {"session": [10.0, 10.0, 20.0, 10.0, 10.0]},
        {"session": [False, True, False, True, True]},
    )
    assert driver.asked == [("session", r) for r in (100.0, 200.0, 200.0, 400.0, 400.0)]
    assert [(s["offered_rps"], s["held"]) for s in run.steps["session"]] == [
        (100.0, True),
        (200.0, False),
        (200.0, True),
        (400.0, False),
        (400.0, False),
    ]
    knee = summarize(run.options, [m for m in MODES if m.name == "session"], run.steps)
    design = knee["designs"]["session"]
    assert design["knee_rps"] == 200.0  # not 400: that step's windows were the generator's
    assert design["limit"] == "load generator"
    assert any("the load generator was the limit" in line for line in lines)
