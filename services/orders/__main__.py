"""Run the orders service: `python -m services.orders`."""

import os

from services.common.runtime import serve
from services.orders.app import create_app
from services.orders.settings import Settings

settings = Settings.from_env(os.environ)
serve("orders", settings.server, lambda: create_app(settings))
