"""authscale services: auth, orders, gateway and the shared library they import."""
