"""Environment parsing helpers shared by every service's frozen Settings dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required")
        return default
    return value


def env_int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in env_str(env, name, default).split(",") if part.strip())
    if not items:
        raise ConfigError(f"{name} must list at least one value")
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where a service listens and how it logs."""

    host: str = "127.0.0.1"
    port: int
    log_level: str = "INFO"
    # A connection that has not completed a request's headers by then is closed (slowloris).
    keepalive_timeout_seconds: float = 15.0
    # A request body that has not fully arrived by then is answered 408.
    body_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_port: int) -> ServerSettings:
        return cls(
            host=env_str(env, "HOST", "127.0.0.1"),
            port=env_int(env, "PORT", default_port, minimum=0, maximum=65535),
            log_level=env_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            keepalive_timeout_seconds=env_float(
                env, "KEEPALIVE_TIMEOUT_SECONDS", 15.0, minimum=0.1
            ),
            body_timeout_seconds=env_float(env, "BODY_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifierSettings:
    """How a service verifies credentials; the same variables for every service."""

    issuer: str = "http://authscale-auth"
    audience: str = "authscale"
    leeway_seconds: int = 30
    public_key_files: tuple[str, ...] = ()
    jwks_url: str | None = None
    jwks_refresh_seconds: float = 300.0
    jwks_cooldown_seconds: float = 30.0
    revocation: str = "push"
    token_cache_size: int = 10_000
    session_store_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    # The durable record of revoked jtis lives in the data store; verifiers reload from it.
    data_store_url: str = field(default="redis://127.0.0.1:6380/0", repr=False)
    session_idle_seconds: int = 1800
    session_absolute_seconds: int = 28_800
    session_touch_seconds: int = 60
    store_timeout_seconds: float = 0.5
    cookie_secure: bool = False

    @property
    def cookie_name(self) -> str:
        return "__Host-sid" if self.cookie_secure else "sid"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, own_keys: bool = False) -> VerifierSettings:
        """own_keys: the caller (auth) verifies with its own key ring, so no key source is read."""
        jwks_url = None if own_keys else env.get("JWT_JWKS_URL") or None
        key_files: tuple[str, ...] = ()
        if jwks_url is None and not own_keys:
            key_files = env_list(env, "JWT_PUBLIC_KEY_FILE", str(REPO_ROOT / "keys" / "public.pem"))
        return cls(
            issuer=env_str(env, "JWT_ISSUER", "http://authscale-auth"),
            audience=env_str(env, "JWT_AUDIENCE", "authscale"),
            leeway_seconds=env_int(env, "JWT_LEEWAY_SECONDS", 30, minimum=0, maximum=30),
            public_key_files=key_files,
            jwks_url=jwks_url,
            jwks_refresh_seconds=env_float(env, "JWKS_REFRESH_SECONDS", 300.0, minimum=1.0),
            jwks_cooldown_seconds=env_float(env, "JWKS_COOLDOWN_SECONDS", 30.0, minimum=0.0),
            revocation=env_choice(env, "JWT_REVOCATION", "push", ("push", "off")),
            token_cache_size=env_int(env, "JWT_CACHE_SIZE", 10_000, minimum=0),
            session_store_url=env_str(env, "SESSION_STORE_URL", "redis://127.0.0.1:6379/0"),
            data_store_url=env_str(env, "DATA_STORE_URL", "redis://127.0.0.1:6380/0"),
            session_idle_seconds=env_int(env, "SESSION_IDLE_SECONDS", 1800, minimum=1),
            session_absolute_seconds=env_int(env, "SESSION_ABSOLUTE_SECONDS", 28_800, minimum=1),
            session_touch_seconds=env_int(env, "SESSION_TOUCH_SECONDS", 60, minimum=0),
            store_timeout_seconds=env_float(env, "STORE_TIMEOUT_SECONDS", 0.5, minimum=0.01),
            cookie_secure=env_bool(env, "COOKIE_SECURE", False),
        )
