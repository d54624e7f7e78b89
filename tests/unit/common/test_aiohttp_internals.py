"""The aiohttp internals in services/common/aiohttp_internals.py still behave as the services
rely on; a lock refresh that moves one fails here, naming the aiohttp version."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from services.common import aiohttp_internals
from services.common.aiohttp_internals import AIOHTTP_VERSION


def moved(name: str) -> str:
    return (
        f"aiohttp {AIOHTTP_VERSION} moved {name}, which services/common/aiohttp_internals.py "
        "relies on: adapt that module (or pin the aiohttp that has it) before taking this lock"
    )


def test_cookie_parser_reads_cookies_as_requests_do() -> None:
    parsed = aiohttp_internals.parse_cookie_header('sid=abc; at="x.y.z"; bad name=1; empty=')
    values = {name: morsel.value for name, morsel in parsed}
    assert values.get("sid") == "abc", moved("_cookie_helpers.parse_cookie_header")
    assert values.get("at") == "x.y.z", moved("_cookie_helpers.parse_cookie_header")


def test_the_cookie_jar_is_what_a_request_holds() -> None:
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    header = 'sid=abc; at="x.y.z"; bad name=1; empty=; at2=a.b.c'
    held = make_mocked_request("GET", "/", headers=CIMultiDict({"Cookie": header})).cookies
    assert aiohttp_internals.cookie_jar(header) == dict(held), moved("web.Request.cookies")
    assert aiohttp_internals.cookie_jar("") == {}


def test_singleton_headers_name_the_rfc_9110_singletons() -> None:
    names = {name.lower() for name in aiohttp_internals.SINGLETON_HEADERS}
    assert {"content-length", "host", "content-type"} <= names, moved(
        "http_parser.SINGLETON_HEADERS"
    )


async def test_requests_started_counts_a_handlers_requests() -> None:
    async def hello(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="hi")

    server = web.Server(hello)
    handler = web.RequestHandler(server, loop=asyncio.get_running_loop())
    try:
        count = aiohttp_internals.requests_started(handler)
    except AttributeError:
        pytest.fail(moved("RequestHandler._request_count"))
    assert count == 0, moved("RequestHandler._request_count")


def test_no_other_module_reaches_into_aiohttp_privates() -> None:
    """Private aiohttp names are imported in aiohttp_internals.py and nowhere else."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    offenders = [
        str(path.relative_to(root))
        for folder in ("services", "loadtests", "devstack")
        for path in (root / folder).rglob("*.py")
        if path.name != "aiohttp_internals.py"
        and ("aiohttp._" in path.read_text() or "aiohttp.http_parser" in path.read_text())
    ]
    assert offenders == []
