"""Settings of the gateway, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import (
    ConfigError,
    ServerSettings,
    VerifierSettings,
    read_service_settings,
    setting,
)
from services.gateway.proxy import upstream_address


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    verifier: VerifierSettings
    auth_upstreams: tuple[str, ...] = setting("AUTH_UPSTREAMS", ("http://127.0.0.1:8081",))
    orders_upstreams: tuple[str, ...] = setting(
        "ORDERS_UPSTREAMS", ("http://127.0.0.1:8082", "http://127.0.0.1:8083")
    )
    # The bench's relay chain (services/relay): its first relay(s); empty, /relay/* is not routed.
    relay_upstreams: tuple[str, ...] = setting("RELAY_UPSTREAMS", ())
    edge_auth: bool = setting("GATEWAY_EDGE_AUTH", True)
    # The hybrid: session cookies are checked here and exchanged for internal tokens.
    token_exchange: bool = setting("GATEWAY_TOKEN_EXCHANGE", False)
    upstream_timeout_seconds: float = setting("UPSTREAM_TIMEOUT_SECONDS", 5.0, minimum=0.1)
    connect_timeout_seconds: float = setting("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 1.0, minimum=0.05)
    health_interval_seconds: float = setting("HEALTH_INTERVAL_SECONDS", 1.0, minimum=0.05)
    dns_refresh_seconds: float = setting("UPSTREAM_DNS_REFRESH_SECONDS", 0.0)
    max_body_bytes: int = setting("MAX_BODY_BYTES", 64 * 1024, minimum=1024)
    # The most of an upstream's answer body the gateway reads (and holds) before it answers 502.
    upstream_max_body_bytes: int = setting(
        "UPSTREAM_MAX_BODY_BYTES", 1024 * 1024, minimum=64 * 1024
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        # Facing clients, the gateway never takes an internal token as a credential.
        settings = read_service_settings(cls, env, port=8080, accept_internal=False)
        for name, urls in (
            ("AUTH_UPSTREAMS", settings.auth_upstreams),
            ("ORDERS_UPSTREAMS", settings.orders_upstreams),
            ("RELAY_UPSTREAMS", settings.relay_upstreams),
        ):
            for url in urls:
                try:
                    upstream_address(url)
                except ValueError as exc:
                    raise ConfigError(f"{name}: {exc}") from None
        return settings
