"""loadtests/measure/plan.py's common rate by its numbers."""

from __future__ import annotations

import pytest

from loadtests.measure.plan import COMMON_RATE_SHARE, COMMON_RATE_STEP, common_rate


def test_the_common_rate_stays_at_the_option_where_every_knee_is_far_above_it() -> None:
    # 400 / 0.6 = 666.7: a lowest knee of 700 leaves 400 well inside
    assert common_rate(400.0, [700.0, 1_500.0, None, 900.0]) == 400.0
    assert common_rate(400.0, []) == common_rate(400.0, [None, None]) == 400.0


@pytest.mark.parametrize(
    ("knees", "rate"),
    [
        ([565.0, 1_084.0], 300.0),  # 0.6 x 565 = 339 -> 300
        ([510.0, 1_200.0], 300.0),  # 306 -> 300
        ([424.0], 250.0),  # 254.4 -> 250
        ([666.0], 350.0),  # 399.6 -> 350: never above the share
        ([60.0], COMMON_RATE_STEP),  # 36 -> one step at least
    ],
)
def test_a_slow_knee_lowers_the_common_rate_in_steps(knees: list[float], rate: float) -> None:
    chosen = common_rate(400.0, [*knees, None])
    assert chosen == rate
    assert chosen % COMMON_RATE_STEP == 0
    if min(knees) * COMMON_RATE_SHARE >= COMMON_RATE_STEP:
        assert chosen <= COMMON_RATE_SHARE * min(knees)
