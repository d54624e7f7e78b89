"""The auth app factory: key ring, stores, verifier and routes, opened and closed in cleanup_ctx."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from argon2 import PasswordHasher, Type

from services.auth.keyring import KeyRing
from services.auth.routes import keyring_key, routes, tokens_key, users_key
from services.auth.settings import Settings
from services.auth.tokens import Tokens
from services.auth.users import Users
from services.common.observability import metrics_key, ready_checks_key
from services.common.runtime import new_app
from services.common.store import make_redis, make_session_store
from services.common.verify import Verifier, verifier_key


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The auth app; clock gives every timestamp it writes or checks (tests move it)."""
    app = new_app("auth", settings.server)
    keyring = KeyRing.load(settings.keys_dir)
    app[keyring_key] = keyring
    timeout = settings.verifier.store_timeout_seconds

    async def resources(app: web.Application) -> AsyncIterator[None]:
        metrics = app[metrics_key]
        sessions = make_session_store(settings.verifier.session_store_url, timeout)
        data = make_redis(settings.verifier.data_store_url, timeout)
        verifier = Verifier(
            settings.verifier, metrics, sessions, clock=clock, static_keys=keyring.public
        )
        hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        users = Users(
            data,
            sessions,
            metrics,
            hasher,
            max_failures=settings.login_max_failures,
            window_seconds=settings.login_window_seconds,
            queue_seconds=settings.login_queue_seconds,
        )
        app[verifier_key] = verifier
        app[users_key] = users
        app[tokens_key] = Tokens(
            keyring,
            data,
            sessions,
            metrics,
            issuer=settings.verifier.issuer,
            audience=settings.verifier.audience,
            access_seconds=settings.access_token_seconds,
            refresh_seconds=settings.refresh_token_seconds,
            internal_audience=settings.verifier.internal_audience,
            internal_seconds=settings.internal_token_seconds,
            clock=clock,
        )
        await verifier.start()
        await users.start()

        async def data_ready() -> None:
            await data.ping()

        app[ready_checks_key].extend([verifier.ready, data_ready])
        try:
            yield
        finally:
            users.close()
            await verifier.close()
            await sessions.aclose()
            await data.aclose()

    app.cleanup_ctx.append(resources)
    app.add_routes(routes)
    return app
