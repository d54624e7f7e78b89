"""Launching the whole stack for tests, and a small API client that talks to the gateway."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, ClientSession
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from devstack.stack import Ports, Stack
from tests.openapi_check import check_response


def launch(workdir: Path, ports: Ports | None = None, **env: str) -> Stack:
    log = (workdir / "stack.log").open("w")
    stack = Stack(
        ports=ports or Ports.free(),
        workdir=workdir,
        keys_dir=workdir / "keys",
        log=log,
        env={"HEALTH_INTERVAL_SECONDS": "0.2", "LOG_LEVEL": "WARNING", **env},
    )
    stack.start()
    return stack


def running(workdir: Path, ports: Ports | None = None, **env: str) -> Iterator[Stack]:
    """Yield a launched stack and stop it afterwards (the body of every stack fixture)."""
    stack = launch(workdir, ports, **env)
    try:
        yield stack
    finally:
        stack.stop()
        stack.log.close()


class Api:
    """Talks to the gateway like a client would; cookies are always explicit."""

    def __init__(self, http: ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[ClientResponse, Any]:
        # encoded=True: send the path exactly as written, tricks included.
        url = URL(self.base + path, encoded=True)
        async with self.http.request(method, url, allow_redirects=False, **kwargs) as response:
            raw = await response.read()
            check_response(method, path, response.status, response.content_type, raw)
            body = None
            if raw and response.content_type in ("application/json", "application/problem+json"):
                body = await response.json(content_type=None)
            return response, body

    async def signup(self, password: str = "correct horse") -> tuple[str, str]:
        username = "u" + uuid.uuid4().hex[:12]
        response, body = await self.call(
            "POST", "/auth/users", json={"username": username, "password": password}
        )
        assert response.status == 201, body
        return username, body["id"]

    async def jwt_login(self, username: str, password: str = "correct horse") -> dict[str, str]:
        response, body = await self.call(
            "POST", "/auth/token", json={"username": username, "password": password}
        )
        assert response.status == 200, body
        return {"Authorization": f"Bearer {body['access_token']}"}

    async def session_login(self, username: str, password: str = "correct horse") -> dict[str, str]:
        response, body = await self.call(
            "POST", "/auth/session", json={"username": username, "password": password}
        )
        assert response.status == 200, body
        return {
            "Cookie": f"sid={response.cookies['sid'].value}",
            "X-CSRF-Token": body["csrf_token"],
        }

    async def cookie_login(
        self, username: str, password: str = "correct horse"
    ) -> tuple[dict[str, str], str]:
        """A JWT in a cookie (carrier "cookie"): the `at` cookie header and the CSRF token."""
        response, body = await self.call(
            "POST",
            "/auth/token",
            json={"username": username, "password": password, "carrier": "cookie"},
        )
        assert response.status == 200 and set(body) == {"csrf_token", "expires_in"}, body
        return {"Cookie": f"at={response.cookies['at'].value}"}, body["csrf_token"]

    async def login(self, mode: str, username: str) -> dict[str, str]:
        return await (self.jwt_login(username) if mode == "jwt" else self.session_login(username))

    async def logout(self, headers: dict[str, str]) -> ClientResponse:
        """Log this credential out (204); the response, for its cookies."""
        response, body = await self.call("POST", "/auth/logout", headers=headers)
        assert response.status == 204, body
        return response

    async def refused_within(
        self,
        headers: dict[str, str],
        message: str = "the logged-out credential still works",
        seconds: float = 1.0,
    ) -> None:
        """Poll GET /orders with this credential until it gets 401, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        while (await self.call("GET", "/orders", headers=headers))[0].status != 401:
            assert time.monotonic() < deadline, message
            await asyncio.sleep(0.01)

    async def timed_call(self, method: str, path: str, **kwargs: Any) -> tuple[int, float]:
        """A call's status, and how long it took in seconds."""
        started = time.monotonic()
        response, _ = await self.call(method, path, **kwargs)
        return response.status, time.monotonic() - started

    async def session_store_down(
        self,
        session: dict[str, str],
        bearer: dict[str, str],
        item: str,
        revoked: dict[str, str] | None = None,
    ) -> None:
        """While the session store is down: session requests fail fast (503 with Retry-After,
        under 1 s), JWT reads and writes still work, and a revoked JWT stays refused."""
        for _ in range(3):
            status, seconds = await self.timed_call("GET", "/orders", headers=session)
            assert status == 503 and seconds < 1.0, (status, seconds)
            response, problem = await self.call("GET", "/orders", headers=session)
            assert problem["status"] == 503 and response.headers.get("Retry-After")
            status, _ = await self.timed_call("GET", "/orders", headers=bearer)
            assert status == 200
            if revoked is not None:
                status, _ = await self.timed_call("GET", "/orders", headers=revoked)
                assert status == 401
        response, created = await self.call(
            "POST", "/orders", headers=bearer, json={"item": item, "quantity": 1}
        )
        assert response.status == 201, created

    async def metric(self, url: str, name: str, **labels: str) -> float:
        """The sum of a metric's samples at url/metrics whose labels include these."""
        async with self.http.get(url + "/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    async def every_hop(self, stack: Stack, headers: dict[str, str]) -> list[int]:
        """One credential's answer at the gateway, then each orders replica and auth directly."""
        statuses = [(await self.call("GET", "/orders", headers=headers))[0].status]
        for base, path in [
            *((url, "/orders") for url in stack.orders_urls),
            (stack.auth_url, "/me"),
        ]:
            async with self.http.get(base + path, headers=headers) as response:
                statuses.append(response.status)
        return statuses
