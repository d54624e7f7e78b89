"""Per-hop timings on the wire (W3C Server-Timing): each service's entry for its own credential
check, written by the service, and the entries of the services it called passed on with it.

On only with SERVER_TIMING=1: an entry tells whether a credential was in a cache, which is worth
hiding from strangers in production. One entry per check, one format, read by the page (the
gateway's static/page.js) and the tests alike:

    orders;desc="credential=jwt carrier=header cache=hit store=0 result=ok";dur=0.012

credential: jwt, internal (the hybrid's internal token), session or none; carrier: header or
cookie; cache: hit, miss or off (no cache for this credential here); store: session-store round
trips the check made; result: ok, refused or unavailable; dur: milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

HEADER = "Server-Timing"

# The entries a request's answer carries: the service's own, then those of services it called.
timings_key = web.RequestKey("server_timings", list[str])


def entry(
    service: str,
    *,
    credential: str,
    carrier: str,
    cache: str,
    store: int,
    result: str,
    seconds: float,
) -> str:
    desc = f"credential={credential} carrier={carrier} cache={cache} store={store} result={result}"
    return f'{service};desc="{desc}";dur={seconds * 1000:.3f}'


def write(headers: CIMultiDict[str], own: Iterable[str]) -> None:
    """Put `own` entries first in the answer's Server-Timing, before any it already passes on."""
    value = ", ".join([*own, *headers.getall(HEADER, [])])
    if value:
        headers[HEADER] = value  # replaces the passed-on fields: they are in `value` now


@dataclass(frozen=True, slots=True)
class Timing:
    """One entry as a client reads it."""

    service: str
    desc: dict[str, str]
    dur_ms: float


_ENTRY = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*;\s*desc="([^"]*)"\s*;\s*dur=([0-9.]+)\s*')


def parse(values: Iterable[str]) -> list[Timing]:
    """Every entry of the given Server-Timing field values, in order; ValueError if one is not
    in this module's format."""
    timings = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            match = _ENTRY.fullmatch(part)
            if match is None:
                raise ValueError(f"not a Server-Timing entry of ours: {part!r}")
            pairs = dict(item.split("=", 1) for item in match.group(2).split())
            timings.append(Timing(match.group(1), pairs, float(match.group(3))))
    return timings
