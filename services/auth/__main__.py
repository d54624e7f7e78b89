"""Run the auth service: `python -m services.auth`."""

import os

from services.auth.app import create_app
from services.auth.settings import Settings
from services.common.runtime import serve

settings = Settings.from_env(os.environ)
serve("auth", settings.server, lambda: create_app(settings))
