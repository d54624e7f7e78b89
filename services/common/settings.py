"""Settings read once from the environment: each one declared once, with its default.

A settings dataclass declares every variable as `name: int = setting("VAR", 300, minimum=1)`;
`read_env(cls, env)` reads them all, parsing by the default's type. Nothing is read at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

S = TypeVar("S")
V = TypeVar("V")

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


def setting(
    env: str,
    default: V,
    *,
    minimum: float | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    secret: bool = False,
) -> V:
    """A field read from variable `env`; its default is written here and nowhere else."""
    metadata: dict[str, Any] = {
        "env": env,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "parse": parse,
    }
    return field(default=default, repr=not secret, metadata=metadata)


def _read(env: Mapping[str, str], meta: Mapping[str, Any], default: object) -> object:
    name, minimum = meta["env"], meta["minimum"]
    if isinstance(default, bool):
        return env_bool(env, name, default)
    if isinstance(default, int):
        return env_int(env, name, default, minimum=int(minimum or 0), maximum=meta["maximum"])
    if isinstance(default, float):
        return env_float(env, name, default, minimum=float(minimum or 0.0))
    if isinstance(default, tuple):
        if not default and not env.get(name):  # an optional list: unset is empty
            return ()
        return env_list(env, name, ",".join(default))
    if isinstance(default, Path):
        return Path(env_str(env, name, str(default)))
    if meta["choices"]:
        return env_choice(env, name, str(default), meta["choices"])
    value = env_str(env, name, str(default))
    return meta["parse"](value) if meta["parse"] else value


def read_env(
    cls: type[S],
    env: Mapping[str, str],
    *,
    defaults: Mapping[str, object] | None = None,
    **given: object,
) -> S:
    """An instance of the settings dataclass cls, every `setting` field read from env.

    given: values decided by the caller (nested settings, fields read another way);
    defaults: a caller's own default for a field (a service's port).
    """
    values = dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in values or "env" not in f.metadata:
            continue
        default = (defaults or {}).get(f.name, f.default)
        values[f.name] = _read(env, f.metadata, default)
    return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where a service listens and how it logs."""

    host: str = setting("HOST", "127.0.0.1")
    port: int = setting("PORT", 0, maximum=65535)
    log_level: str = setting("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    # A connection that has not completed a request's headers by then is closed (slowloris).
    keepalive_timeout_seconds: float = setting("KEEPALIVE_TIMEOUT_SECONDS", 15.0, minimum=0.1)
    # A request body that has not fully arrived by then is answered 408.
    body_timeout_seconds: float = setting("BODY_TIMEOUT_SECONDS", 10.0, minimum=0.1)

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_port: int) -> ServerSettings:
        return read_env(cls, env, defaults={"port": default_port})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifierSettings:
    """How a service verifies credentials; the same variables for every service."""

    issuer: str = setting("JWT_ISSUER", "http://authscale-auth")
    audience: str = setting("JWT_AUDIENCE", "authscale")
    # The hybrid's internal tokens (minted by auth for the gateway): accepted downstream only.
    internal_audience: str = setting("JWT_INTERNAL_AUDIENCE", "authscale-internal")
    accept_internal: bool = True  # the gateway, facing clients, sets False
    leeway_seconds: int = setting("JWT_LEEWAY_SECONDS", 30, maximum=30)
    # Key sources: JWT_PUBLIC_KEY_FILE or JWT_JWKS_URL, read in from_env (auth reads neither).
    public_key_files: tuple[str, ...] = ()
    jwks_url: str | None = None
    jwks_refresh_seconds: float = setting("JWKS_REFRESH_SECONDS", 300.0, minimum=1.0)
    jwks_cooldown_seconds: float = setting("JWKS_COOLDOWN_SECONDS", 30.0)
    revocation: str = setting("JWT_REVOCATION", "push", choices=("push", "off"))
    token_cache_size: int = setting("JWT_CACHE_SIZE", 10_000)
    session_store_url: str = setting("SESSION_STORE_URL", "redis://127.0.0.1:6379/0", secret=True)
    # The durable record of revoked jtis lives in the data store; verifiers reload from it.
    data_store_url: str = setting("DATA_STORE_URL", "redis://127.0.0.1:6380/0", secret=True)
    session_idle_seconds: int = setting("SESSION_IDLE_SECONDS", 1800, minimum=1)
    session_absolute_seconds: int = setting("SESSION_ABSOLUTE_SECONDS", 28_800, minimum=1)
    session_touch_seconds: int = setting("SESSION_TOUCH_SECONDS", 60)
    # push: keep session records in memory, invalidated through the session store's channel.
    session_cache: str = setting("SESSION_CACHE", "off", choices=("off", "push"))
    session_cache_size: int = setting("SESSION_CACHE_SIZE", 10_000, minimum=1)
    store_timeout_seconds: float = setting("STORE_TIMEOUT_SECONDS", 0.5, minimum=0.01)
    cookie_secure: bool = setting("COOKIE_SECURE", False)
    # Every answer tells each hop's credential check (services/common/verify/timing.py); off by
    # default because the entries show cache state.
    server_timing: bool = setting("SERVER_TIMING", False)

    @property
    def cookie_name(self) -> str:
        """The session cookie."""
        return "__Host-sid" if self.cookie_secure else "sid"

    @property
    def access_cookie_name(self) -> str:
        """The access token, when the cookie carries it (`"carrier": "cookie"`)."""
        return "__Host-at" if self.cookie_secure else "at"

    @property
    def refresh_cookie_name(self) -> str:
        """The refresh token of the cookie carrier, sent only to /auth/refresh."""
        return "__Secure-rt" if self.cookie_secure else "rt"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, own_keys: bool = False, accept_internal: bool = True
    ) -> VerifierSettings:
        """own_keys: the caller (auth) verifies with its own key ring, so no key source is read.
        accept_internal: whether internal-audience tokens are credentials here (not at the edge).
        """
        jwks_url = None if own_keys else env.get("JWT_JWKS_URL") or None
        key_files: tuple[str, ...] = ()
        if jwks_url is None and not own_keys:
            key_files = env_list(env, "JWT_PUBLIC_KEY_FILE", str(REPO_ROOT / "keys" / "public.pem"))
        return read_env(
            cls,
            env,
            public_key_files=key_files,
            jwks_url=jwks_url,
            accept_internal=accept_internal,
        )


def read_service_settings(
    cls: type[S], env: Mapping[str, str], *, port: int, **verifier: bool
) -> S:
    """A service's settings: where it listens (default `port`), how it verifies (verifier:
    VerifierSettings.from_env's options), and its own `setting` fields."""
    return read_env(
        cls,
        env,
        server=ServerSettings.from_env(env, port),
        verifier=VerifierSettings.from_env(env, **verifier),
    )
