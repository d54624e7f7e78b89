"""Orders endpoints: authenticate locally, authorize by owner, validate strictly."""

from __future__ import annotations

import logging

from aiohttp import ClientError, ClientSession, web

from services.common.observability import REQUEST_ID_HEADER, metrics_key, request_id_var
from services.common.problems import ProblemError, read_json_object
from services.common.verify import (
    AccountGone,
    Principal,
    carried_by_cookie,
    require_csrf,
    timing,
    verifier_key,
)
from services.common.verify.timing import timings_key
from services.orders.settings import Settings
from services.orders.store import OrderStore, validate_idempotency_key, validate_order

log = logging.getLogger("authscale.orders")

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", OrderStore)
auth_client_key = web.AppKey("auth_client", ClientSession)

routes = web.RouteTableDef()


async def confirm_account(request: web.Request, principal: Principal) -> None:
    """Ask auth about the caller with the caller's own credential (auth verifies it too).

    A refusal from auth refuses the order; auth being down does not, because the credential
    was already verified here and the contract keeps JWT requests working without auth.
    """
    settings = request.app[settings_key]
    if not settings.account_check:
        return
    metrics = request.app[metrics_key]
    headers = {REQUEST_ID_HEADER: request_id_var.get()}
    if not carried_by_cookie(request):
        headers["Authorization"] = request.headers["Authorization"]
    elif principal.mode == "jwt":
        headers["Cookie"] = (
            f"{settings.verifier.access_cookie_name}="
            f"{request.cookies[settings.verifier.access_cookie_name]}"
        )
    else:
        assert principal.session_id is not None
        headers["Cookie"] = f"{settings.verifier.cookie_name}={principal.session_id}"
    try:
        async with request.app[auth_client_key].get(
            f"{settings.auth_url}/me", headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            if settings.verifier.server_timing:  # auth's check, on the timeline after ours
                passed_on = response.headers.getall(timing.HEADER, [])
                request.setdefault(timings_key, []).extend(passed_on)
    except (ClientError, TimeoutError) as exc:
        metrics.observe_upstream("auth", "unavailable")
        log.warning("account check skipped, auth unreachable: %s", type(exc).__name__)
        return
    if status == 200:
        metrics.observe_upstream("auth", "ok")
        return
    if status == 401:
        metrics.observe_upstream("auth", "refused")
        raise AccountGone()
    metrics.observe_upstream("auth", "error")
    log.warning("account check skipped, auth answered %d", status)


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    principal = await request.app[verifier_key].authenticate(request)
    require_csrf(request, principal)
    key = validate_idempotency_key(request.headers.get("Idempotency-Key"))
    item, quantity = validate_order(await read_json_object(request))
    await confirm_account(request, principal)
    order, _created = await request.app[store_key].create(principal.sub, item, quantity, key)
    return web.json_response(order, status=201, headers={"Location": f"/orders/{order['id']}"})


@routes.get("/orders")
async def list_orders(request: web.Request) -> web.Response:
    principal = await request.app[verifier_key].authenticate(request)
    query = request.rel_url.query
    unknown = set(query) - {"limit"}
    if unknown or len(query.getall("limit", [])) > 1:
        raise ProblemError(422, "Only one query parameter is accepted: limit.")
    raw = query.get("limit", "20")
    # Length first: int() of a huge digit string is slow, then refused with a ValueError.
    if len(raw) > 3 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ProblemError(422, "'limit' must be an integer from 1 to 100.")
    orders = await request.app[store_key].list(principal.sub, int(raw))
    return web.json_response({"orders": orders})


@routes.get("/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    principal = await request.app[verifier_key].authenticate(request)
    order = await request.app[store_key].get(principal.sub, request.match_info["order_id"])
    if order is None:
        raise ProblemError(404, "No such order.")
    return web.json_response(order)
