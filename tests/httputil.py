"""A throwaway HTTP server on a loopback port, for the fakes the unit tests talk to."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def serving(
    handler: type[http.server.BaseHTTPRequestHandler], **state: Any
) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serve with `handler` on a free port from a daemon thread until the block ends; each
    keyword becomes an attribute of the server, which the handler reads as self.server.<name>."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
