"""Raw primitives next to the project's own verifier calls, in one run, as ratios.

`make microbench` prints, per call: wall-clock and CPU microseconds of RSA-2048 verify
(cryptography), a bare PyJWT decode, the Verifier's JWT path on a cache miss and on a hit,
the read of a Cookie field that carries a JWT (aiohttp's parser, as the services read it),
a bare redis-py asyncio GET and the Verifier's session path (a store read), a bare dict look-up
and the Verifier's session path on a cache hit (SESSION_CACHE=push, the push stream connected);
plus the two login primitives (RS256 signing vs creating a session). Each figure is the median
of several rounds. The rows "(paced)" make the checks the bench's designs run one every
`--gap-ms` (a relay's pace in the bench's chain), the process idle between as a service's is,
each call timed on its own less the same timing around no call: the bench's per-check figure
(check_us; a JWT carried by a cookie is its check and the Cookie field's read).

A session check and the bare GET it is compared with both wait for redis-server, which shares
the machine's cores: measured one after the other, a change in the machine's speed between the
two blocks moved their ratio from 0.7x to 1.8x in back-to-back runs. That pair is measured in
alternating blocks instead (the order swapped each round), and its ratio is the median of the
rounds' ratios, of wall-clock and of this process's CPU. Even paired, that ratio read 1.05x
to 1.6x within one hour here, so where valgrind is installed the pair is also counted in
instructions per call (loadtests/instructions.py), which do not move with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NotRequired, TypedDict, cast

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from devstack.stores import RedisServer
from loadtests import instructions
from loadtests.load.affinity import available_cpus, kept_awake, pin, split
from loadtests.measure.plan import Options
from services.auth.tokens import access_claims
from services.common import keys as keylib
from services.common.aiohttp_internals import cookie_jar
from services.common.keyspace import session_key
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.store import make_redis
from services.common.verify import Verifier
from services.common.verify.csrf import csrf_digest
from services.common.verify.sessions import SessionRecord

ISSUER, AUDIENCE = "http://authscale-auth", "authscale"


class MicrobenchRow(TypedDict):
    """One row as results.json records it (method.microbench)."""

    name: str
    wall_us: float
    cpu_us: float
    baseline: str | None  # the primitive this row is compared with
    # Measured in alternating blocks with the baseline: the median of the rounds' ratios.
    ratio_wall: NotRequired[float]
    ratio_cpu: NotRequired[float]
    instructions: NotRequired[float]  # per call, user space (callgrind), where counted


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    wall_us: float
    cpu_us: float
    baseline: str | None = None  # the primitive this row is compared with
    # Measured in alternating blocks with the baseline: the median of the rounds' ratios.
    paired: tuple[float, float] | None = None  # wall, CPU
    instructions: float | None = None  # per call, user space (callgrind)

    def as_dict(self) -> MicrobenchRow:
        row: MicrobenchRow = {
            "name": self.name,
            "wall_us": self.wall_us,
            "cpu_us": self.cpu_us,
            "baseline": self.baseline,
        }
        if self.paired is not None:
            row["ratio_wall"], row["ratio_cpu"] = self.paired
        if self.instructions is not None:
            row["instructions"] = self.instructions
        return row

    def ratio(self, baseline: Row) -> float:
        """Wall-clock over the baseline's: the paired figure where there is one."""
        return self.paired[0] if self.paired is not None else self.wall_us / baseline.wall_us


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


@dataclass(frozen=True, slots=True)
class Paired:
    """A call and its baseline measured in alternating blocks."""

    call: tuple[float, float]  # median wall, CPU us per call
    baseline: tuple[float, float]
    ratio: tuple[float, float]  # median of the rounds' ratios: wall, CPU


async def _measure_paired(
    fn: Callable[[], Awaitable[object]],
    baseline: Callable[[], Awaitable[object]],
    n: int,
    rounds: int,
) -> Paired:
    """`fn` and `baseline`, `n` calls each per round, alternating (the order swapped each
    round), so that a change in the machine's speed lands on both sides of a round's ratio."""
    figures: dict[str, list[tuple[float, float]]] = {"fn": [], "baseline": []}
    for turn in range(rounds):
        order = (("fn", fn), ("baseline", baseline))
        for name, call in order if turn % 2 == 0 else order[::-1]:
            w, c = time.perf_counter(), time.process_time()
            for _ in range(n):
                await call()
            figures[name].append(
                ((time.perf_counter() - w) / n * 1e6, (time.process_time() - c) / n * 1e6)
            )

    def median(name: str, index: int) -> float:
        return statistics.median(f[index] for f in figures[name])

    def ratio(index: int) -> float:
        return statistics.median(
            a[index] / b[index]
            for a, b in zip(figures["fn"], figures["baseline"], strict=True)
            if b[index] > 0
        )

    return Paired(
        (median("fn", 0), median("fn", 1)),
        (median("baseline", 0), median("baseline", 1)),
        (ratio(0), ratio(1)),
    )


async def _measure_paced(
    calls: Mapping[str, Callable[[], Awaitable[object]]], gap_s: float, n: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Wall-clock and CPU us of each of `calls` made `gap_s` apart, the process idle between
    (as a service's is between the requests it serves): each call timed on its own, from just
    before it to its answer, less the same timing around no call (the clocks' own cost).

    In a tight loop every call finds the caches, the branch predictors and the event loop as the
    previous call left them; in a service each check follows a wait. Each round runs a block of
    `n` calls of every kind and of the empty call, the order rotated each round; a call's
    figure is the median over the rounds of its block's mean less that round's empty block's.

    Timed around the call alone, not over the whole block less an empty block: a block's
    wake-ups from the waits cost 140-180 us a call here, and the machine's speed moving by a
    few per cent between two blocks moved a cached JWT check's figure from -32 to +44 us in
    three runs of one hour (timed alone: 10-16 us). What a call costs in the event loop before
    its answer comes back (a session check's read of the store's reply) is inside its timing;
    what it leaves for later is not: a task it spawns that runs in the next wait (the session
    check's sliding-expiry EXPIRE, once a minute a session: nothing at this pace), a garbage
    collection its allocations start in the wait, what it costs the next wake-up in caches."""

    async def nothing() -> None:
        return None

    empty_name = object()  # the empty call's key: no call's name can be it
    series: list[tuple[object, Callable[[], Awaitable[object]]]] = [
        (empty_name, nothing),
        *calls.items(),
    ]
    figures: dict[object, list[tuple[float, float]]] = {name: [] for name, _ in series}
    for turn in range(rounds):
        shift = turn % len(series)
        for name, call in series[shift:] + series[:shift]:
            wall = cpu = 0.0
            for _ in range(n):
                await asyncio.sleep(gap_s)
                w, c = time.perf_counter(), time.process_time()
                await call()
                cpu += time.process_time() - c
                wall += time.perf_counter() - w
            figures[name].append((wall / n * 1e6, cpu / n * 1e6))
    empty = figures.pop(empty_name)
    return {
        cast(str, name): (
            statistics.median(f[0] - e[0] for f, e in zip(each, empty, strict=True)),
            statistics.median(f[1] - e[1] for f, e in zip(each, empty, strict=True)),
        )
        for name, each in figures.items()
    }


# The checks the bench's designs make: rows measured back to back and, as paced(name), paced.
JWT_HIT = "Verifier JWT, cache hit"
SESSION_LOOKUP = "Verifier session lookup"
SESSION_HIT = "Verifier session lookup, cache hit"
# What a JWT carried by a cookie costs before its check: the Cookie field read as every
# service reads it (web.Request.cookies; the gateway's fast path: cookie_jar), a regular
# expression over the whole token. A session's cookie (a 43-character value) is not priced:
# its read costs about half the JWT's back to back (the parser's fixed part), within the plain
# session check's scatter but not small beside a cached session check.
COOKIE_READ = "Cookie field read, a JWT in it (aiohttp's parser)"


PACED_CHECKS = (JWT_HIT, COOKIE_READ, SESSION_LOOKUP, SESSION_HIT)  # what `run` also paces
PACED_TIMING = "per call"  # how _measure_paced times (MicrobenchPlacement.timing)


def paced(name: str) -> str:
    """The name of a check's row measured by _measure_paced."""
    return f"{name} (paced)"


class MicrobenchPlacement(TypedDict):
    """Where the micro-benchmark ran (results.json: method.microbench_placement)."""

    cpus: list[int]  # the CPUs it was pinned to; empty where nothing could be pinned
    kept_awake: bool  # an idle-priority spinner on each of them
    gap_ms: NotRequired[float]  # the paced rows' wait between calls
    # How a paced row was timed: "per call" (PACED_TIMING, from 2026-12-07); absent: each
    # block whole, waits included, less an empty block.
    timing: NotRequired[str]


async def run(
    n: int = 2000, rounds: int = 5, instruction_calls: int = 200, gap_s: float | None = None
) -> list[Row]:
    """The rows; instruction_calls > 0 also counts the session check and its GET in
    instructions (where valgrind is installed)."""
    with tempfile.TemporaryDirectory(prefix="authscale-microbench-") as tmp:
        redis_server = RedisServer(Path(tmp))
        redis_server.start()
        try:
            rows = await _run(redis_server.url, n, rounds, gap_s)
            if instruction_calls > 0:
                figures, note = await asyncio.to_thread(
                    instructions.count, redis_server.url, instruction_calls
                )
                rows = with_instructions(rows, figures, note)
            return rows
        finally:
            redis_server.stop()


INSTRUCTION_ROWS = {"get": "redis-py asyncio GET (bare)", "lookup": "Verifier session lookup"}


def with_instructions(
    rows: list[Row], figures: dict[str, list[float]] | None, note: str
) -> list[Row]:
    """The rows with the counted pair's instructions per call (the lower of its two rounds);
    the note is printed either way."""
    print(f"instructions: {note}", file=sys.stderr)
    if figures is None:
        return rows
    counted = {INSTRUCTION_ROWS[name]: round(min(each)) for name, each in figures.items()}
    return [replace(r, instructions=counted.get(r.name)) for r in rows]


async def _run(redis_url: str, n: int, rounds: int, gap_s: float | None) -> list[Row]:
    private = keylib.generate_private_key()
    public = private.public_key()
    kid = keylib.thumbprint(public)
    now = int(time.time())

    def token(csrf: str | None = None) -> str:
        """An access token as auth signs one (services.auth.tokens.access_claims): the cookie
        carrier's has the digest of its CSRF token too."""
        claims = access_claims(
            ISSUER,
            AUDIENCE,
            uuid.uuid4().hex,
            "bench-user-0",
            uuid.uuid4().hex,
            uuid.uuid4().hex,
            now,
            now + 3600,
            csrf,
        )
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

    def add(
        name: str,
        figures: tuple[float, float],
        baseline: str | None = None,
        paired: tuple[float, float] | None = None,
    ) -> None:
        ratio = None if paired is None else (round(paired[0], 3), round(paired[1], 3))
        rows.append(Row(name, round(figures[0], 2), round(figures[1], 2), baseline, ratio))

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
        JWT_HIT,
        _measure_sync(lambda: warm.verify_token(access), n * 20, rounds),
        "PyJWT decode (bare)",
    )
    # The jwt-cookie design's Cookie field: its access token, the CSRF token's digest in it.
    in_cookie = token(csrf_digest(secrets.token_urlsafe(32)))
    cookie = f"{settings.access_cookie_name}={in_cookie}"
    assert cookie_jar(cookie) == {settings.access_cookie_name: in_cookie}
    add(COOKIE_READ, _measure_sync(lambda: cookie_jar(cookie), n * 20, rounds))
    # Blocks of a quarter of n, four times as many rounds: the same calls, finer alternation.
    lookup = await _measure_paired(
        lambda: warm.authenticate_session(sid),
        lambda: redis.get("plain"),
        max(n // 4, 1),
        max(rounds * 4, 6),
    )
    add("redis-py asyncio GET (bare)", lookup.baseline)
    add(
        SESSION_LOOKUP,
        lookup.call,
        "redis-py asyncio GET (bare)",
        lookup.ratio,
    )
    table = {f"session-{i}": i for i in range(1000)} | {sid: 1}
    add("bare dict look-up", _measure_sync(lambda: table.get(sid), n * 20, rounds))
    add(
        SESSION_HIT,
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
    if gap_s is not None:

        async def jwt_hit() -> None:
            warm.verify_token(access)

        async def cookie_read() -> None:
            cookie_jar(cookie)

        checks: dict[str, Callable[[], Awaitable[object]]] = {
            JWT_HIT: jwt_hit,
            COOKIE_READ: cookie_read,
            SESSION_LOOKUP: lambda: warm.authenticate_session(sid),
            SESSION_HIT: lambda: cached.authenticate_session(sid),
        }
        assert tuple(checks) == PACED_CHECKS
        figures = await _measure_paced(
            checks,
            gap_s,
            paced_calls(n),
            rounds,
        )
        for name, measured in figures.items():
            add(paced(name), measured, name)
    await cached.close()
    await warm.close()
    await redis.aclose()
    return rows


@contextlib.contextmanager
def placed_as_the_system(keep_awake: bool = True) -> Iterator[MicrobenchPlacement]:
    """This process, and the redis-server a run inside the block starts, on the CPUs the bench
    gives the system (affinity.split), kept out of halt where the bench keeps them (only when
    load and system have CPUs of their own): where and how a relay and its store make their
    checks in the bench's windows. Yields the placement, as results.json records it
    (method.microbench_placement); every thread of this process gets its CPUs back after."""
    before = available_cpus()
    plan = split(before)
    try:
        pinned = pin([os.getpid()], plan.system_cpus)
        awake = keep_awake and pinned and plan.isolated
        with kept_awake(plan.system_cpus) if awake else contextlib.nullcontext(()) as spinners:
            yield {"cpus": list(plan.system_cpus) if pinned else [], "kept_awake": bool(spinners)}
    finally:
        pin([os.getpid()], before)


PACED_SHARE = 25  # a paced block makes 1/25 of a tight block's calls: each waits the gap


def paced_calls(n: int) -> int:
    """Calls per paced block for `n` per tight block (at least 8)."""
    return max(n // PACED_SHARE, 8)


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
            ratio = f"{r.ratio(by_name[r.baseline]):.2f}x {r.baseline}"
            if r.paired is not None:
                ratio += f" (paired rounds; CPU {r.paired[1]:.2f}x)"
            base = by_name[r.baseline]
            if r.instructions is not None and base.instructions:
                ratio += f"; {r.instructions / base.instructions:.2f}x in instructions"
        lines.append(f"| {r.name} | {_us(r.wall_us)} | {_us(r.cpu_us)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-n", type=int, default=2000, help="calls per round (a paced block: 1/25 of them)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=round(1e3 / Options().chain_rps, 3),
        help="the paced rows' wait between calls, > 0 (default: %(default)s, a relay's in the "
        "bench's chain)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--anywhere",
        action="store_true",
        help="run where the OS puts it (default: on the bench system's CPUs, kept awake)",
    )
    args = parser.parse_args()
    if not args.gap_ms > 0:
        parser.error("--gap-ms must be above 0")
    with contextlib.ExitStack() as placement:
        if not args.anywhere:
            where = placement.enter_context(placed_as_the_system())
            print(f"on CPUs {where['cpus']}, kept awake: {where['kept_awake']}", file=sys.stderr)
        rows = asyncio.run(run(args.n, args.rounds, gap_s=args.gap_ms / 1e3))
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else render(rows))


if __name__ == "__main__":
    main()
