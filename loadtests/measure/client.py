"""The bench's one HTTP client (urllib, blocking), and the gateway calls the experiments make:
sign up, log in per credential, log out, ask whether a credential is still accepted.

The accounts' names are the runner's (loadtests/measure/run.py); their password is here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.cookies import SimpleCookie

from loadtests.modes import Credential
from services.common.exchange import TOKEN_EXCHANGE_PATH
from services.common.exchange import request_body as exchange_request

PASSWORD = "bench-password-1"  # noqa: S105 - throwaway load-test accounts


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> object:
        return json.loads(self.body) if self.body else None


def request(
    method: str,
    url: str,
    body: object | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request; an HTTP error status is a Reply, a network failure raises OSError."""
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our own stack
    if data is not None:
        call.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        call.add_header(name, value)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:  # noqa: S310
            return Reply(int(response.status), response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def header_bytes(headers: Mapping[str, str]) -> int:
    """The bytes `headers` take in an HTTP/1.1 request: `name: value` and CRLF each."""
    return sum(len(f"{name}: {value}\r\n".encode("latin-1")) for name, value in headers.items())


def get_text(url: str, timeout: float = 5.0) -> str:
    reply = request("GET", url, timeout=timeout)
    if reply.status != 200:
        raise RuntimeError(f"GET {url} answered {reply.status}")
    return reply.body.decode()


def get_status(url: str, headers: Mapping[str, str], timeout: float = 5.0) -> tuple[int, float]:
    """The status of one GET (0: no answer in time) and how long it took."""
    started = time.perf_counter()
    try:
        code = request("GET", url, headers=headers, timeout=timeout).status
    except OSError:  # refused, reset or timed out (URLError and TimeoutError are OSErrors)
        code = 0
    return code, time.perf_counter() - started


def internal_token(auth_url: str, cookie: str) -> str:
    """The hybrid's internal token for the session in `cookie` (`sid=...`), from the exchange
    endpoint on auth's own address (only the bench's own stack can reach it)."""
    session_id = cookie.split("=", 1)[1].split(";")[0]
    reply = request("POST", auth_url + TOKEN_EXCHANGE_PATH, exchange_request(session_id))
    body = reply.json()
    assert reply.status == 200 and isinstance(body, dict), (reply.status, reply.body)
    return str(body["access_token"])


class Gateway:
    """Signs up, logs in per credential, asks 'is this credential still accepted?'."""

    def __init__(self, url: str) -> None:
        self.url = url

    def ensure_user(self, username: str) -> None:
        reply = request("POST", f"{self.url}/auth/users", self._account(username))
        if reply.status not in (201, 409):
            raise RuntimeError(f"could not create user {username}: {reply.status} {reply.json()}")

    def login(self, credential: Credential, username: str) -> dict[str, str]:
        """Log in as `username`; the headers that carry the credential afterwards, as a client
        sends them to /orders: `Authorization`, or the cookies with Path=/ and `X-CSRF-Token`."""
        reply = self.timed_login(credential, username)[0]
        assert reply.status == 200, (reply.status, reply.body)
        body = reply.json()
        assert isinstance(body, dict)
        if credential.carrier == "header":
            return {"Authorization": f"Bearer {body['access_token']}"}
        jar: SimpleCookie = SimpleCookie()
        for line in reply.headers.get_all("Set-Cookie") or []:
            jar.load(line)
        cookies = "; ".join(
            f"{name}={morsel.value}" for name, morsel in jar.items() if morsel["path"] in ("", "/")
        )
        return {"Cookie": cookies, "X-CSRF-Token": body["csrf_token"]}

    def timed_login(self, credential: Credential, username: str) -> tuple[Reply, float]:
        started = time.perf_counter()
        body = credential.login_body(username, PASSWORD)
        reply = request("POST", self.url + credential.login_path, body)
        return reply, time.perf_counter() - started

    def logout(self, headers: Mapping[str, str], timeout: float = 10.0) -> int:
        return request("POST", f"{self.url}/auth/logout", headers=headers, timeout=timeout).status

    def status(
        self, headers: Mapping[str, str], path: str = "/orders?limit=1", timeout: float = 5.0
    ) -> tuple[int, float]:
        """The status of one GET through the gateway and how long it took."""
        return get_status(self.url + path, headers, timeout)

    @staticmethod
    def _account(username: str) -> dict[str, str]:
        return {"username": username, "password": PASSWORD}
