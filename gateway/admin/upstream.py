"""What the admin API asks of the rest of the suite: the balancer's ``/lb/*``, every apiserver's
``/internal/*``, and the apiservers' heartbeats in Redis.

Every call carries the calling admin's identity, signed with ``INTERNAL_SECRET`` (those endpoints trust
nothing else), the admin request's ``traceparent`` (a CLIENT span when it is sampled), and a short timeout: one
dead replica makes its own entry an error, never the whole answer.
Apiserver URLs come from ``APISERVER_URLS`` when set, else from the backends the balancer reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson
from opentelemetry.trace import Span
from redis.exceptions import RedisError
from yarl import URL

from shared import spans
from shared.context import TRACEPARENT_HEADER
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.keys import APISERVER_INSTANCES_KEY, APISERVER_ROW_PREFIX, RedisClient
from shared.logging import log_traceparent

CALL_TIMEOUT = 2.0


def _client_span(method: str, url: str) -> Span | None:
    """A CLIENT span under the admin request's; None when it is not sampled."""
    if spans.active() is None:
        return None
    host = port = None
    with contextlib.suppress(ValueError):  # a malformed URL fails the call itself, with its own error
        target = URL(url)
        host, port = target.host, target.port
    return spans.start_http_call(method, url, host, port)


class UpstreamError(Exception):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class AdminClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        redis: RedisClient,
        *,
        balancer_url: str,
        apiserver_urls: tuple[str, ...],
        secret: str,
    ) -> None:
        self._session = session
        self._redis = redis
        self.balancer_url = balancer_url
        self._apiserver_urls = apiserver_urls
        self._secret = secret

    async def call(self, identity: Identity, method: str, url: str) -> Any:
        """JSON from ``url``; :class:`UpstreamError` for a non-2xx answer or no answer at all."""
        headers = {IDENTITY_HEADER: sign_identity(identity, self._secret), "Accept": "application/json"}
        span = _client_span(method, url)  # None: the admin request is not sampled
        traceparent = log_traceparent.get() if span is None else spans.traceparent_of(span)
        if traceparent is not None:  # the admin request's trace goes on to the balancer and apiservers
            headers[TRACEPARENT_HEADER] = traceparent
        try:
            async with self._session.request(
                method, url, headers=headers, timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # ValueError: a malformed URL
            if span is not None:
                spans.client_failed(span, type(exc).__qualname__)
            raise UpstreamError(f"{type(exc).__name__} calling {url}") from None
        except BaseException as exc:  # cancelled (the admin went away, shutdown): the span still ends
            if span is not None:
                spans.client_failed(span, type(exc).__qualname__)
            raise
        if span is not None:
            spans.client_answered(span, status)
            span.end()
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        if status >= 400:
            detail = payload.get("detail") if isinstance(payload, dict) else None
            raise UpstreamError(str(detail or f"{url} answered {status}"), status)
        return payload

    async def balancer(self, identity: Identity, method: str, path: str) -> Any:
        return await self.call(identity, method, self.balancer_url + path)

    async def lb_status(self, identity: Identity) -> dict[str, Any]:
        status = await self.balancer(identity, "GET", "/lb/status")
        return status if isinstance(status, dict) else {"status": status}

    async def apiservers(self, identity: Identity) -> list[str]:
        if self._apiserver_urls:
            return list(self._apiserver_urls)
        return backend_urls(await self.lb_status(identity))

    async def fan_out(self, identity: Identity, method: str, path: str) -> dict[str, Any]:
        """Ask every apiserver at once; each answer or error is reported under its URL."""
        urls = await self.apiservers(identity)
        results = await asyncio.gather(
            *(self.call(identity, method, url + path) for url in urls), return_exceptions=True
        )
        out: dict[str, Any] = {}
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, UpstreamError):
                out[url] = {"error": result.detail, "status": result.status}
            elif isinstance(result, BaseException):
                raise result
            else:
                out[url] = result
        return out

    async def heartbeats(self) -> list[dict[str, Any]]:
        """Every live apiserver's last heartbeat (SMEMBERS, then one pipelined GET each: unlike MGET, that also
        works when the keys live on different Redis Cluster nodes); ids whose snapshot expired are pruned."""
        members = await self._redis.smembers(APISERVER_INSTANCES_KEY)
        ids = sorted(member.decode() if isinstance(member, bytes) else member for member in members)
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for instance in ids:
            pipe.get(APISERVER_ROW_PREFIX + instance)
        values = await pipe.execute()
        gone = [instance for instance, value in zip(ids, values, strict=True) if value is None]
        if gone:
            with contextlib.suppress(RedisError):
                await self._redis.srem(APISERVER_INSTANCES_KEY, *gone)
        return [orjson.loads(value) for value in values if value is not None]


def backend_urls(status: dict[str, Any]) -> list[str]:
    """The apiserver base URLs in a balancer status document (``backends: [{url | base_url | address}]``)."""
    urls: list[str] = []
    backends = status.get("backends")
    if not isinstance(backends, list):
        return urls
    for backend in backends:
        if isinstance(backend, str):
            candidates: list[object] = [backend]
        elif isinstance(backend, dict):
            candidates = [backend.get(name) for name in ("url", "base_url", "address", "origin")]
        else:
            continue
        url = next((value for value in candidates if isinstance(value, str) and value.startswith("http")), None)
        if url is not None:
            urls.append(url.rstrip("/"))
    return urls
