"""The auth modes the load tests compare, in one table: name, Locust user class, stack settings.

The bench, the report, the locustfile and the tests read this table; nothing else spells a
mode's user class or settings. It imports nothing from Locust (which patches the standard
library when imported), so the bench and the report can use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Credential = Literal["session", "jwt"]

# Where each kind of credential is issued, through the gateway.
LOGIN_PATH: Mapping[Credential, str] = {"session": "/auth/session", "jwt": "/auth/token"}


@dataclass(frozen=True, slots=True)
class Mode:
    name: str  # as in results.json and the report's columns
    user_class: str  # the Locust class in loadtests/locustfile.py
    credential: Credential
    settings: Mapping[str, str]  # what the services run with while this mode is measured

    @property
    def revocation(self) -> str:
        return self.settings["JWT_REVOCATION"]

    def measurable_on(self, revocation: str) -> bool:
        """Whether a running stack with this JWT_REVOCATION serves this mode as measured.

        Sessions never read JWT_REVOCATION, so any stack serves them.
        """
        return self.credential == "session" or self.revocation == revocation


# Sessions ignore JWT_REVOCATION; they run with push, the services' default, so the session and
# jwt-push phases share one start of the services.
SESSION = Mode("session", "SessionUser", "session", {"JWT_REVOCATION": "push"})
JWT_OFF = Mode("jwt-off", "JwtOffUser", "jwt", {"JWT_REVOCATION": "off"})
JWT_PUSH = Mode("jwt-push", "JwtPushUser", "jwt", {"JWT_REVOCATION": "push"})

MODES: tuple[Mode, ...] = (SESSION, JWT_OFF, JWT_PUSH)  # the report's column order
BY_NAME: Mapping[str, Mode] = {mode.name: mode for mode in MODES}

# The one-off experiments (store outage, credential size) log in once per kind of credential,
# with the mode that stands for it; the report shows that figure for every mode of the kind.
STANDS_FOR: Mapping[Credential, Mode] = {"session": SESSION, "jwt": JWT_PUSH}
