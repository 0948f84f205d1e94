"""The Redis rate limiter: the algorithm of ``base`` in one Lua script, one round trip per request.

The script runs through a :class:`~gateway.ratelimit.pipeline.ScriptPipeline`: the decisions of every request in
flight share one write and one read on one connection (auto-pipelining); on NOSCRIPT (a restarted or flushed
Redis) the call is re-sent as EVAL, so a Redis restart needs no special handling here. By default the script
reads Redis's clock (``TIME``), so every replica judges against the same time; tests pass ``clock`` to drive
time themselves. On a Redis Cluster the calls go through redis-py's cluster client instead
(:class:`~gateway.ratelimit.pipeline.ClusterScript`); a decision's keys share one hash tag, so one slot.

Keys: ``rl:{<identity>}`` holds the buckets (expires one window after its last hit); the optional revocation
keys (``auth:revoked:{<identity>}:...``) are only read and are named by the caller. The braces are a Redis Cluster
hash tag: a decision's keys all hash to the identity's slot.

In a sampled request (:mod:`shared.tracing`) the decision is one CLIENT span around the awaited call: the time
the request waited for its batch's round trip. Unsampled, the check costs one ContextVar read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files

from opentelemetry.semconv.attributes.db_attributes import DB_OPERATION_NAME, DB_SYSTEM_NAME
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind
from redis.asyncio.cluster import RedisCluster

from gateway.ratelimit.base import Decision, WindowConfig
from gateway.ratelimit.pipeline import ClusterScript, ScriptPipeline
from shared.keys import RedisClient
from shared.spans import child_span

KEY_PREFIX = "rl:"
SCRIPT = (files("gateway.ratelimit") / "sliding_window.lua").read_text()
SPAN_NAME = "EVALSHA ratelimit"


def bucket_key(identity: str) -> str:
    """The Redis key of ``identity``'s buckets, hash-tagged by the identity (see gateway.auth.principal)."""
    return KEY_PREFIX + "{" + identity + "}"


class RedisRateLimiter:
    def __init__(
        self,
        client: RedisClient,
        config: WindowConfig,
        *,
        clock: Callable[[], float] | None = None,
        on_round_trip: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._width_ms = repr(config.width * 1000)
        self._pipeline: ScriptPipeline | ClusterScript = (
            ClusterScript(client, SCRIPT, on_round_trip=on_round_trip)
            if isinstance(client, RedisCluster)
            else ScriptPipeline(client, SCRIPT, on_round_trip=on_round_trip)
        )
        self._span_attributes = _span_attributes(client)

    @property
    def config(self) -> WindowConfig:
        return self._config

    async def hit(self, key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        return await self._run(key, limit, cost, revocation_keys)

    async def peek(self, key: str, limit: int) -> Decision:
        return await self._run(key, limit, 0, ())

    async def close(self) -> None:
        await self._pipeline.close()

    async def _run(self, key: str, limit: int, cost: int, revocation_keys: Sequence[str]) -> Decision:
        keys = [bucket_key(key), *revocation_keys]
        now_ms = -1 if self._clock is None else round(self._clock() * 1000)
        with child_span(SPAN_NAME, kind=SpanKind.CLIENT, attributes=self._span_attributes):
            verdict, total, reset_ms, retry_ms = await self._pipeline.run(
                keys, (limit, cost, self._width_ms, self._config.buckets, now_ms)
            )
        if int(verdict) < 0:
            return Decision(allowed=False, limit=limit, remaining=0, reset=0.0, revoked=True)
        return Decision(
            allowed=int(verdict) == 1,
            limit=limit,
            remaining=max(limit - int(total), 0),
            reset=int(reset_ms) / 1000,
            retry_after=int(retry_ms) / 1000,
        )


def _span_attributes(client: RedisClient) -> dict[str, str | int]:
    """Built once: the decision span's attributes (the server where the client knows it: not behind Sentinel)."""
    attributes: dict[str, str | int] = {DB_SYSTEM_NAME: "redis", DB_OPERATION_NAME: "EVALSHA"}
    if isinstance(client, RedisCluster):
        return attributes
    options = client.connection_pool.connection_kwargs
    host, port = options.get("host"), options.get("port")
    if isinstance(host, str):
        attributes[SERVER_ADDRESS] = host
    if isinstance(port, int):
        attributes[SERVER_PORT] = port
    return attributes
