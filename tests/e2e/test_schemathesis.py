"""schemathesis against the launched local stack, from the contract the gateway serves.

Every operation of /openapi.json gets schema-valid and schema-invalid requests (`mode = all`:
the coverage phase's boundary and negative cases, then a bounded fuzzing phase) with a Bearer
JWT; the operations that take a credential run again with each other credential the document
declares: the session cookie and, for the cookie carrier of the JWT, the `at` cookie, each with
its X-CSRF-Token. All are issued by the stack itself (POST /auth/token, POST /auth/session) to
users this module signs up. Stateful runs then follow the document's links (sign-up -> log-in ->
refresh -> refresh again; an order -> GET /orders/{id}) with a Bearer JWT and with a session.

Every check schemathesis has is on (bar max_response_time, which needs a limit; the deadline
below bounds time). The contract needs these to hold: `not_a_server_error` (no 5xx),
`status_code_conformance`, `content_type_conformance` and `response_schema_conformance`
(every answer is one the document declares, in its media type and shape), and
`negative_data_rejection` (a request the document calls invalid is refused). The others
(`positive_data_acceptance`, `ignored_auth`, `missing_required_header`, `unsupported_method`,
`ensure_resource_availability`, ...) keep the document from being looser than the stack.

Credentials are live, but a test's cases are built when pytest collects them (the coverage
phase's cases become fixed examples), before the stack exists. So the auth providers only mark
where a case carries its credential, with a placeholder, and `present` puts the live value there
just before the request. A negative case whose point is a missing or broken credential gets no
placeholder: schemathesis does not call auth providers for it. Logging out ends the credential
it is sent with, so every POST /auth/logout case gets a fresh one.

Deterministic for CI: a fixed seed, derandomized generation, no example database, a bounded
number of examples and of stateful scenarios and steps, a request timeout and a per-case
deadline.

Long because the credentials, hooks and stateful links all belong to one schemathesis run.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import AuthContext, BaseSchema, Case
from schemathesis.generation.stateful import APIStateMachine

from devstack.stack import Stack
from services.gateway.openapi import document
from tests.stackutil import running

AnyCase = Case[Any]
Kind = Literal["bearer", "cookie", "session"]
KINDS: tuple[Kind, ...] = ("bearer", "cookie", "session")
PENDING = "pending-credential"  # where a case carries its credential until `present`
PASSWORD = "correct horse battery staple"
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,64}")
REQUEST_TIMEOUT = 5.0

# What schemathesis.toml would hold, as a dict: the same keys and values.
CONFIG: dict[str, Any] = {
    "seed": 1414,
    "generation": {
        "mode": "all",
        # The fuzzing phase's cap per operation; the coverage phase adds its own cases.
        "max-examples": 10,
        "deterministic": True,
        "database": "none",
    },
    "request-timeout": REQUEST_TIMEOUT,
    # Throwaway credentials of a throwaway stack: a failure's curl line should reproduce it.
    "output": {"sanitization": {"enabled": False}},
    "operations": [
        {
            # Orders takes `quantity` as an integer written as one (1, not 1.0 or 1e0): a strict
            # choice the contract keeps, which JSON Schema cannot express (its integer type
            # counts 920.0 as 920), so generated "valid" bodies with 920.0 get the 422 the
            # security suite asserts. Only that acceptance check is off; every other check runs.
            "include-name": "POST /orders",
            "checks": {"positive_data_acceptance": {"enabled": False}},
        },
        {
            # The document cannot say "a JSON body, or else the rt cookie": both are optional in
            # it, and a request with neither is refused as a missing credential (401), which
            # positive_data_acceptance would count as a rejection of valid data. Every other
            # check stays as it is for this operation.
            "include-name": "POST /auth/refresh",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "429"],
                }
            },
        },
    ],
}
PER_CASE = settings(
    # A case makes one request, or three when a check re-sends it, and each takes milliseconds:
    # a case over this deadline is a hang, not a slow machine.
    deadline=timedelta(seconds=4 * REQUEST_TIMEOUT),
    # Time spent generating data, not waiting for the stack: the 2-core CI machine may be busy.
    suppress_health_check=[HealthCheck.too_slow],
)
# Scenarios per stateful run, and calls per scenario. The session run has only the order links.
STATEFUL_SCENARIOS: dict[Kind, int] = {"bearer": 20, "session": 8}
STATEFUL_STEPS = 8


def _public(ctx: Any) -> bool:
    """An operation that takes no credential (the document lists no security scheme for it)."""
    return not ctx.operation.definition.raw.get("security")


# -- live credentials ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """Headers and cookies that carry one credential, as the stack issued them."""

    headers: dict[str, str]
    cookies: dict[str, str]


class Issuer:
    """Signs users up and logs them in through the gateway, as a client would."""

    base = ""

    def _post(self, path: str, body: dict[str, str]) -> requests.Response:
        answer = requests.post(self.base + path, json=body, timeout=REQUEST_TIMEOUT)
        assert answer.status_code in (200, 201), f"{path}: {answer.status_code} {answer.text}"
        return answer

    def sign_up(self) -> str:
        username = "st" + uuid.uuid4().hex[:16]
        self._post("/auth/users", {"username": username, "password": PASSWORD})
        return username

    def log_in(self, kind: Kind, username: str | None = None) -> Credential:
        """A new credential of this kind, for `username` or for a new user."""
        login = {"username": username or self.sign_up(), "password": PASSWORD}
        if kind == "bearer":
            token = self._post("/auth/token", login).json()["access_token"]
            return Credential({"Authorization": f"Bearer {token}"}, {})
        if kind == "cookie":
            answer = self._post("/auth/token", {**login, "carrier": "cookie"})
            return Credential({"X-CSRF-Token": answer.json()["csrf_token"]}, _cookie(answer, "at"))
        answer = self._post("/auth/session", login)
        return Credential({"X-CSRF-Token": answer.json()["csrf_token"]}, _cookie(answer, "sid"))

    def present(self, case: AnyCase, kind: Kind, live: Credential) -> None:
        """Put the live credential where the auth provider left placeholders in this case."""
        if case.operation.label == "POST /auth/logout" and PENDING in _carried(case):
            # Logging out ends the credential it is sent with: this case gets its own, of its own
            # user (so no later case finds its user's tokens revoked).
            live = self.log_in(kind)
        for name, value in live.headers.items():
            if case.headers.get(name) == PENDING:
                case.headers[name] = value
        for name, value in live.cookies.items():
            if case.cookies.get(name) == PENDING:
                case.cookies[name] = value


def _cookie(answer: requests.Response, name: str) -> dict[str, str]:
    value = answer.cookies.get(name)
    assert value, f"no {name} cookie: {answer.headers}"
    return {name: value}


def _carried(case: AnyCase) -> list[str]:
    return [*case.headers.values(), *(case.cookies or {}).values()]


ISSUER = Issuer()
USER: dict[Kind, Credential] = {}  # the credentials of the user the parametrized tests share
COUNTS: Counter[tuple[str, str, str]] = Counter()  # (run, operation, generation mode) -> cases


def _count(run: str, case: AnyCase) -> None:
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    COUNTS[(run, case.operation.label, mode)] += 1


# -- the schemas and their auth providers ------------------------------------------------------

# Where each kind of credential travels: the names `present` fills in.
CARRIERS: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bearer": (("Authorization",), ()),
    "cookie": (("X-CSRF-Token",), ("at",)),
    "session": (("X-CSRF-Token",), ("sid",)),
}


def _placeholder(kind: Kind) -> type[Any]:
    headers, cookies = CARRIERS[kind]

    class Placeholder:
        def get(self, case: AnyCase, ctx: AuthContext) -> Kind:
            return kind

        def set(self, case: AnyCase, data: Kind, ctx: AuthContext) -> None:
            # X-CSRF-Token is also a parameter, but one the document does not constrain (a
            # bearer request may carry anything there), so no case is built to break it.
            for name in headers:
                case.headers[name] = PENDING
            for name in cookies:
                case.cookies[name] = PENDING

    Placeholder.__name__ = f"{kind.capitalize()}Placeholder"
    return Placeholder


def _schema(kind: Kind) -> BaseSchema:
    schema: BaseSchema = schemathesis.openapi.from_dict(
        document(), config=schemathesis.Config.from_dict(CONFIG)
    )
    if kind != "bearer":
        # The public operations run once, in the bearer run. (`exclude`: with `[[operations]]`
        # in the config, a further `include` is OR-ed with the config's selection.)
        schema = schema.exclude(func=_public)
    # Per case (`get` costs nothing, so no caching), never replayed after a 401 (that would hide
    # one), and only where the document asks for a credential.
    schema.auth(refresh_interval=None, retry_on=[]).apply_to(func=lambda ctx: not _public(ctx))(
        _placeholder(kind)
    )
    return schema


SCHEMAS: dict[Kind, BaseSchema] = {kind: _schema(kind) for kind in KINDS}


def _parametrize(kind: Kind) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return cast(Callable[[Callable[..., None]], Callable[..., None]], SCHEMAS[kind].parametrize())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    # Store calls time out (503) after 0.5 s by default. The data store fsyncs every write, and on
    # a busy 2-core CI machine a fsync has been seen to stall that long: a 503 from the disk, not
    # from the request, which is what not_a_server_error is here to judge. Still under the
    # gateway's 5 s upstream timeout.
    workdir = tmp_path_factory.mktemp("schemathesis")
    for stack in running(workdir, STORE_TIMEOUT_SECONDS="2"):
        served = requests.get(f"{stack.gateway_url}/openapi.json", timeout=REQUEST_TIMEOUT)
        # The cases come from services/gateway/openapi.py: the very document the stack serves.
        assert served.json() == json.loads(json.dumps(document()))
        ISSUER.base = stack.gateway_url
        username = ISSUER.sign_up()
        USER.update({kind: ISSUER.log_in(kind, username) for kind in KINDS})
        yield stack


def _run(kind: Kind, case: AnyCase, stack: Stack) -> None:
    _count(kind, case)
    ISSUER.present(case, kind, USER[kind])
    case.call_and_validate(base_url=stack.gateway_url)


@_parametrize("bearer")
@PER_CASE
def test_with_a_bearer_jwt(case: AnyCase, stack: Stack) -> None:
    _run("bearer", case, stack)


@_parametrize("cookie")
@PER_CASE
def test_with_the_jwt_in_a_cookie(case: AnyCase, stack: Stack) -> None:
    _run("cookie", case, stack)


@_parametrize("session")
@PER_CASE
def test_with_a_session_cookie(case: AnyCase, stack: Stack) -> None:
    _run("session", case, stack)


# -- stateful: scenarios along the links -------------------------------------------------------


@pytest.mark.parametrize("kind", ["bearer", "session"])
def test_stateful_links(kind: Kind, stack: Stack) -> None:
    """Scenarios of up to STATEFUL_STEPS calls, each call checked like the cases above.

    Each scenario is a new user, and every valid sign-up a new name: Hypothesis replays the
    same draws in later scenarios, and an answer that depended on what an earlier scenario left
    behind (a taken name: 409, not 201; a longer order list) would change which links it may
    follow next, which Hypothesis reports as a flaky strategy.
    """

    scenario: dict[str, Credential] = {}  # the running scenario's (they run one at a time)

    def setup(self: APIStateMachine) -> None:
        scenario["live"] = ISSUER.log_in(kind)

    def before_call(self: APIStateMachine, case: AnyCase) -> None:
        body = case.body
        if case.operation.label == "POST /auth/users" and isinstance(body, dict):
            name = body.get("username")
            if isinstance(name, str) and USERNAME_RE.fullmatch(name):
                body["username"] = f"{name[:40]}.{uuid.uuid4().hex[:16]}"
        _count(f"stateful {kind}", case)
        ISSUER.present(case, kind, scenario["live"])

    def get_call_kwargs(self: APIStateMachine, case: AnyCase) -> dict[str, Any]:
        return {"base_url": stack.gateway_url}

    base: type[APIStateMachine] = SCHEMAS[kind].as_state_machine()
    workflow: type[APIStateMachine] = type(
        f"{kind.capitalize()}Workflow",
        (base,),
        {"setup": setup, "before_call": before_call, "get_call_kwargs": get_call_kwargs},
    )
    workflow.run(
        settings=settings(
            workflow.TestCase.settings,
            max_examples=STATEFUL_SCENARIOS[kind],
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=PER_CASE.deadline,
            suppress_health_check=PER_CASE.suppress_health_check,
        )
    )


def test_every_operation_ran_valid_and_invalid_cases(capsys: pytest.CaptureFixture[str]) -> None:
    """The tally: cases per run, operation and mode, and no operation left without both."""
    if not COUNTS:
        pytest.skip("no schemathesis test ran in this session")
    runs = {run for run, _, _ in COUNTS}
    with capsys.disabled():
        print("\nschemathesis cases (run, operation: positive + negative):")
        for run in sorted(runs):
            labels = sorted({label for r, label, _ in COUNTS if r == run})
            for label in labels:
                positive, negative = (COUNTS[(run, label, m)] for m in ("positive", "negative"))
                print(f"  {run:<16} {label:<32} {positive:>3} + {negative:>3}")
        print(f"  total: {sum(COUNTS.values())}")
    for kind in runs & set(KINDS):
        for path, item in document()["paths"].items():
            for method, operation in item.items():
                if kind != "bearer" and not operation["security"]:
                    continue  # the public operations run in the bearer run only
                label = f"{method.upper()} {path}"
                for mode in ("positive", "negative"):
                    assert COUNTS[(kind, label, mode)] > 0, f"{kind}: no {mode} case for {label}"
