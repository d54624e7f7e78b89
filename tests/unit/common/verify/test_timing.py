"""The Server-Timing entry format: what a service writes is what a client (tests, page) reads."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from services.common.verify import timing


def test_an_entry_reads_back_as_written() -> None:
    written = timing.entry(
        "orders",
        credential="jwt",
        carrier="header",
        cache="hit",
        store=0,
        result="ok",
        seconds=0.000012,
    )
    assert written == (
        'orders;desc="credential=jwt carrier=header cache=hit store=0 result=ok";dur=0.012'
    )
    (read,) = timing.parse([written])
    assert read.service == "orders" and read.dur_ms == pytest.approx(0.012)
    assert read.desc["cache"] == "hit" and read.desc["store"] == "0"


def test_own_entries_go_first_and_passed_on_ones_stay() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add(timing.HEADER, 'auth;desc="x=1";dur=2.5')
    headers.add(timing.HEADER, 'auth;desc="x=2";dur=1')
    timing.write(headers, ['gateway;desc="x=0";dur=0.1'])
    assert headers.getall(timing.HEADER) == [
        'gateway;desc="x=0";dur=0.1, auth;desc="x=1";dur=2.5, auth;desc="x=2";dur=1'
    ]
    assert [t.service for t in timing.parse(headers.getall(timing.HEADER))] == [
        "gateway",
        "auth",
        "auth",
    ]


@pytest.mark.parametrize("value", ["cache;dur=1", 'a;desc="x=1"', 'a;desc="x=1";dur=fast'])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a Server-Timing entry"):
        timing.parse([value])
