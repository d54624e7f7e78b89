"""The gateway's replica pool: DNS expansion (compose replicas) and health-ordered round-robin."""

from __future__ import annotations

from yarl import URL

from services.gateway.proxy import UpstreamPool


async def test_resolve_expands_a_name_to_every_address_and_keeps_health() -> None:
    pool = UpstreamPool("orders", ("http://localhost:8082",))
    assert [str(r.url) for r in pool.replicas] == ["http://localhost:8082"]
    await pool.resolve()
    urls = {str(r.url) for r in pool.replicas}
    assert "http://127.0.0.1:8082" in urls and "http://localhost:8082" not in urls
    pool.replicas[0].healthy = False
    first = pool.replicas[0].url
    await pool.resolve()
    assert next(r for r in pool.replicas if r.url == first).healthy is False


async def test_unresolvable_name_keeps_the_last_known_replicas() -> None:
    pool = UpstreamPool("orders", ("http://no-such-host.invalid:8082",))
    await pool.resolve()
    assert [r.url for r in pool.replicas] == [URL("http://no-such-host.invalid:8082")]


def test_round_robin_prefers_healthy_replicas() -> None:
    pool = UpstreamPool("orders", ("http://a:1", "http://b:1", "http://c:1"))
    firsts = [pool.order()[0].url.host for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    pool.replicas[1].healthy = False
    for _ in range(6):
        order = pool.order()
        assert [r.url.host for r in order][-1] == "b"  # tried last, but still tried
        assert len(order) == 3
