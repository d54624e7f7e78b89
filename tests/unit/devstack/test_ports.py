"""devstack's free ports: distinct within a process, outside the kernel's ephemeral range where
there is room (an outgoing connection could take one before its server binds it), a cluster
node's bus port with its port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from devstack import processes
from devstack.processes import LOWEST_PORT, MIN_SPAN, ephemeral_range, free_port, port_span
from devstack.stores import CLUSTER_BUS_OFFSET, free_cluster_port


def outside_ephemeral(port: int) -> bool:
    low, high = ephemeral_range()
    return not low <= port <= high and LOWEST_PORT <= port <= 65535


@pytest.mark.parametrize(
    ("kernel", "offset", "span"),
    [
        ((32768, 60999), 0, (20000, 32768)),  # Linux's default
        ((32768, 60999), 10000, (20000, 22768)),
        ((40000, 60999), 10000, (20000, 30000)),
        ((1024, 60999), 0, (61000, 65536)),  # nothing under: above
        ((1024, 60999), 10000, None),  # nor above, with the bus port: the kernel picks
        ((1024, 65535), 0, None),  # a load machine's widened range
        ((21000, 60999), 0, (61000, 65536)),
    ],
)
def test_the_span_keeps_out_of_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch,
    kernel: tuple[int, int],
    offset: int,
    span: tuple[int, int] | None,
) -> None:
    monkeypatch.setattr(processes, "ephemeral_range", lambda: kernel)
    assert port_span(offset) == span
    if span is not None:
        lo, hi = span
        assert hi - lo >= MIN_SPAN
        assert hi - 1 + offset < kernel[0] or lo > kernel[1]
    port = free_port(offset)  # a port either way, never an error
    assert port + offset <= 65535


def test_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(outside_ephemeral(p) for p in ports), [p for p in ports if not outside_ephemeral(p)]


@pytest.fixture
def tiny_span(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    """A span of 40 free ports (of this machine's) with nothing handed out yet: a port's fate
    is then certain, not a matter of which of 12,000 came up."""
    monkeypatch.setattr(processes, "_handed_out", set())
    lo = next(
        start
        for start in range(LOWEST_PORT, 30000, 40)
        if all(processes._bindable(p) for p in range(start, start + 40))
    )
    monkeypatch.setattr(processes, "port_span", lambda offset=0: (lo, lo + 40 - offset))
    yield lo, lo + 40


def test_every_port_of_a_span_once_then_an_error(tiny_span: tuple[int, int]) -> None:
    lo, hi = tiny_span
    assert sorted(free_port() for _ in range(hi - lo)) == list(range(lo, hi))
    with pytest.raises(processes.StackError, match="no free port"):
        free_port()


def test_a_cluster_port_takes_its_bus_port_with_it(tiny_span: tuple[int, int]) -> None:
    lo, hi = tiny_span
    offset = 20
    node = free_port(offset=offset)
    others = {free_port() for _ in range(hi - lo - 2)}
    assert node + offset not in others and node not in others
    assert others | {node, node + offset} == set(range(lo, hi))


def test_a_port_something_listens_on_is_never_handed_out(tiny_span: tuple[int, int]) -> None:
    lo, hi = tiny_span
    with socket.socket() as held:
        held.bind(("127.0.0.1", lo + 7))
        held.listen()
        handed = {free_port() for _ in range(hi - lo - 1)}
    assert lo + 7 not in handed and len(handed) == hi - lo - 1


def test_cluster_ports_and_their_bus_ports_stay_outside_the_ephemeral_range() -> None:
    nodes = [free_cluster_port() for _ in range(12)]
    taken = nodes + [n + CLUSTER_BUS_OFFSET for n in nodes]
    assert len(set(taken)) == len(taken)
    assert all(outside_ephemeral(p) for p in taken)


def test_a_reserved_port_is_never_handed_out_nor_a_bus_port(tiny_span: tuple[int, int]) -> None:
    # `make up` under a test takes its gateway's port from the test's own process: its cluster
    # nodes, chosen here, must not take it as a bus port.
    lo, hi = tiny_span
    offset = 20
    gateway = lo + offset + 3
    processes.reserve([gateway])
    nodes = {free_port(offset=offset) for _ in range(offset - 1)}
    assert gateway - offset not in nodes and gateway not in nodes
    assert len(nodes) == offset - 1  # every node port but the one whose bus is the gateway's
    others = {free_port() for _ in range(hi - lo - 2 * len(nodes) - 1)}
    assert others and gateway not in others
    with pytest.raises(processes.StackError, match="no free port"):
        free_port()
