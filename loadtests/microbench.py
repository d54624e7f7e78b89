"""Raw primitives next to the project's own verifier calls, in one run, as ratios.

`make microbench` prints, per call: wall-clock and CPU microseconds of RSA-2048 verify
(cryptography), a bare PyJWT decode, the Verifier's JWT path on a cache miss and on a hit,
a bare redis-py asyncio GET and the Verifier's session path (a store read), a bare dict look-up
and the Verifier's session path on a cache hit (SESSION_CACHE=push, the push stream connected);
plus the two login primitives (RS256 signing vs creating a session). Each figure is the median
of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from devstack.stores import RedisServer
from loadtests.bench.results import MicrobenchRow
from services.common import keys as keylib
from services.common.keyspace import session_key
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.store import make_redis
from services.common.verify import Verifier
from services.common.verify.sessions import SessionRecord

ISSUER, AUDIENCE = "http://authscale-auth", "authscale"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    wall_us: float
    cpu_us: float
    baseline: str | None = None  # the primitive this row is compared with

    def as_dict(self) -> MicrobenchRow:
        return {
            "name": self.name,
            "wall_us": self.wall_us,
            "cpu_us": self.cpu_us,
            "baseline": self.baseline,
        }


def _measure_sync(fn: Callable[[], object], n: int, rounds: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        walls.append((time.perf_counter() - w) / n * 1e6)
        cpus.append((time.process_time() - c) / n * 1e6)
    return statistics.median(walls), statistics.median(cpus)


async def _measure_async(
    fn: Callable[[], Awaitable[object]], n: int, rounds: int
) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            await fn()
        walls.append((time.perf_counter() - w) / n * 1e6)
        cpus.append((time.process_time() - c) / n * 1e6)
    return statistics.median(walls), statistics.median(cpus)


async def run(n: int = 2000, rounds: int = 5) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="authscale-microbench-") as tmp:
        redis_server = RedisServer(Path(tmp))
        redis_server.start()
        try:
            return await _run(redis_server.url, n, rounds)
        finally:
            redis_server.stop()


async def _run(redis_url: str, n: int, rounds: int) -> list[Row]:
    private = keylib.generate_private_key()
    public = private.public_key()
    kid = keylib.thumbprint(public)
    now = int(time.time())

    def token() -> str:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "u1",
            "username": "bench",
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})

    access = token()
    signing_input, _, sig_b64 = access.rpartition(".")
    signature = jwt.utils.base64url_decode(sig_b64)
    redis = make_redis(redis_url, 0.5)
    settings = VerifierSettings(
        issuer=ISSUER, audience=AUDIENCE, revocation="off", session_store_url=redis_url
    )
    cold = Verifier(
        VerifierSettings(issuer=ISSUER, audience=AUDIENCE, revocation="off", token_cache_size=0),
        Metrics("bench-cold"),
        None,
        static_keys={kid: public},
    )
    warm = Verifier(settings, Metrics("bench-warm"), redis, static_keys={kid: public})
    assert warm.sessions is not None
    sid, _ = await warm.sessions.create("u1", "bench", None)
    cached = Verifier(
        VerifierSettings(
            issuer=ISSUER,
            audience=AUDIENCE,
            revocation="off",
            session_store_url=redis_url,
            data_store_url=redis_url,
            session_cache="push",
        ),
        Metrics("bench-cached"),
        redis,
        static_keys={kid: public},
    )
    await cached.start()
    # The cache is trusted (and filled) only once the push stream is subscribed.
    async with asyncio.timeout(5):
        await cached.stream.connected.wait()
    await cached.authenticate_session(sid)  # the miss that fills it
    assert cached.sessions is not None and cached.sessions.cache is not None
    assert len(cached.sessions.cache) == 1, "the session cache did not take the session"
    await redis.set("plain", b"x" * 120)

    rows: list[Row] = []

    def add(name: str, figures: tuple[float, float], baseline: str | None = None) -> None:
        rows.append(Row(name, round(figures[0], 2), round(figures[1], 2), baseline))

    add(
        "RSA-2048 verify (cryptography)",
        _measure_sync(
            lambda: public.verify(
                signature, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
            ),
            n,
            rounds,
        ),
    )
    add(
        "PyJWT decode (bare)",
        _measure_sync(
            lambda: jwt.decode(
                access, public, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
            ),
            n,
            rounds,
        ),
    )
    add(
        "Verifier JWT, cache miss",
        _measure_sync(lambda: cold.verify_token(access), n, rounds),
        "PyJWT decode (bare)",
    )
    warm.verify_token(access)
    add(
        "Verifier JWT, cache hit",
        _measure_sync(lambda: warm.verify_token(access), n * 20, rounds),
        "PyJWT decode (bare)",
    )
    add("redis-py asyncio GET (bare)", await _measure_async(lambda: redis.get("plain"), n, rounds))
    add(
        "Verifier session lookup",
        await _measure_async(lambda: warm.authenticate_session(sid), n, rounds),
        "redis-py asyncio GET (bare)",
    )
    table = {f"session-{i}": i for i in range(1000)} | {sid: 1}
    add("bare dict look-up", _measure_sync(lambda: table.get(sid), n * 20, rounds))
    add(
        "Verifier session lookup, cache hit",
        await _measure_async(lambda: cached.authenticate_session(sid), n * 20, rounds),
        "bare dict look-up",
    )
    add("login: RS256 sign (PyJWT encode)", _measure_sync(token, max(n // 10, 50), rounds))

    async def create_session() -> None:
        new = secrets.token_urlsafe(32)
        record = SessionRecord(
            sub="u1", username="bench", csrf=secrets.token_urlsafe(32), created_at=time.time()
        )
        await redis.set(session_key(new), record.to_json(), ex=60)

    add(
        "login: create session (SET)",
        await _measure_async(create_session, n, rounds),
        "login: RS256 sign (PyJWT encode)",
    )
    await cached.close()
    await warm.close()
    await redis.aclose()
    return rows


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def render(rows: list[Row]) -> str:
    by_name = {r.name: r for r in rows}
    lines = [
        "| call | wall us/call | CPU us/call | ratio to baseline (wall) |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        ratio = ""
        if r.baseline:
            base = by_name[r.baseline]
            ratio = f"{r.wall_us / base.wall_us:.2f}x {r.baseline}"
        lines.append(f"| {r.name} | {_us(r.wall_us)} | {_us(r.cpu_us)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = asyncio.run(run(args.n, args.rounds))
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else render(rows))


if __name__ == "__main__":
    main()
