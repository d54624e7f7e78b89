"""devstack's free ports: distinct within a process, never in the kernel's ephemeral range (an
outgoing connection could take one before its server binds it), a cluster node's bus port too."""

from __future__ import annotations

import socket

from devstack.processes import ephemeral_range, free_port, port_span
from devstack.stores import CLUSTER_BUS_OFFSET, free_cluster_port


def outside_ephemeral(port: int) -> bool:
    low, high = ephemeral_range()
    return not low <= port <= high and 1024 <= port <= 65535


def test_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(outside_ephemeral(p) for p in ports), [p for p in ports if not outside_ephemeral(p)]


def test_a_cluster_port_and_its_bus_port_are_both_free_and_kept() -> None:
    nodes = [free_cluster_port() for _ in range(20)]
    taken = nodes + [n + CLUSTER_BUS_OFFSET for n in nodes]
    assert len(set(taken)) == len(taken)
    assert all(outside_ephemeral(p) for p in taken)
    later = {free_port() for _ in range(200)}
    assert not later & set(taken)  # neither a node's port nor its bus port is handed out again


def test_a_port_something_listens_on_is_never_handed_out() -> None:
    lo, hi = port_span()
    listeners = []
    try:
        # Occupy a stretch of the span; none of it may come back.
        for port in range(lo, min(lo + 64, hi)):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen()
            listeners.append(sock)
        held = {s.getsockname()[1] for s in listeners}
        assert held
        assert not held & {free_port() for _ in range(500)}
    finally:
        for sock in listeners:
            sock.close()
