"""Redis Sentinel: with a ``redis+sentinel://`` REDIS_URL the cache follows a failover: after the primary is
killed and a replica promoted, writes are still announced and every instance's L1 keeps coherent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.resources import parse_sentinel_url
from stack.services.ports import free_port
from stack.services.redis import EmbeddedRedis
from stack.services.sentinel import EmbeddedSentinel
from tests.integration.cache_support import cache_instance
from tests.support.polling import wait_until
from tests.support.servers import skip_unless_embedded_servers

pytestmark = pytest.mark.integration
SERVICE = "scalable"


def test_sentinel_urls_parse() -> None:
    target = parse_sentinel_url("redis+sentinel://:s3cret@a:26379,[::1]:26380/mymaster/2")
    assert target.sentinels == (("a", 26379), ("::1", 26380))
    assert (target.service, target.db, target.password) == ("mymaster", 2, "s3cret")
    with pytest.raises(ValueError, match="service name"):
        parse_sentinel_url("redis+sentinel://a:26379")


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis, EmbeddedSentinel]]:
    skip_unless_embedded_servers()
    with ExitStack() as stack:
        primary = stack.enter_context(EmbeddedRedis(tmp_path / "primary", free_port()))
        replica = stack.enter_context(
            EmbeddedRedis(tmp_path / "replica", free_port(), extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
        )
        sentinel = stack.enter_context(
            EmbeddedSentinel(
                tmp_path / "sentinel", free_port(), service=SERVICE, primary_host="127.0.0.1", primary_port=primary.port
            )
        )
        yield primary, replica, sentinel


async def test_cache_invalidation_survives_a_failover(
    topology: tuple[EmbeddedRedis, EmbeddedRedis, EmbeddedSentinel],
) -> None:
    primary, replica, sentinel = topology
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
    async with cache_instance(url, "a") as writer, cache_instance(url, "b") as reader:

        async def loader() -> tuple[int, bytes]:
            return 1, b"v1"

        async def reader_sees(payload: bytes) -> bool:
            return (await reader.get("res:1", loader)).entry.payload == payload

        await reader.get("res:1", loader)
        await writer.write_through("res:1", writer.entry_for_write(2, b"v2"))
        await wait_until(lambda: reader_sees(b"v2"), within=2)

        primary.kill()
        watcher = aioredis.Redis(port=sentinel.port)
        try:

            async def promoted() -> bool:
                address = await watcher.sentinel_get_master_addr_by_name(SERVICE)
                return isinstance(address, tuple | list) and int(address[1]) == replica.port

            await wait_until(promoted, within=20, interval=0.2)
        finally:
            await watcher.aclose()

        async def announced() -> bool:
            # Until the writer's breaker lets it reach the new primary, the write is not yet announced.
            await writer.write_through("res:1", writer.entry_for_write(3, b"v3"))
            return await reader_sees(b"v3") and reader.l1_enabled

        await wait_until(announced, within=15, interval=0.2)
        cached = await writer.l2.get("res:1")
        assert cached is not None
        assert cached.payload == b"v3"
