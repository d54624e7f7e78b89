"""Locust users for each design, with the same realistic task mix.

Run against any authscale gateway, headless or in the web UI, standalone or distributed:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080            # web UI on :8089
    locust -f loadtests/locustfile.py,loadtests/shapes.py --host ...           # with the ramp shape
    locust -f loadtests/locustfile.py --headless -u 20 -r 20 -t 30s SessionUser --host ...

The classes and the settings each expects are those of the table in loadtests/modes.py:
SessionUser, SessionCachedUser and HybridUser hold a session cookie; JwtPushUser and JwtOffUser
a bearer JWT; JwtCookieUser the JWT in the `at` cookie. Accounts: each simulated user takes
`<AUTHSCALE_USER_PREFIX>-<n>` (n < AUTHSCALE_USER_COUNT) with AUTHSCALE_PASSWORD, and signs the
account up if it does not exist yet. AUTHSCALE_USER_RPS paces each user (constant throughput)
so that runs compare modes at the same offered load.

Every class reads the gateway's /metrics and stops (a failure named "/metrics (settings
check)") if the stack runs other settings than its mode is judged by (Mode.judged_by), so a run
against the wrong stack fails loudly instead of measuring another design: the JWT classes check
JWT_REVOCATION (`authscale_info`) before logging in; the session classes check SESSION_CACHE
(`session_cache_total`) and GATEWAY_TOKEN_EXCHANGE (`token_exchanges_total` misses), which a
gateway shows once it has verified a session, again after their first order, and the hybrid
JWT_REVOCATION too (loadtests.modes.revealed_settings says how).
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from typing import Any, ClassVar

from locust import FastHttpUser, constant_throughput, task
from locust.exception import StopUser

from loadtests.modes import (
    HYBRID,
    JWT_COOKIE,
    JWT_OFF,
    JWT_PUSH,
    SESSION,
    SESSION_CACHED,
    Mode,
    revealed_settings,
)

USER_PREFIX = os.environ.get("AUTHSCALE_USER_PREFIX", "loadtest")
USER_COUNT = int(os.environ.get("AUTHSCALE_USER_COUNT", "50"))
PASSWORD = os.environ.get("AUTHSCALE_PASSWORD", "load-test-password")
USER_RPS = float(os.environ.get("AUTHSCALE_USER_RPS", "10"))
REFRESH_MARGIN_SECONDS = 30
LOGIN_TRIES = 3

_numbers = itertools.count()


class AuthscaleUser(FastHttpUser):
    """Logs in on start; lists orders, reads one, creates one with an idempotency key."""

    abstract = True
    wait_time = constant_throughput(USER_RPS)
    mode: ClassVar[Mode]
    order_ids: list[str]

    def on_start(self) -> None:
        self.username = f"{USER_PREFIX}-{next(_numbers) % USER_COUNT}"
        self.order_ids = []
        self.check_settings()
        if not self.login():
            with self.client.post(
                "/auth/users",
                json={"username": self.username, "password": PASSWORD},
                name="/auth/users",
                catch_response=True,
            ) as response:
                if response.status_code in (201, 409):
                    response.success()
            if not self.login():
                raise StopUser()
        if self.order() and self.mode.credential.kind == "session":
            # A gateway has verified this user's session: what it did with sessions shows now.
            self.check_settings()

    def login(self) -> bool:
        """Log in for the mode's credential; False on a 401 (no such account: sign it up).

        A shed login (503, or 429) is retried after its Retry-After, as a client would, up to
        LOGIN_TRIES times; Locust counts each as a failure.
        """
        credential = self.mode.credential
        for _ in range(LOGIN_TRIES):
            with self.client.post(
                credential.login_path,
                json=credential.login_body(self.username, PASSWORD),
                name=credential.login_path,
                catch_response=True,
            ) as response:
                if response.status_code == 200:
                    self.logged_in(response.json())
                    return True
                if response.status_code == 401:
                    response.success()  # leads to sign-up; not a failure of the system
                    return False
                response.failure(f"login answered {response.status_code}")
                retry_after = response.headers.get("Retry-After") or "1"
            time.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 5.0))
        raise StopUser()

    def logged_in(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def check_settings(self) -> None:
        """Stop if the gateway shows settings this class's mode is not measured with."""
        with self.client.get(
            "/metrics", name="/metrics (settings check)", catch_response=True
        ) as response:
            revealed = revealed_settings(response.text or "")
            wrong = self.mode.mismatches(revealed)
            if wrong:
                found = ", ".join(f"{k}={v[0]} (expects {v[1]})" for k, v in wrong.items())
                response.failure(f"{type(self).__name__}: the gateway runs {found}")
                raise StopUser()
            response.success()

    @task(5)
    def list_orders(self) -> None:
        self.client.get("/orders?limit=10", headers=self.auth_headers(), name="/orders?limit=[n]")

    @task(4)
    def get_order(self) -> None:
        if not self.order_ids:
            return
        order_id = random.choice(self.order_ids)
        self.client.get(f"/orders/{order_id}", headers=self.auth_headers(), name="/orders/[id]")

    @task(1)
    def create_order(self) -> None:
        self.order()

    def order(self) -> bool:
        """Create one order; whether it was created."""
        headers = {**self.auth_headers(unsafe=True), "Idempotency-Key": uuid.uuid4().hex}
        body = {
            "item": random.choice(("tea", "coffee", "cake", "book")),
            "quantity": random.randint(1, 5),
        }
        with self.client.post(
            "/orders", json=body, headers=headers, name="/orders", catch_response=True
        ) as response:
            if response.status_code == 201:
                order = response.json()
                self.order_ids = [*self.order_ids[-19:], order["id"]]
                return True
            response.failure(f"create answered {response.status_code}")
            return False


class SessionUser(AuthscaleUser):
    """Cookie session: the cookie jar carries `sid`, unsafe requests echo the CSRF token.

    Expects SESSION_CACHE=off and GATEWAY_TOKEN_EXCHANGE=off: every hop reads the store.
    """

    mode = SESSION

    def logged_in(self, body: dict[str, Any]) -> None:
        self.csrf = body["csrf_token"]

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf} if unsafe else {}


class SessionCachedUser(SessionUser):
    """The same session cookie against SESSION_CACHE=push: every verifier keeps the record."""

    mode = SESSION_CACHED


class HybridUser(SessionUser):
    """The same session cookie against GATEWAY_TOKEN_EXCHANGE=on (with SESSION_CACHE=push and
    JWT_REVOCATION=push): the gateway swaps it for an internal JWT; nothing changes client-side."""

    mode = HYBRID


class JwtUser(AuthscaleUser):
    """Bearer access token, refreshed with the rotating refresh token before it expires."""

    abstract = True

    def logged_in(self, body: dict[str, Any]) -> None:
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.expires_at = time.time() + float(body["expires_in"])

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        if time.time() > self.expires_at - REFRESH_MARGIN_SECONDS:
            with self.client.post(
                "/auth/refresh",
                json={"refresh_token": self.refresh_token},
                name="/auth/refresh",
                catch_response=True,
            ) as response:
                if response.status_code == 200:
                    self.logged_in(response.json())
                else:
                    response.failure(f"refresh answered {response.status_code}")
                    self.login()
        return {"Authorization": f"Bearer {self.access_token}"}


class JwtOffUser(JwtUser):
    """JWT against a stack with JWT_REVOCATION=off (pure stateless)."""

    mode = JWT_OFF


class JwtPushUser(JwtUser):
    """JWT against a stack with JWT_REVOCATION=push (in-memory revocation list)."""

    mode = JWT_PUSH


class JwtCookieUser(AuthscaleUser):
    """The JWT in a cookie (`"carrier": "cookie"`), JWT_REVOCATION=push: the cookie jar carries
    `at` (and `rt`, sent only to /auth/refresh); unsafe requests echo the CSRF token the login
    answered, and so does the refresh, by cookie and without a body, before `at` expires."""

    mode = JWT_COOKIE

    def logged_in(self, body: dict[str, Any]) -> None:
        self.csrf = body["csrf_token"]
        self.expires_at = time.time() + float(body["expires_in"])

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        if time.time() > self.expires_at - REFRESH_MARGIN_SECONDS:
            with self.client.post(
                "/auth/refresh",
                headers={"X-CSRF-Token": self.csrf},
                name="/auth/refresh (cookie)",
                catch_response=True,
            ) as response:
                if response.status_code == 200:
                    self.logged_in(response.json())
                else:
                    response.failure(f"cookie refresh answered {response.status_code}")
                    self.login()
        return {"X-CSRF-Token": self.csrf} if unsafe else {}
