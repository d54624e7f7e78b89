"""Run the gateway: `python -m services.gateway`."""

import os

from services.common.runtime import serve
from services.gateway.app import create_app
from services.gateway.settings import Settings

settings = Settings.from_env(os.environ)
serve("gateway", settings.server, lambda: create_app(settings))
