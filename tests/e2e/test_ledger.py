"""The ledger: nothing acknowledged is lost or doubled while the stack fails (as Jepsen checks a
store). Clients create orders through the gateway, each with an Idempotency-Key of its own named
in its body and retried with that key on 502/503/504, timeouts and broken connections, while
orders replicas are killed (one at once, one after hanging), the data store stalls and loses its
connections, auth restarts and the session store stalls. Afterwards every order answered 201
exists exactly once, no key made two orders, and those users own no order nobody asked for.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pytest
from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar

from devstack.stack import Stack
from devstack.stores import redis_probe
from services.common.keyspace import ORDER_PREFIX, order_key, owner_index
from tests.stackutil import Api, running

USERS = 4
CLIENTS_PER_USER = 2  # two writers per user: the owner's index sees concurrent writes
# A client's pause between two orders: enough writes to meet every fault, few enough to leave
# a shared 2-CPU machine room for the restarts.
PACE_SECONDS = 0.1
# Above the gateway's upstream deadline (UPSTREAM_TIMEOUT_SECONDS, 5 s): the client gives up
# only on a gateway that does not answer at all.
REQUEST_TIMEOUT = ClientTimeout(total=8, connect=2)
KEY_DEADLINE_SECONDS = 25.0  # one key's retries, all told
MAX_ATTEMPTS = 40
RENEW_BEFORE_SECONDS = 30.0  # a token this close to its exp is replaced by a new login
RECOVERY_SECONDS = 30.0  # the longest a fault may keep writes from being acknowledged
# Failures a client may retry with the same key; "timeout" and "connection" are the client's own.
RETRYABLE = {"502", "503", "504", "timeout", "connection"}
ALLOWED = RETRYABLE | {"201"}


@dataclass
class User:
    name: str
    id: str
    headers: dict[str, str] = field(default_factory=dict)
    renew_at: float = 0.0  # monotonic: log in again from here on


@dataclass
class KeyRecord:
    user: User
    key: str
    attempts: int = 0
    outcomes: list[str] = field(default_factory=list)
    order_id: str | None = None  # set by the 201
    sent: float = 0.0  # wall clock (the services' clock too) when the last attempt started

    @property
    def final(self) -> str:
        return self.outcomes[-1] if self.outcomes else "unsent"


@dataclass
class Ledger:
    """Every key the clients used, and what the gateway answered for it, phase by phase."""

    phase: str = "before faults"
    records: dict[str, KeyRecord] = field(default_factory=dict)
    acknowledged: int = 0
    failures: int = 0  # retryable answers
    outcomes: Counter[str] = field(default_factory=Counter)
    by_phase: dict[str, Counter[str]] = field(default_factory=dict)
    wrong_answers: list[str] = field(default_factory=list)  # 201 bodies that are not this order
    no_retry_after: int = 0
    logins: int = 0

    def count(self, phase: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.by_phase.setdefault(phase, Counter())[outcome] += 1

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.by_phase.setdefault(phase, Counter())

    async def until(self, done: Callable[[], bool], what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, f"{what} within {seconds:g} s ({self.phase})"
            await asyncio.sleep(0.02)

    async def refusals(self, failures: int) -> None:
        """Wait until this many more writes have failed: the fault has met the writers."""
        target = self.failures + failures
        await self.until(lambda: self.failures >= target, "writes refused", RECOVERY_SECONDS)

    async def progress(self, acknowledgements: int) -> None:
        """Wait until this many more orders are acknowledged: the stack writes again."""
        target = self.acknowledged + acknowledgements
        await self.until(
            lambda: self.acknowledged >= target, "writes acknowledged again", RECOVERY_SECONDS
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    """A stack only this test breaks. Tokens live 40 s, renewed 30 s before they expire: the
    clients log in again during the run, some while auth restarts."""
    yield from running(tmp_path_factory.mktemp("ledger"), ACCESS_TOKEN_SECONDS="40")


async def log_in(api: Api, ledger: Ledger, user: User) -> None:
    """A bearer token for this user, retried while auth restarts (a JWT outlives that)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        try:
            response, body = await api.call(
                "POST", "/auth/token", json={"username": user.name, "password": "correct horse"}
            )
        except TimeoutError:
            outcome = "timeout"
        except ClientError:
            outcome = "connection"
        else:
            if response.status == 200:
                user.headers = {"Authorization": f"Bearer {body['access_token']}"}
                user.renew_at = time.monotonic() + body["expires_in"] - RENEW_BEFORE_SECONDS
                ledger.logins += 1
                return
            outcome = str(response.status)
        assert outcome in RETRYABLE and time.monotonic() < deadline, f"login answered {outcome}"
        await asyncio.sleep(0.1)


async def place(api: Api, ledger: Ledger, user: User, key: str) -> None:
    """Create one order, retrying the same request with the same key until a 201 or a final
    answer, at most MAX_ATTEMPTS times within KEY_DEADLINE_SECONDS."""
    record = ledger.records[key] = KeyRecord(user, key)
    body = {"item": key, "quantity": 1}
    deadline = time.monotonic() + KEY_DEADLINE_SECONDS
    while True:
        if time.monotonic() >= user.renew_at:
            await log_in(api, ledger, user)
        phase = ledger.phase
        record.attempts += 1
        record.sent = time.time()
        try:
            response, answer = await api.call(
                "POST", "/orders", headers={**user.headers, "Idempotency-Key": key}, json=body
            )
        except TimeoutError:
            outcome = "timeout"
        except ClientError:
            outcome = "connection"
        else:
            outcome = str(response.status)
            if response.status == 503 and not response.headers.get("Retry-After"):
                ledger.no_retry_after += 1
        record.outcomes.append(outcome)
        ledger.count(phase, outcome)
        if outcome == "201":
            record.order_id = answer["id"]
            if (answer["item"], answer["quantity"], answer["owner"]) != (key, 1, user.id):
                ledger.wrong_answers.append(f"{key}: {answer}")
            ledger.acknowledged += 1
            return
        if outcome not in RETRYABLE:
            return
        ledger.failures += 1
        if record.attempts >= MAX_ATTEMPTS or time.monotonic() >= deadline:
            return
        await asyncio.sleep(min(0.05 * record.attempts, 0.5))  # back off, as a client would


async def write(api: Api, ledger: Ledger, user: User, client: int, stop: asyncio.Event) -> None:
    sequence = 0
    while not stop.is_set():
        await place(api, ledger, user, f"ledger-{user.name}-{client}-{sequence}-{uuid.uuid4().hex}")
        sequence += 1
        await asyncio.sleep(PACE_SECONDS)


def restore(stack: Stack, name: str) -> None:
    stack.start_component(name)
    stack.wait_ready(name, RECOVERY_SECONDS)


async def break_things(stack: Stack, ledger: Ledger, stop: asyncio.Event) -> dict[str, int]:
    """The faults, one after another while the clients write, each restored (and writes seen
    acknowledged again) before the next. Blocking harness calls run in a thread, so the clients
    keep writing through them. Answers how many data-store connections each kill cut."""
    killed: dict[str, int] = {}
    writers = USERS * CLIENTS_PER_USER
    await ledger.progress(writers)

    ledger.enter("orders-1 killed")
    await asyncio.to_thread(stack.kill, "orders-1")  # SIGKILL: requests in flight die with it
    await ledger.progress(writers * 2)
    ledger.enter("orders-1 restarted")
    await asyncio.to_thread(restore, stack, "orders-1")
    await ledger.progress(writers * 2)

    # A replica that hangs and then dies: the requests sent to it meanwhile are surely in
    # flight when it is killed, and the gateway must fail them over (they carry a key).
    stack.send_signal("orders-2", signal.SIGSTOP)
    try:
        ledger.enter("orders-2 hung")
        await ledger.progress(writers * 2)
        ledger.enter("orders-2 killed")
    finally:
        await asyncio.to_thread(stack.kill, "orders-2")
    await ledger.progress(writers * 2)
    ledger.enter("orders-2 restarted")
    await asyncio.to_thread(restore, stack, "orders-2")
    await ledger.progress(writers * 2)

    data = redis_probe(stack.components["data-store"].port, 5.0)
    try:
        # A stopped data store (a stalled fsync looks like this): the services time out and
        # answer 503, but what they sent waits in the socket and runs once the store goes on,
        # so some of those 503s are orders made: the client's retry must get the same order.
        stack.send_signal("data-store", signal.SIGSTOP)
        try:
            ledger.enter("data store stopped")
            await ledger.refusals(writers)
        finally:
            stack.send_signal("data-store", signal.SIGCONT)
        ledger.enter("data store connections killed after the stop")
        killed["after the stop"] = await asyncio.to_thread(
            data.client_kill_filter, _type="normal", skipme=True
        )
        await ledger.progress(writers * 2)

        # A paused one (CLIENT PAUSE WRITE, lifted by itself if this test dies meanwhile): the
        # waiting writes die unexecuted with their connections, and every service reconnects.
        await asyncio.to_thread(data.client_pause, 10_000, False)
        try:
            ledger.enter("data store paused")
            await ledger.refusals(writers)
            ledger.enter("data store connections killed while paused")
            killed["paused"] = await asyncio.to_thread(
                data.client_kill_filter, _type="normal", skipme=True
            )
        finally:
            await asyncio.to_thread(data.client_unpause)
        await ledger.progress(writers * 2)

        ledger.enter("data store connections killed while writing")
        # A write may be applied and its answer lost (the services retry once on a new
        # connection): the replay must return the same order.
        for kill in range(5):
            killed[f"writing {kill}"] = await asyncio.to_thread(
                data.client_kill_filter, _type="normal", skipme=True
            )
            await ledger.progress(writers // 2)
    finally:
        stack.send_signal("data-store", signal.SIGCONT)
        data.close()

    ledger.enter("auth restarted")
    await asyncio.to_thread(stack.restart, "auth", RECOVERY_SECONDS)
    await ledger.progress(writers * 2)

    session = redis_probe(stack.components["session-store"].port, 10.0)
    try:
        ledger.enter("session store stalled")
        # Returns when the stall ends; bearer tokens need no session store meanwhile.
        await asyncio.to_thread(session.execute_command, "DEBUG", "SLEEP", "3")
    finally:
        session.close()

    ledger.enter("after faults")
    await ledger.progress(writers * 2)
    stop.set()
    return killed


def stored_orders(
    stack: Stack, users: list[User]
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Each user's orders as the data store holds them (its whole index, oldest first), and the
    records that break the store's own invariant: an index entry without its record, or a record
    of one of these users missing from their index."""
    data = redis_probe(stack.components["data-store"].port, 5.0)
    broken: list[str] = []
    try:
        owned: dict[str, list[dict[str, Any]]] = {}
        for user in users:
            # redis-py types its sync answers loosely; this client (RESP2) answers bytes.
            ids = [
                raw.decode() for raw in cast(list[bytes], data.zrange(owner_index(user.id), 0, -1))
            ]
            raws = cast(list[bytes | None], data.mget([order_key(i) for i in ids]) if ids else [])
            broken += [
                f"index entry {i} has no record"
                for i, r in zip(ids, raws, strict=True)
                if r is None
            ]
            owned[user.id] = [json.loads(raw) for raw in raws if raw is not None]
        indexed = {order["id"] for orders in owned.values() for order in orders}
        for name in data.scan_iter(match=ORDER_PREFIX + "*", count=1000):
            raw = data.get(name)
            order = json.loads(raw) if raw is not None else {}
            if order.get("owner") in owned and order["id"] not in indexed:
                broken.append(f"record {order['id']} ({order['item']}) is in no index")
    finally:
        data.close()
    return owned, broken


@dataclass
class Audit:
    """The ledger held against the store: what was lost, doubled or made up, and the counts."""

    violations: dict[str, list[str]]
    replayed: int
    counts: str

    @classmethod
    def of(cls, ledger: Ledger, owned: dict[str, list[dict[str, Any]]], seconds: float) -> Audit:
        records = list(ledger.records.values())
        orders = [(owner, order) for owner, listed in owned.items() for order in listed]
        found = Counter((owner, order["item"]) for owner, order in orders)
        stored = {(owner, order["item"]): order for owner, order in orders}
        acknowledged = [r for r in records if r.order_id is not None]
        attempted = {(r.user.id, r.key) for r in records}
        ambiguous = [r for r in records if r.order_id is None and found[(r.user.id, r.key)] == 1]
        # Orders made by an attempt that failed and handed to the retry that succeeded: the
        # path the keys are for (without them each would be a second order). The services
        # share this machine's clock.
        replayed = [
            r
            for r in acknowledged
            if found[(r.user.id, r.key)] == 1
            and datetime.fromisoformat(stored[(r.user.id, r.key)]["created_at"]).timestamp()
            < r.sent
        ]
        violations = {
            "acknowledged orders lost": [
                r.key for r in acknowledged if found[(r.user.id, r.key)] == 0
            ],
            "acknowledged ids that are not the stored order's": [
                f"{r.key}: answered {r.order_id}, stored {stored[(r.user.id, r.key)]['id']}"
                for r in acknowledged
                if found[(r.user.id, r.key)] == 1 and stored[(r.user.id, r.key)]["id"] != r.order_id
            ],
            "keys that made more than one order": [
                f"{item}: {n} orders" for (_, item), n in found.items() if n > 1
            ],
            "orders nobody asked for": [
                item for (owner, item) in found if (owner, item) not in attempted
            ],
            "201 answers naming another order": ledger.wrong_answers,
            "answers no client should get": [
                f"{outcome}: {n}"
                for outcome, n in ledger.outcomes.items()
                if outcome not in ALLOWED
            ],
        }
        counts = (
            f"ledger: attempted={len(records)} acknowledged={len(acknowledged)}"
            f" retried={sum(r.attempts > 1 for r in records)} found={found.total()}"
            f" ambiguous={len(ambiguous)} replayed={len(replayed)}"
            f" unacknowledged={len(records) - len(acknowledged)}"
            f" requests={ledger.outcomes.total()} seconds={seconds:.1f}"
        )
        return cls(violations, len(replayed), counts)


def outcomes(ledger: Ledger) -> list[str]:
    """What the clients were answered, in all and per phase."""
    lines = ["ledger outcomes: " + " ".join(f"{o}={n}" for o, n in sorted(ledger.outcomes.items()))]
    lines += [
        f"ledger phase {name!r}: " + " ".join(f"{o}={n}" for o, n in sorted(seen.items()))
        for name, seen in ledger.by_phase.items()
    ]
    lines.append(f"ledger 503 answers without Retry-After: {ledger.no_retry_after}")
    lines.append(f"ledger logins: {ledger.logins}")
    return lines


@pytest.mark.timeout(240)  # about 15 s alone; restarts are slow on a loaded machine
async def test_ledger_nothing_acknowledged_is_lost_or_doubled(
    stack: Stack, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    started = time.monotonic()
    ledger = Ledger()
    stop = asyncio.Event()
    async with ClientSession(timeout=REQUEST_TIMEOUT, cookie_jar=DummyCookieJar()) as http:
        api = Api(http, stack.gateway_url)

        async def failovers() -> float:
            """Gateway calls to an orders replica that failed and went to the next one."""
            return await api.metric(
                stack.gateway_url, "upstream_calls_total", upstream="orders", result="retry"
            )

        failovers_before = await failovers()
        users = [User(*await api.signup()) for _ in range(USERS)]
        for user in users:
            await log_in(api, ledger, user)
        try:
            async with asyncio.TaskGroup() as group:
                for user in users:
                    for client in range(CLIENTS_PER_USER):
                        group.create_task(write(api, ledger, user, client, stop))
                faults = group.create_task(break_things(stack, ledger, stop))
        finally:
            with capsys.disabled():  # shown without -s, and when a fault never recovered
                print("\n" + "\n".join(outcomes(ledger)))
        owned, broken = stored_orders(stack, users)
        listed = {}
        for user in users:
            response, body = await api.call("GET", "/orders?limit=100", headers=user.headers)
            assert response.status == 200, body
            listed[user.id] = [order["id"] for order in body["orders"]]
        failed_over = await failovers() - failovers_before

    audit = Audit.of(ledger, owned, time.monotonic() - started)
    with capsys.disabled():
        print(audit.counts)
        print(f"ledger data-store connections killed: {faults.result()}")
        print(f"ledger gateway failovers to another orders replica: {failed_over:g}")
        unanswered = Counter(r.final for r in ledger.records.values() if r.order_id is None)
        print(f"ledger unacknowledged keys by last answer: {dict(unanswered)}")
    record_property("ledger", audit.counts)

    for violation, examples in {**audit.violations, "store invariant broken": broken}.items():
        assert not examples, f"{violation} ({len(examples)}): {examples[:5]}; {audit.counts}"
    # The API shows what the store holds: each user's newest 100, newest first.
    for user in users:
        newest = [order["id"] for order in reversed(owned[user.id])][:100]
        assert listed[user.id] == newest, f"GET /orders disagrees with the store for {user.name}"
    # Every fault met writes; the stopped data store made orders it answered 503 for, and so
    # tested the keys; JWT writes went on while the session store stalled.
    for name, seen in ledger.by_phase.items():
        assert seen.total() > 0, f"no write was attempted during {name!r}"
    assert audit.replayed > 0, f"no failed attempt had made its order; {audit.counts}"
    assert ledger.by_phase["session store stalled"]["201"] > 0, outcomes(ledger)
    assert faults.result()["paused"] > 0, "the paused data store had no waiting client to cut"
