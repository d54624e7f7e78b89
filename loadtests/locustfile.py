"""Locust users for each auth mode, with the same realistic task mix.

Run against any authscale gateway, headless or in the web UI, standalone or distributed:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080            # web UI on :8089
    locust -f loadtests/locustfile.py,loadtests/shapes.py --host ...           # with the ramp shape
    locust -f loadtests/locustfile.py --headless -u 20 -r 20 -t 30s SessionUser --host ...

The classes and the settings each expects are those of the table in loadtests/modes.py.
Accounts: each simulated user takes `<AUTHSCALE_USER_PREFIX>-<n>` (n < AUTHSCALE_USER_COUNT) with
AUTHSCALE_PASSWORD, and signs the account up if it does not exist yet. AUTHSCALE_USER_RPS paces
each user (constant throughput) so that runs compare modes at the same offered load.
The JWT classes check the gateway's `authscale_info` metric so a run in the wrong revocation
mode fails loudly instead of measuring the wrong thing.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
import uuid
from typing import Any, ClassVar

from locust import FastHttpUser, constant_throughput, task
from locust.exception import StopUser

from loadtests.modes import JWT_OFF, JWT_PUSH, LOGIN_PATH, SESSION, Mode

USER_PREFIX = os.environ.get("AUTHSCALE_USER_PREFIX", "loadtest")
USER_COUNT = int(os.environ.get("AUTHSCALE_USER_COUNT", "50"))
PASSWORD = os.environ.get("AUTHSCALE_PASSWORD", "load-test-password")
USER_RPS = float(os.environ.get("AUTHSCALE_USER_RPS", "10"))
REFRESH_MARGIN_SECONDS = 30

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
        self.create_order()

    def login(self) -> bool:
        """Log in for the mode's credential; a 401 on first contact means: sign the account up."""
        path = LOGIN_PATH[self.mode.credential]
        with self.client.post(
            path,
            json={"username": self.username, "password": PASSWORD},
            name=path,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.success()  # leads to sign-up; not a failure of the system
                return False
            self.logged_in(response.json())
            return True

    def logged_in(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        raise NotImplementedError

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
            else:
                response.failure(f"create answered {response.status_code}")


class SessionUser(AuthscaleUser):
    """Cookie session: the cookie jar carries `sid`, unsafe requests echo the CSRF token."""

    mode = SESSION

    def logged_in(self, body: dict[str, Any]) -> None:
        self.csrf = body["csrf_token"]

    def auth_headers(self, unsafe: bool = False) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf} if unsafe else {}


class JwtUser(AuthscaleUser):
    """Bearer access token, refreshed with the rotating refresh token before it expires."""

    abstract = True

    def on_start(self) -> None:
        check_revocation_mode(self, self.mode.revocation)
        super().on_start()

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


def check_revocation_mode(user: FastHttpUser, expected: str) -> None:
    """Refuse to measure if the gateway runs another revocation mode than the class expects."""
    with user.client.get("/metrics", name="/metrics (mode check)", catch_response=True) as response:
        found = re.search(r'authscale_info\{[^}]*jwt_revocation="(\w+)"', response.text or "")
        if found is None:
            response.success()  # a gateway without the info metric: nothing to check
            return
        if found.group(1) != expected:
            response.failure(
                f"gateway runs JWT_REVOCATION={found.group(1)}, class expects {expected}"
            )
            raise StopUser()
        response.success()
