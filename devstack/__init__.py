"""The local stack for development, tests and the bench: not part of the services or the image.

processes  spawn (children that die with this process), free_port, ProcessGroup, StackError
stores     redis_probe, redis_ping, RedisServer, RedisClusterServers (throwaway local Redis)
stack      Ports, Stack (the whole topology on loopback), Interrupted
client     http_json, ensure_user (a blocking JSON client)
launcher   `python -m devstack` behind `make up` (signals, banner, the demo user)
otlp       a trace receiver (OTLP/HTTP) for the tracing test and the bench
"""
