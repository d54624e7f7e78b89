"""The bench's relay chain on a real stack: auth, one orders replica, relays, the gateway."""

from __future__ import annotations

from devstack.stack import Stack
from tests.stackutil import Api

HANDED_OFF = {"X-Note": "a\tb"}  # a tab: the gateway's fast path hands the request to aiohttp's


async def per_relay(api: Api, stack: Stack, name: str, **labels: str) -> list[float]:
    """A metric's sum at each relay, relay-1 first."""
    return [await api.metric(url, name, **labels) for url in stack.relay_urls]


async def relay_checks(api: Api, stack: Stack, **labels: str) -> list[float]:
    """Credential checks each relay made (auth_checks_total), relay-1 first."""
    return await per_relay(api, stack, "auth_checks_total", **labels)


def deltas(after: list[float], before: list[float]) -> list[float]:
    return [a - b for a, b in zip(after, before, strict=True)]
