"""The client address behind proxies, and the ``X-Forwarded-For`` chain each hop appends to.

``X-Forwarded-For`` is a list a client can start with anything it likes, so only the part appended by proxies we
trust means something. The rule (the one nginx's ``real_ip_recursive`` and Werkzeug's ``ProxyFix`` follow)::

    client ──► proxy A (trusted) ──► proxy B (trusted) ──► us
    X-Forwarded-For: <forged...>, <client>, <A>          peer = B

    peer untrusted            → the peer is the client; the header is ignored entirely
    peer trusted              → walk the header from the right, skipping trusted addresses;
                                the first untrusted one is the client (forged entries to its left are never read)
    every entry trusted       → the left-most entry (the request came from inside the trusted network)

Malformed entries stop the walk: anything left of garbage cannot be trusted, so the last good address wins.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8192)
def _parse(value: str) -> IPAddress | None:
    # Cached: the same few peers (proxies, keep-alive clients) send request after request, and parsing an
    # address with ipaddress costs more than the rest of client_address together.
    text = value.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51000"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The address of the client that sent this request, honouring ``X-Forwarded-For`` only from trusted peers."""
    peer_text = (peer or "").strip()
    peer_address = _parse(peer_text)
    if peer_address is None:
        return peer_text or "unknown"
    if not forwarded_for or not trusted or not _trusted(peer_address, trusted):
        return _text(peer_address)
    candidate = peer_address
    for entry in reversed(forwarded_for.split(",")):
        address = _parse(entry)
        if address is None:
            break
        candidate = address
        if not _trusted(address, trusted):
            break
    return _text(candidate)


@functools.lru_cache(maxsize=8192)
def _text(address: IPAddress) -> str:
    return str(address)


def append_forwarded_for(existing: str | None, peer: str) -> str:
    """``existing`` with ``peer`` appended: each hop adds the address it received the request from."""
    existing = (existing or "").strip().strip(",").strip()
    if not existing:
        return peer
    return f"{existing}, {peer}"
