"""A tiny blocking JSON client for the launcher, the tests and the bench setup (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from devstack.processes import StackError


def http_json(
    method: str, url: str, body: object | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, object]:
    """Send `body` as JSON; return the status and the decoded JSON answer (None if empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def ensure_user(gateway_url: str, username: str, password: str) -> None:
    status, body = http_json(
        "POST", f"{gateway_url}/auth/users", {"username": username, "password": password}
    )
    if status not in (201, 409):
        raise StackError(f"could not create user {username}: {status} {body}")
