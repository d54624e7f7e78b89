"""Log lines: JSON with the request id, written in batches on the event loop without losing
their order, and request ids of the documented shape."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from services.common.observability import (
    _BUCKETS as BUCKETS,
)
from services.common.observability import (
    JsonFormatter,
    LineHandler,
    LoopCounter,
    LoopHistogram,
    _direct_handler,
    access_logger,
    configure_logging,
    log_access,
    new_request_id,
    request_id_var,
)


class Stream(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Stream]]:
    stream = Stream()
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("authscale.test-lines")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.handlers[:] = []


def lines(stream: Stream) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_on_the_loop_are_written_together_after_the_ready_callbacks(
    logged: tuple[logging.Logger, Stream],
) -> None:
    logger, stream = logged
    token = request_id_var.set("rid-7")
    try:
        for n in range(5):
            logger.info("request", extra={"fields": {"n": n}})
    finally:
        request_id_var.reset(token)
    assert stream.getvalue() == ""  # held while the loop is busy
    await asyncio.sleep(0)  # the loop runs its ready callbacks: the flush among them
    assert [line["n"] for line in lines(stream)] == [0, 1, 2, 3, 4]
    assert stream.writes == 1  # one write for the five
    assert {line["request_id"] for line in lines(stream)} == {"rid-7"}


async def test_a_warning_goes_out_at_once_after_the_lines_held_before_it(
    logged: tuple[logging.Logger, Stream],
) -> None:
    logger, stream = logged
    logger.info("first")
    logger.warning("second")
    assert [line["msg"] for line in lines(stream)] == ["first", "second"]  # no waiting
    await asyncio.sleep(0)
    assert len(lines(stream)) == 2  # the scheduled flush finds nothing more


def test_lines_off_the_loop_are_written_at_once(logged: tuple[logging.Logger, Stream]) -> None:
    logger, stream = logged
    logger.info("start-up")
    assert [line["msg"] for line in lines(stream)] == ["start-up"]
    worker = threading.Thread(target=logger.info, args=("from a thread",))
    worker.start()
    worker.join(5)
    assert [line["msg"] for line in lines(stream)] == ["start-up", "from a thread"]


async def test_shutdown_writes_what_is_held(logged: tuple[logging.Logger, Stream]) -> None:
    logger, stream = logged
    logger.info("last words")
    for handler in logger.handlers:
        handler.flush()  # what logging.shutdown() does at exit
    assert [line["msg"] for line in lines(stream)] == ["last words"]


def test_request_ids_are_32_hex_digits_and_differ() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize(
    "method, path, status, mode, ms",
    [
        ("GET", "/orders", 200, "jwt", 1.234),
        ("POST", '/a "quoted" \\ path\u00e9\u2603', 503, "session", 0.0),
        ("DELETE", "/orders/x", 404, "none", 12345.678),
    ],
)
def test_the_access_line_is_the_json_line_of_an_access_record(
    method: str, path: str, status: int, mode: str, ms: float
) -> None:
    formatter = JsonFormatter("gateway")
    token = request_id_var.set('id "7"')
    try:
        fields = {"method": method, "path": path, "status": status, "auth_mode": mode, "ms": ms}
        general = formatter.line(1795450000.1234567, "INFO", "authscale.access", "request", fields)
        direct = formatter.access_line(1795450000.1234567, method, path, status, mode, ms)
    finally:
        request_id_var.reset(token)
    assert direct == general
    assert json.loads(direct)["path"] == path


async def test_access_lines_reach_a_capture_handler_through_logging() -> None:
    """Where the access logger has another way out (here a handler of its own), the line goes
    through logging, so it reaches that handler too."""
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    capture = Capture()
    access_logger.addHandler(capture)
    previous = access_logger.level
    access_logger.setLevel(logging.INFO)
    try:
        log_access("GET", "/orders", 200, "jwt", 0.002)
    finally:
        access_logger.removeHandler(capture)
        access_logger.setLevel(previous)
    [record] = captured
    assert record.fields == {  # type: ignore[attr-defined]
        "method": "GET",
        "path": "/orders",
        "status": 200,
        "auth_mode": "jwt",
        "ms": 2.0,
    }


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, without the `_created` series prometheus_client adds."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_loop_counter_and_histogram_expose_what_prometheus_client_would() -> None:
    values = [0.0001, 0.00025, 0.0003, 0.005, 0.0051, 7.5, 0.0]  # bounds, between, beyond
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("things_total", "Things", ["service", "kind"], registry=theirs)
    histogram = Histogram(
        "wait_seconds", "Waits", ["service", "kind"], buckets=BUCKETS, registry=theirs
    )
    loop_counter = LoopCounter("things", "Things", ["service", "kind"], ours)
    loop_histogram = LoopHistogram("wait_seconds", "Waits", ["service", "kind"], BUCKETS, ours)
    for n, value in enumerate(values):
        kind = "a" if n % 3 else "b"
        counter.labels("svc", kind).inc()
        histogram.labels("svc", kind).observe(value)
        loop_counter.inc(("svc", kind))
        loop_histogram.observe(("svc", kind), value)
    assert _samples(ours) == _samples(theirs)


def test_the_access_line_skips_logging_only_where_the_line_handler_is_its_only_way_out() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("svc", "INFO")
        [handler] = root.handlers
        assert _direct_handler() is handler
        access_logger.addHandler(logging.NullHandler())  # another way out: through logging
        assert _direct_handler() is None
        access_logger.handlers.clear()
        handler.addFilter(lambda record: True)
        assert _direct_handler() is None
    finally:
        access_logger.handlers.clear()
        root.handlers[:], level = saved
        root.setLevel(level)
