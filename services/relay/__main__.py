"""Run a relay: `python -m services.relay`."""

import os

from services.common.runtime import serve
from services.relay.app import create_app
from services.relay.settings import Settings

settings = Settings.from_env(os.environ)
serve("relay", settings.server, lambda: create_app(settings))
