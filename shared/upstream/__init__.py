"""The upstream HTTP/1.1 client both proxy hops use (gateway → balancer, balancer → apiserver).

parser      the response parser: llhttp (httptools) plus the refusals llhttp leaves to a proxy hop
connection  one keep-alive socket as an asyncio Protocol: writes a request, frames the response
pool        one Upstream per origin: a LIFO pool of connections, `send()` → UpstreamResponse
relay       aiohttp glue: the headers to send upstream, relaying the answer to the client
"""

from __future__ import annotations

from shared.upstream.connection import UpstreamFailure
from shared.upstream.pool import IDEMPOTENT_METHODS, Upstream, UpstreamResponse
from shared.upstream.relay import (
    HOP_BY_HOP,
    buffered_response,
    client_body,
    outgoing_headers,
    proxy_request,
    relay_response,
    request_target,
)

__all__ = [
    "HOP_BY_HOP",
    "IDEMPOTENT_METHODS",
    "Upstream",
    "UpstreamFailure",
    "UpstreamResponse",
    "buffered_response",
    "client_body",
    "outgoing_headers",
    "proxy_request",
    "relay_response",
    "request_target",
]
