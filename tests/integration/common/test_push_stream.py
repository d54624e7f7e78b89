"""The push stream ends when closed, even if a cancellation is lost under its loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.common.verify.stream import READ_SECONDS, Follower, PushStream
from tests.conftest import RedisProcess


async def test_close_ends_the_stream_even_when_a_cancellation_is_lost(
    make_redis: Callable[..., RedisProcess],
) -> None:
    # Seen under CPU load: a stream's task read on after cancel() (the cancellation lost
    # inside the Redis client), and close() waited for it forever. Here a hook loses it.
    store = make_redis()
    stream = PushStream(store.url, 0.5)
    in_hook, lost = asyncio.Event(), asyncio.Event()

    async def on_connect() -> None:
        in_hook.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            lost.set()  # swallowed, as the client did

    stream.follow(Follower("channel", lambda data: None, on_connect=on_connect))
    await stream.start()
    await asyncio.wait_for(in_hook.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(stream.close(), 3 * READ_SECONDS + 2)
    assert lost.is_set()  # the first cancellation did land in the hook, and was lost
    assert loop.time() - started < 3 * READ_SECONDS + 2


async def test_close_while_reading_ends_in_time(make_redis: Callable[..., RedisProcess]) -> None:
    store = make_redis()
    stream = PushStream(store.url, 0.5)
    seen: list[bytes] = []
    stream.follow(Follower("channel", seen.append))
    await stream.start()
    await asyncio.wait_for(stream.connected.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(stream.close(), 5)
    assert loop.time() - started < 3 * READ_SECONDS + 2
    assert stream._task is not None and stream._task.done()
