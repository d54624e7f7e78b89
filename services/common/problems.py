"""RFC 9457 problem details: one exception type and the middleware that renders every error."""

from __future__ import annotations

import asyncio
import json
import logging
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


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    response = web.Response(
        status=status,
        body=json.dumps(body).encode(),
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


async def read_json_object(request: web.Request) -> dict[str, object]:
    """Parse a JSON object body or raise a 415/422 problem."""
    if request.content_type != "application/json":
        raise ProblemError(415, "Body must be application/json.")
    body = await read_body(request)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProblemError(422, "Body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProblemError(422, "Body must be a JSON object.")
    return data
