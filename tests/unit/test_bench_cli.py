"""`python -m loadtests.bench`'s options (loadtests/bench/cli.py): the defaults that keep
`make bench` within its 10 minutes, --long, and the designs chosen for the optional phases."""

from __future__ import annotations

import pytest

from loadtests.bench.cli import parse


def test_the_default_run_and_long() -> None:
    default = parse([])
    assert (default.duration, default.warmup, default.rounds) == (6.0, 1.5, 2)
    assert (default.trace_seconds, default.store_bench_requests) == (2.0, 40_000)
    assert default.distances == [] and default.distance_designs == ()
    long = parse(["--long"])
    assert (long.duration, long.rounds, long.trace_seconds) == (60.0, 3, 10.0)
    assert long.store_bench_requests == 200_000 and long.distances == [0.0, 0.5, 2.0]
    assert parse(["--long", "--trace-seconds", "0"]).trace_seconds == 0.0


def test_distance_designs_are_chosen_among_those_that_read_the_store() -> None:
    options = parse(["--distances", "1", "--distance-designs", "session, jwt-push"])
    assert options.distance_designs == ("session", "jwt-push")


@pytest.mark.parametrize("flag", ["--distance-designs", "--trace-designs"])
def test_an_unknown_design_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse([flag, "session,nope"])
    assert exited.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_a_design_that_never_reads_the_store_has_no_distance_phase(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse(["--distance-designs", "jwt-off"])
    assert "jwt-off" in capsys.readouterr().err
