"""Revocation lag per hop: log out, then poll every hop at once with the old credential until
each refuses it (401). The hops are the gateway and, on the bench's own stack, every service
behind it on its own address with the credential that service sees."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TypedDict

import jwt

from loadtests.measure.client import Gateway, get_status, internal_token
from loadtests.modes import Mode


class HopLag(TypedDict):
    """One hop over a run's logouts: ms from each logout's answer until the hop refused."""

    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    refused: int  # samples refused before the limit
    never_refused: int  # samples still accepted when polling stopped


class RevocationLag(TypedDict):
    samples: int
    limit_s: float
    jwt_revocation: str
    until_exp: bool  # some hop kept accepting: the credential lives until it expires
    token_lifetime_s: float | None  # the access token's expires_in (JWT credentials)
    hops: dict[str, HopLag]  # gateway, auth, orders-1, orders-2, ...
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Hop:
    """One service asked, with the credential it sees, whether the credential still works."""

    name: str
    url: str  # the whole URL of the GET
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One hop's answer to one logout: ms from the logout's answer until the first refusal
    (401) was answered (None: still accepted at the limit), and the polls it still accepted."""

    refused_ms: float | None
    accepted: int
    polls: int


def hops_of(
    gateway_url: str, services: Mapping[str, str], mode: Mode, headers: Mapping[str, str]
) -> list[Hop]:
    """The gateway, then every service of `services` (name -> base URL) with the credential it
    sees: the client's own, or for the hybrid an internal token minted for the session (auth
    keeps the cookie, but auth ends the session itself)."""
    hops = [Hop("gateway", gateway_url + "/orders?limit=1", headers)]
    inside: Mapping[str, str] = headers
    if mode.exchanges and "auth" in services:
        token = internal_token(services["auth"], headers["Cookie"])
        inside = {"Authorization": f"Bearer {token}"}
    for name, url in services.items():
        if name != "gateway":
            hops.append(Hop(name, url + ("/me" if name == "auth" else "/orders?limit=1"), inside))
    return hops


def poll_until_refused(hop: Hop, started: float, limit: float) -> Refusal:
    accepted = polls = 0
    while time.perf_counter() - started < limit:
        polls += 1
        code, _ = get_status(hop.url, hop.headers)
        if code == 401:
            return Refusal(round((time.perf_counter() - started) * 1000, 2), accepted, polls)
        accepted += code == 200
    return Refusal(None, accepted, polls)


def sample(
    gateway: Gateway, services: Mapping[str, str], mode: Mode, username: str, limit: float
) -> dict[str, Refusal]:
    """Log in, use the credential at every hop, log out, then poll every hop at once (a thread
    each) with the old credential until each refuses it (401) or `limit` s pass."""
    headers = gateway.login(mode.credential, username)
    hops = hops_of(gateway.url, services, mode, headers)
    for hop in hops:  # every verifier has seen it (and, with a cache, holds it)
        code, _ = get_status(hop.url, hop.headers)
        assert code == 200, (mode.name, hop.name, code)
    with ThreadPoolExecutor(max_workers=len(hops)) as pool:
        status = gateway.logout(headers)
        assert status == 204, (mode.name, status)
        started = time.perf_counter()
        futures = {hop.name: pool.submit(poll_until_refused, hop, started, limit) for hop in hops}
        return {name: future.result() for name, future in futures.items()}


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 2)


def access_token(headers: Mapping[str, str]) -> str | None:
    """The JWT a client's headers carry: the bearer token, or the `at` cookie."""
    bearer = headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return bearer.removeprefix("Bearer ")
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers.get("Cookie", ""))
    return jar["at"].value if "at" in jar else None


def token_lifetime_s(headers: Mapping[str, str]) -> float | None:
    token = access_token(headers)
    if token is None:
        return None
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["exp"]) - float(claims["iat"])


def revocation_lags(
    gateway_url: str,
    services: Mapping[str, str],
    mode: Mode,
    username: str,
    samples: int,
    limit_s: float,
) -> RevocationLag:
    """`samples` logouts, each polled at every hop at once: per hop, p50/p99/max of the time
    from the logout's answer until the hop refused the old credential. A hop still accepting it
    at `limit_s` ends the sampling: the credential lives until it expires."""
    gateway = Gateway(gateway_url)
    taken: list[dict[str, float | None]] = []
    errors: list[str] = []
    until_exp = False
    for _ in range(samples):
        try:
            found = sample(gateway, services, mode, username, limit_s)
        except (AssertionError, OSError) as error:  # a hop refused before the logout, ...
            errors.append(f"{type(error).__name__}: {error}"[:200])
            if len(errors) > 3:
                break
            continue
        taken.append({hop: refusal.refused_ms for hop, refusal in found.items()})
        if any(refusal.refused_ms is None for refusal in found.values()):
            until_exp = True
            break
    hops: dict[str, HopLag] = {}
    for name in taken[0] if taken else []:
        values = [v for v in (s.get(name) for s in taken) if v is not None]
        hops[name] = {
            "p50_ms": nearest_rank(values, 0.50),
            "p99_ms": nearest_rank(values, 0.99),
            "max_ms": round(max(values), 2) if values else None,
            "refused": len(values),
            "never_refused": len(taken) - len(values),
        }
    lifetime = None
    if mode.credential.kind == "jwt":
        lifetime = token_lifetime_s(gateway.login(mode.credential, username))
    return {
        "samples": len(taken),
        "limit_s": limit_s,
        "jwt_revocation": mode.revocation,
        "until_exp": until_exp,
        "token_lifetime_s": lifetime,
        "hops": hops,
        "errors": errors,
    }
