"""The rate limiter on a real Redis Cluster (3 masters, 3 replicas): exact verdicts with keys spread over every
master, revocation read in the same call, and a master killed mid-run replaced by its replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from gateway.auth.principal import TOKEN, revocation_marker
from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.redis import RedisRateLimiter, bucket_key
from shared.resources import make_redis_cluster, parse_cluster_url
from stack.services.cluster import EmbeddedCluster
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration

CONFIG = WindowConfig(window=60.0, buckets=60)


@pytest.fixture
def cluster(redis_cluster: EmbeddedCluster) -> EmbeddedCluster:
    return redis_cluster


@pytest.fixture
async def client(cluster: EmbeddedCluster) -> AsyncIterator[RedisCluster]:
    cluster.wait_until_healthy()
    redis = make_redis_cluster(cluster.url)
    await redis.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield redis
    finally:
        await redis.aclose()


def test_the_cluster_url_names_every_seed() -> None:
    target = parse_cluster_url("redis+cluster://:s3cret@10.0.0.1:7000,[::1]:7001/0")
    assert target.seeds == (("10.0.0.1", 7000), ("::1", 7001))
    assert target.password == "s3cret"
    with pytest.raises(ValueError, match="database 0"):
        parse_cluster_url("redis+cluster://10.0.0.1:7000/3")
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url("redis+cluster://10.0.0.1")


async def test_exact_verdicts_with_identities_on_every_master(client: RedisCluster, cluster: EmbeddedCluster) -> None:
    limiter = RedisRateLimiter(client, CONFIG)
    identities = [f"user:{n}" for n in range(60)]
    decisions = await asyncio.gather(*(limiter.hit(identity, 5) for identity in identities for _ in range(8)))
    admitted = dict.fromkeys(identities, 0)
    for index, decision in enumerate(decisions):
        admitted[identities[index // 8]] += decision.allowed
    assert set(admitted.values()) == {5}
    owners = {cluster.primary_of_slot(key_slot(bucket_key(identity).encode())).port for identity in identities}
    assert owners == {master.port for master in cluster.masters}  # the fleet's keys spread over the cluster
    await limiter.close()


async def test_revocation_markers_are_read_in_the_same_call(client: RedisCluster) -> None:
    limiter = RedisRateLimiter(client, CONFIG)
    marker = revocation_marker("user:77", TOKEN, "jti-1")
    assert not (await limiter.hit("user:77", 5, revocation_keys=[marker])).revoked
    await client.set(marker, b"1")
    assert (await limiter.hit("user:77", 5, revocation_keys=[marker])).revoked
    assert (await limiter.peek("user:77", 5)).remaining == 4
    await limiter.close()


async def test_a_killed_master_is_replaced_and_decisions_resume(client: RedisCluster, cluster: EmbeddedCluster) -> None:
    limiter = RedisRateLimiter(client, CONFIG)
    identity = "user:4242"
    assert (await limiter.hit(identity, 1000)).allowed
    victim = cluster.primary_of_slot(key_slot(bucket_key(identity).encode()))
    cluster.kill(victim)

    async def decided_again() -> bool:
        try:
            return (await limiter.hit(identity, 1000)).allowed
        except RedisError:
            return False  # the slot has no primary until the replica takes over

    await wait_until(decided_again, within=20, interval=0.1)
    assert cluster.primary_of_slot(key_slot(bucket_key(identity).encode())).port != victim.port
    # Identities on the other masters were never affected.
    assert (await limiter.hit("user:1", 1000)).allowed
    await limiter.close()
    cluster.restart_killed()  # the old master comes back as a replica, for the tests after this one
