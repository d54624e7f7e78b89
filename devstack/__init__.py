"""The local stack for development, tests and the bench: not part of the services or the image.

stack     Ports, Stack (the whole topology on loopback), RedisServer, RedisClusterServers
__main__  the launcher behind `make up` (signals, banner, the demo user)
"""
