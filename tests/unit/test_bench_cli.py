"""`python -m loadtests.bench`'s options (loadtests/bench/cli.py): the defaults that keep
`make bench` within its 10 minutes, --long, and the designs chosen for the optional phases."""

from __future__ import annotations

import pytest

from loadtests.bench.cli import parse
from loadtests.bench.run import chosen
from loadtests.modes import MODES


def test_the_default_run_and_long() -> None:
    default = parse([])
    assert (default.duration, default.warmup, default.rounds) == (6.0, 1.5, 2)
    assert (default.trace_seconds, default.store_bench_requests) == (2.0, 40_000)
    assert default.distances == [] and default.distance_designs == ()
    long = parse(["--long"])
    assert (long.duration, long.rounds, long.trace_seconds) == (60.0, 3, 10.0)
    assert long.store_bench_requests == 200_000 and long.distances == [0.0, 0.5, 2.0]
    assert long.distance_duration == 30.0


def test_a_value_given_is_kept_under_long() -> None:
    given = ["--long", "--duration", "20", "--trace-seconds", "3"]
    given += ["--store-bench-requests", "50000", "--distances", "1"]
    options = parse(given)
    assert (options.duration, options.trace_seconds) == (20.0, 3.0)
    assert (options.store_bench_requests, options.distances) == (50_000, [1.0])
    # Tracing stays off when asked, with or without --long.
    assert parse(["--long", "--trace-seconds", "0"]).trace_seconds == 0.0
    assert parse(["--long", "--trace-seconds", "-1"]).trace_seconds == 0.0


def test_designs_chosen_for_the_optional_phases() -> None:
    options = parse(["--distances", "1", "--distance-designs", "hybrid, session"])
    assert options.distance_designs == ("hybrid", "session")
    # In the table's order, whatever the order given; all of them when none is named.
    assert [m.name for m in chosen(MODES, options.distance_designs)] == ["session", "hybrid"]
    assert chosen(MODES, ()) == list(MODES)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--trace-designs", "session,nope"], "nope"),
        (["--distances", "1", "--distance-designs", "session,nope"], "nope"),
        # jwt-off never reads the store: it has no distance phase.
        (["--distances", "1", "--distance-designs", "jwt-off"], "jwt-off"),
        # Designs for a distance phase that is not asked for.
        (["--distance-designs", "session"], "--distances"),
    ],
)
def test_bad_choices_are_refused(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err
