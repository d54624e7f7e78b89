"""The crossover's experiments beside the load windows: revocation lag per hop and key rotation
under load (the reference points, nginx and one store shard, are in references.py)."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping, Sequence
from http.cookies import SimpleCookie
from pathlib import Path

import jwt
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack
from loadtests.bench.client import Gateway, get_status, get_text
from loadtests.bench.experiments import revocation_hops, revocation_sample
from loadtests.bench.scrape import Target
from loadtests.crossover import protocol
from loadtests.crossover.driver import LocustDriver
from loadtests.crossover.results import (
    HopLag,
    RevocationLag,
    Rotation,
)
from loadtests.crossover.servers import Idle, Servers
from loadtests.modes import Mode
from services.common import keys as keylib

# -- revocation lag -----------------------------------------------------------------------------


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
    """`samples` logouts, each polled at every hop at once (loadtests.bench.experiments
    .revocation_sample): per hop, p50/p99/max of the time from the logout's answer until the
    hop refused the old credential. A hop still accepting it at `limit_s` ends the sampling:
    the credential lives until it expires."""
    gateway = Gateway(gateway_url)
    target = Target(gateway_url, dict(services), {})
    taken: list[dict[str, float | None]] = []
    errors: list[str] = []
    until_exp = False
    for _ in range(samples):
        try:
            sample = revocation_sample(gateway, target, mode, username, limit_s)
        except (AssertionError, OSError) as error:  # a hop refused before the logout, ...
            errors.append(f"{type(error).__name__}: {error}"[:200])
            if len(errors) > 3:
                break
            continue
        taken.append({hop: lag.refused_ms for hop, lag in sample.items()})
        if any(lag.refused_ms is None for lag in sample.values()):
            until_exp = True
            break
    hops: dict[str, HopLag] = {}
    for name in taken[0] if taken else []:
        refused = [s[name] for s in taken if s.get(name) is not None]
        values = [v for v in refused if v is not None]
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


# -- key rotation under load --------------------------------------------------------------------


def kid_of(keys_dir: Path) -> str:
    return keylib.thumbprint(keylib.load_public_pem((keys_dir / "public.pem").read_bytes()))


def rotate_keys(keys_dir: Path) -> tuple[str, str]:
    """A new signing key; the old public key stays published as public-<kid>.pem (auth's key
    ring serves every public-*.pem in its JWKS), so tokens it signed verify until they expire."""
    old = kid_of(keys_dir)
    shutil.copyfile(keys_dir / "public.pem", keys_dir / f"public-{old}.pem")
    (keys_dir / "private.pem").unlink()
    (keys_dir / "public.pem").unlink()
    keylib.ensure_keypair(keys_dir)
    return old, kid_of(keys_dir)


def requests_on_route(metrics_text: str, route: str) -> int:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("route") == route:
                total += sample.value
    return int(total)


def hop_statuses(
    stack: Stack, modes: Sequence[Mode], credentials: Mapping[str, Mapping[str, str]]
) -> dict[str, int]:
    """`design hop` -> the status one GET got with that design's credential at that hop."""
    target = Target(stack.gateway_url, {n: stack.url(n) for n in stack.service_names}, {})
    out: dict[str, int] = {}
    for mode in modes:
        for hop in revocation_hops(target, mode, credentials[mode.name]):
            out[f"{mode.name} {hop.name}"] = get_status(hop.url, hop.headers)[0]
    return out


def key_rotation(
    driver: LocustDriver,
    stack: Stack,
    servers: Servers,
    idle: Idle,
    modes: Sequence[Mode],
    username: str,
    keys_dir: Path,
    rate: float,
    seconds: float,
    settle: float,
    cooldown_s: float,
) -> Rotation:
    """Every design of `modes` under load (their own task mix) while auth restarts with a new
    signing key; then every user logs in again (new tokens, the new kid). Verifiers take keys
    from auth's JWKS: the first token with the new kid makes each refetch it once."""
    gateway = Gateway(stack.gateway_url)
    verifying = [m for m in modes if m.credential.kind == "jwt" or m.exchanges]
    old_credentials = {m.name: gateway.login(m.credential, username) for m in verifying}
    kids: list[str] = []
    restart_ms: list[float] = []

    def during(control: protocol.Control) -> None:
        time.sleep(min(1.0, seconds / 4))
        started = time.perf_counter()
        kids.extend(rotate_keys(keys_dir))
        stack.restart("auth")
        restart_ms.append(round((time.perf_counter() - started) * 1000, 1))
        time.sleep(1.2)  # the gateway's health check (every second) has seen auth come back
        driver.update({**control, "relogin_at": time.time()})

    window = driver.measure(
        servers,
        idle,
        [m.name for m in modes],
        "mix",
        rate,
        max(seconds, 4.0),
        settle,
        during=during,
    )
    old_kid, new_kid = kids
    new_credentials = {m.name: gateway.login(m.credential, username) for m in verifying}
    old_status = hop_statuses(stack, verifying, old_credentials)
    new_status = hop_statuses(stack, verifying, new_credentials)
    fetches = requests_on_route(get_text(stack.auth_url + "/metrics"), "/.well-known/jwks.json")
    segment = window.segment
    ok = (
        segment["failures"] == 0
        and all(v == 200 for v in old_status.values())
        and all(v == 200 for v in new_status.values())
        and old_kid != new_kid
    )
    return {
        "designs": [m.name for m in modes],
        "rate_rps": rate,
        "old_kid": old_kid,
        "new_kid": new_kid,
        "auth_restart_ms": restart_ms[0],
        "requests": segment["requests"],
        "failures": segment["failures"],
        "errors": segment["errors"],
        "relogins": True,
        "old_token": old_status,
        "new_token": new_status,
        "jwks_fetches": fetches,
        "verifiers": 1 + len(stack.ports.orders),
        "cooldown_s": cooldown_s,
        "ok": ok,
        "segment": segment,
    }
