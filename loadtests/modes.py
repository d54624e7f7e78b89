"""The designs the load tests compare, in one table: name, Locust user class, credential, settings.

The bench, the report, the locustfile and the tests read this table; nothing else spells a
mode's user class or settings. It imports nothing from Locust (which patches the standard
library when imported), so the bench and the report can use it too.

A mode is two things: the credential as the client holds it (how it logs in, how the credential
travels) and the settings the services run with while it is measured. Every mode states all of
SETTING_NAMES, so switching from any mode to any other restarts the services with exactly the
settings that differ, and nothing is left over from the mode before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["session", "jwt"]  # what the verifiers check
Carrier = Literal["header", "cookie"]  # how the client presents it

# The settings that choose a design; every mode states each of them.
REVOCATION, CACHE, EXCHANGE = "JWT_REVOCATION", "SESSION_CACHE", "GATEWAY_TOKEN_EXCHANGE"
SETTING_NAMES = (REVOCATION, CACHE, EXCHANGE)


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential as a client holds it: where it logs in and how the credential travels.

    header: `Authorization: Bearer`; cookie: the cookie jar carries it, and unsafe requests
    echo the CSRF token the login answered in `X-CSRF-Token`.
    """

    name: str  # one per way of holding it: the designs that share it log in alike
    kind: Kind
    carrier: Carrier
    login_path: str
    login_fields: Mapping[str, str]  # sent beside username and password

    def login_body(self, username: str, password: str) -> dict[str, str]:
        return {"username": username, "password": password, **self.login_fields}


SESSION_COOKIE = Credential("session", "session", "cookie", "/auth/session", {})
BEARER_JWT = Credential("jwt", "jwt", "header", "/auth/token", {})
COOKIE_JWT = Credential("jwt-cookie", "jwt", "cookie", "/auth/token", {"carrier": "cookie"})
CREDENTIALS: tuple[Credential, ...] = (SESSION_COOKIE, BEARER_JWT, COOKIE_JWT)


def settings(
    *, revocation: str = "push", cache: str = "off", exchange: str = "off"
) -> Mapping[str, str]:
    """A design's settings, every one of SETTING_NAMES stated; the defaults are the services'."""
    return {REVOCATION: revocation, CACHE: cache, EXCHANGE: exchange}


@dataclass(frozen=True, slots=True)
class Mode:
    name: str  # as in results.json and the report's columns
    user_class: str  # the Locust class in loadtests/locustfile.py
    credential: Credential
    settings: Mapping[str, str]  # what the services run with while this mode is measured

    def __post_init__(self) -> None:
        if set(self.settings) != set(SETTING_NAMES):
            raise ValueError(f"mode {self.name} must state exactly {', '.join(SETTING_NAMES)}")

    @property
    def revocation(self) -> str:
        return self.settings[REVOCATION]

    @property
    def exchanges(self) -> bool:
        """The hybrid: the gateway swaps the session for an internal JWT."""
        return self.settings[EXCHANGE] == "on"

    @property
    def judged_by(self) -> tuple[str, ...]:
        """The settings that change what this mode measures; the others are stated so the bench
        runs every mode on the same footing, but a stack that differs there serves it alike.

        Sessions never read JWT_REVOCATION, except the hybrid's, whose internal tokens are JWTs
        revoked through it; JWTs never touch the session cache or the exchange.
        """
        if self.credential.kind == "jwt":
            return (REVOCATION,)
        if self.exchanges:
            return SETTING_NAMES
        return (CACHE, EXCHANGE)

    def mismatches(self, running: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """Settings this mode is judged by that `running` (as far as it is known) contradicts:
        name -> (running value, expected value)."""
        return {
            name: (running[name], self.settings[name])
            for name in self.judged_by
            if name in running and running[name] != self.settings[name]
        }


# Column order: from the most state checked per request to the least (the session store on
# every hop; in memory at every hop; at the edge only; a pushed denylist; nothing), then the
# same JWT carried by a cookie instead of a header.
SESSION = Mode("session", "SessionUser", SESSION_COOKIE, settings())
SESSION_CACHED = Mode("session-cached", "SessionCachedUser", SESSION_COOKIE, settings(cache="push"))
HYBRID = Mode("hybrid", "HybridUser", SESSION_COOKIE, settings(cache="push", exchange="on"))
JWT_PUSH = Mode("jwt-push", "JwtPushUser", BEARER_JWT, settings())
JWT_OFF = Mode("jwt-off", "JwtOffUser", BEARER_JWT, settings(revocation="off"))
JWT_COOKIE = Mode("jwt-cookie", "JwtCookieUser", COOKIE_JWT, settings())

MODES: tuple[Mode, ...] = (SESSION, SESSION_CACHED, HYBRID, JWT_PUSH, JWT_OFF, JWT_COOKIE)
BY_NAME: Mapping[str, Mode] = {mode.name: mode for mode in MODES}


def select(names: Sequence[str]) -> list[Mode]:
    """The modes named (in table order); every mode when `names` is empty. An unknown name
    ends the program with the names the table has."""
    if not names:
        return list(MODES)
    unknown = sorted(set(names) - {m.name for m in MODES})
    if unknown:
        known = ", ".join(m.name for m in MODES)
        raise SystemExit(f"unknown design(s) {', '.join(unknown)}; the table has {known}")
    return [m for m in MODES if m.name in names]


def settings_groups(modes: Sequence[Mode]) -> list[list[Mode]]:
    """The modes grouped by identical settings, groups and members in the order given: the
    modes of one group are measured on one start of the services."""
    groups: dict[tuple[tuple[str, str], ...], list[Mode]] = {}
    for mode in modes:
        groups.setdefault(tuple(sorted(mode.settings.items())), []).append(mode)
    return list(groups.values())


# What a gateway's /metrics reveals of its settings (the gateway is all a client can reach).
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The labelled samples of one metric in Prometheus text: (labels, value) each."""
    return [
        (dict(_LABEL.findall(labels)), float(value))
        for metric, labels, value in _SAMPLE.findall(metrics_text)
        if metric == name
    ]


def revealed_settings(metrics_text: str) -> dict[str, str]:
    """The settings one gateway's /metrics text shows, by name; what it cannot show is left out.

    JWT_REVOCATION: `authscale_info`'s label, always there. The other two show only through
    what this gateway did with sessions, so they are read only once it has verified one
    (`auth_checks_total{mode="session",result="ok"}`): SESSION_CACHE=push gives every such
    look-up a `session_cache_total` series; with GATEWAY_TOKEN_EXCHANGE=on a session's first
    request through it costs an exchange (`token_exchanges_total{result="miss"}`, exported at 0
    whatever the setting). Reading it from the same text keeps the answer true behind a load
    balancer, where /metrics may come from another replica than one's own requests went to.
    """
    revealed: dict[str, str] = {}
    for labels, _ in _samples(metrics_text, "authscale_info"):
        if "jwt_revocation" in labels:
            revealed[REVOCATION] = labels["jwt_revocation"]
    checks = _samples(metrics_text, "auth_checks_total")
    if any(lb.get("mode") == "session" and lb.get("result") == "ok" and v > 0 for lb, v in checks):
        misses = _samples(metrics_text, "token_exchanges_total")
        exchanged = any(lb.get("result") == "miss" and v > 0 for lb, v in misses)
        revealed[EXCHANGE] = "on" if exchanged else "off"
        cached = _samples(metrics_text, "session_cache_total")
        revealed[CACHE] = "push" if cached else "off"
    return revealed
