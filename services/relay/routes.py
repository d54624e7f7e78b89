"""The relay's two routes: the same chain of GETs, with every hop verifying the caller's
credential (`/relay/private`) or with no credential anywhere (`/relay/public`, the control).

A hop answers once the rest of the chain has answered, so a request's latency and CPU grow with
its hops; the bench takes the control's cost from the private chain's to get the cost of the
checks alone.
"""

from __future__ import annotations

import logging

from aiohttp import ClientConnectorError, ClientError, ClientSession, web

from services.common.observability import REQUEST_ID_HEADER, metrics_key, request_id_var
from services.common.problems import PROBLEM_TYPE, ProblemError
from services.common.verify import timing, verifier_key
from services.common.verify.timing import timings_key
from services.relay.settings import Settings

log = logging.getLogger("authscale.relay")

settings_key = web.AppKey("settings", Settings)
next_client_key = web.AppKey("next_client", ClientSession)

routes = web.RouteTableDef()

MAX_HOPS = 8
# A later hop's answer is a small JSON document; more than this is not one.
MAX_ANSWER_BYTES = 64 * 1024
# What a later hop's refusal carries that its caller needs too.
PASSED_ON = ("WWW-Authenticate", "Retry-After")


def read_hops(request: web.Request) -> int:
    """The `hops` query parameter: once, an integer from 1 to MAX_HOPS; else a 400 problem."""
    query = request.rel_url.query
    raw = query.getall("hops", [])
    if set(query) - {"hops"} or len(raw) != 1:
        raise ProblemError(400, "Exactly one query parameter is accepted: hops.")
    # Length first: int() of a huge digit string is slow.
    if len(raw[0]) > 1 or not raw[0].isascii() or not raw[0].isdigit():
        raise ProblemError(400, f"'hops' must be an integer from 1 to {MAX_HOPS}.")
    hops = int(raw[0])
    if not 1 <= hops <= MAX_HOPS:
        raise ProblemError(400, f"'hops' must be an integer from 1 to {MAX_HOPS}.")
    return hops


async def pass_on(
    request: web.Request, route: str, hops: int, credential: dict[str, str]
) -> web.Response | None:
    """Ask the next relay for the rest of the chain (`hops` - 1) with these credential fields.

    None when the rest answered 200; a later hop's refusal or failure is answered as that hop
    answered it (its status and problem details). No next relay configured is a 400 (the chain
    is shorter than asked); one that cannot be reached a 503, one that fails to answer a 502,
    one that does not answer in time a 504.
    """
    if hops == 1:
        return None
    settings = request.app[settings_key]
    if not settings.next_url:
        raise ProblemError(400, "This relay is the last of its chain: 'hops' must be 1 here.")
    metrics = request.app[metrics_key]
    headers = {REQUEST_ID_HEADER: request_id_var.get(), **credential}
    url = f"{settings.next_url}{route}?hops={hops - 1}"
    try:
        async with request.app[next_client_key].get(
            url, headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            body = b""
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    break
            content_type = response.content_type
            passed = {
                name: response.headers[name] for name in PASSED_ON if name in response.headers
            }
            if settings.verifier.server_timing:  # the later hops' checks, after ours
                request.setdefault(timings_key, []).extend(
                    response.headers.getall(timing.HEADER, [])
                )
    except ClientConnectorError as exc:
        metrics.observe_upstream("relay", "unavailable")
        log.warning("next relay unreachable: %s", type(exc).__name__)
        raise ProblemError(
            503, "The next relay is unavailable.", headers={"Retry-After": "1"}
        ) from None
    except TimeoutError:
        metrics.observe_upstream("relay", "timeout")
        log.warning("next relay did not answer within %.2f s", settings.timeout_seconds)
        raise ProblemError(504, "The next relay did not answer in time.") from None
    except ClientError as exc:
        metrics.observe_upstream("relay", "error")
        log.warning("next relay failed: %s", type(exc).__name__)
        raise ProblemError(502, "The next relay failed to answer.") from None
    if status == 200:
        metrics.observe_upstream("relay", "ok")
        return None
    if status >= 400 and content_type == PROBLEM_TYPE and len(body) <= MAX_ANSWER_BYTES:
        metrics.observe_upstream("relay", "refused" if status < 500 else "error")
        return web.Response(status=status, body=body, content_type=PROBLEM_TYPE, headers=passed)
    metrics.observe_upstream("relay", "error")
    log.warning("next relay answered %d (%s)", status, content_type)
    raise ProblemError(502, "The next relay failed to answer.")


@routes.get("/relay/private")
async def private(request: web.Request) -> web.Response:
    principal = await request.app[verifier_key].authenticate(request)
    hops = read_hops(request)
    # The fields the caller was given, as given: the next relay judges the same credential
    # (in the hybrid, the internal token the gateway put in Authorization).
    credential = {
        name: request.headers[name]
        for name in ("Authorization", "Cookie")
        if name in request.headers
    }
    failed = await pass_on(request, "/relay/private", hops, credential)
    return failed or web.json_response({"hops": hops, "sub": principal.sub})


@routes.get("/relay/public")
async def public(request: web.Request) -> web.Response:
    hops = read_hops(request)
    failed = await pass_on(request, "/relay/public", hops, {})
    return failed or web.json_response({"hops": hops})
