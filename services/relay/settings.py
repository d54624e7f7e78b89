"""Settings of a relay, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from services.common.settings import (
    ConfigError,
    ServerSettings,
    VerifierSettings,
    read_service_settings,
    setting,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings
    # The same verifier settings as orders: every design runs on a relay as it runs on orders.
    verifier: VerifierSettings
    # The next relay's base URL; empty: this relay is the last of its chain.
    next_url: str = setting("RELAY_NEXT_URL", "", parse=lambda v: v.rstrip("/"))
    # The whole call to the next relay (connect included).
    timeout_seconds: float = setting("RELAY_TIMEOUT_SECONDS", 2.0, minimum=0.01)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        settings = read_service_settings(cls, env, port=8090)
        if settings.next_url:
            url = URL(settings.next_url)
            if url.scheme != "http" or not url.host or url.path not in ("", "/") or url.query:
                raise ConfigError(
                    f"RELAY_NEXT_URL must be http://host[:port], not {settings.next_url!r}"
                )
        return settings
