"""RFC 9457 problem details: one exception type and the middleware that renders every error."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from aiohttp import web

from services.common.settings import ServerSettings

log = logging.getLogger("authscale.problems")

PROBLEM_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
server_settings_key = web.AppKey("server_settings", ServerSettings)


class ProblemError(Exception):
    """An error the client should see, rendered as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_body(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> bytes:
    """The application/problem+json document of a problem."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    return json.dumps(body).encode()


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    response = web.Response(
        status=status,
        body=problem_body(status, detail, title=title, extra=extra),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )
    if headers and headers.get("Connection", "").lower() == "close":
        # The header alone does not end the connection; an unread body must not stay behind.
        response.force_close()
    return response


def render(error: ProblemError) -> web.Response:
    return problem_response(
        error.status, error.detail, title=error.title, headers=error.headers, extra=error.extra
    )


_HTTP_DETAILS = {
    404: "No such resource.",
    405: "Method not allowed on this resource.",
    413: "Request body too large.",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as error:
        return render(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        detail = _HTTP_DETAILS.get(exc.status, exc.reason)
        return problem_response(exc.status, detail, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "Internal error; see the service log for the request id.")


async def read_body(request: web.Request) -> bytes:
    """The whole body, or 408 if the client trickles it slower than BODY_TIMEOUT_SECONDS."""
    try:
        async with asyncio.timeout(request.app[server_settings_key].body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise ProblemError(
            408, "The request body did not arrive in time.", headers={"Connection": "close"}
        ) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotStrictJson(ValueError):
    """The text parsed, but is not RFC 8259 JSON (duplicate member, NaN/Infinity)."""


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _NotStrictJson("duplicate member name")
    return data


def _no_constants(name: str) -> object:
    raise _NotStrictJson(f"{name} is not JSON")


def _has_lone_surrogate(data: object) -> bool:
    """True if any string (member names included) holds a UTF-16 surrogate code point.

    Strict UTF-8 decoding already refuses surrogate bytes, so only a `\\ud800` escape
    without its pair gets here. Iterative: the document may be nested as deep as json allows.
    """
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def parse_json_object(body: bytes) -> dict[str, object]:
    """A JSON object from UTF-8 JSON text (RFC 8259) and nothing else, or a 422 problem.

    Refused: a byte-order mark, UTF-16/32, invalid UTF-8 (CESU-8 surrogates included), lone
    surrogates, duplicate member names, NaN/Infinity, and nesting too deep to parse.
    """
    try:
        text = body.decode("utf-8")  # strict: no BOM sniffing, no surrogates, no other codec
    except UnicodeDecodeError:
        raise ProblemError(422, "Body is not UTF-8 text.") from None
    if text.startswith("\ufeff"):
        raise ProblemError(422, "Body must not start with a byte-order mark.")
    try:
        data = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constants)
    except _NotStrictJson as exc:
        raise ProblemError(422, f"Body is not valid JSON: {exc}.") from None
    except (ValueError, RecursionError):
        raise ProblemError(422, "Body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProblemError(422, "Body must be a JSON object.")
    if _has_lone_surrogate(data):
        raise ProblemError(422, "Body holds a lone UTF-16 surrogate escape.")
    return data


async def read_json_object(request: web.Request) -> dict[str, object]:
    """Parse a JSON object body or raise a 415/422 problem."""
    if request.content_type != "application/json":
        raise ProblemError(415, "Body must be application/json.")
    return parse_json_object(await read_body(request))
