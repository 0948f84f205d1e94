"""The upstream response parser: llhttp (through httptools) plus the refusals a proxy hop adds.

Why httptools (STYLE rules 12 and 13): where a message ends is exactly what two parsers on one hop must agree on,
or one upstream's responses get handed to the wrong requests. The hand-written parser this replaces took
``Transfer-Encoding: xchunked`` for chunked, chunk sizes ``0x5``, ``+0`` and ``1_0`` (Python's ``int(x, 16)``)
and ``Content-Length: ٣`` (``str.isdigit``). llhttp is the fuzzed C parser of Node.js, uvicorn and aiohttp;
httptools is its well-kept binding. What stays hand-written is only what a proxy hop decides on top of it.

One :class:`ResponseParser` per connection, reused for every exchange on it::

    begin(expect_body)   a new exchange (a fresh llhttp parser only after a HEAD, whose parser was stopped)
    feed(data)  ──► llhttp ──► on_message_begin → on_status → on_header … → on_headers_complete
                                 (a 1xx head is skipped: it completes, the next head follows)
                               → on_body … → on_message_complete
        head      the final (≥ 200) head, once it arrived
        chunks    body pieces not yet taken (``take_body``), ``buffered`` bytes of them
        done      the body ended cleanly (``until_close``: it ends when the connection does)
        extra     bytes came after the end of the response: the upstream is out of step, never reuse
        ResponseError   anything refused; the connection must be closed

llhttp refuses on its own: bad status lines (2 or 4 digits, no code, extra spaces, HTTP/1.2, HTTP/3.0), bare LF
anywhere in the head or in chunk lines, obs-fold, whitespace before the colon, control characters in values,
non-digit / signed / repeated Content-Length (also two equal ones: RFC 9110 lets a recipient refuse them),
Content-Length with Transfer-Encoding, chunk sizes that are not plain hex (``0x5``, ``+0``, ``1_0``, ``-1``,
`` 5``, ``5 ``) or overflow 64 bits, a chunk not followed by CRLF.

Refused here, where llhttp is more lenient:

- HTTP versions other than 1.0 and 1.1 (llhttp takes ``HTTP/0.9`` and ``HTTP/2.0`` status lines);
- Transfer-Encoding other than one ``chunked`` field (llhttp reads ``xchunked`` until close, accepts two
  ``chunked`` fields, and would hand us ``gzip, chunked`` bodies still gzip-encoded);
- Content-Length or Transfer-Encoding on a 1xx (llhttp reads a body for 1xx codes other than 100, 102, 103);
- 101 (protocol upgrades are not proxied);
- a response head over ``HEAD_LIMIT``, and as much of trailers or of chunk lines between two body pieces.

Accepted as llhttp does: CR/LF bytes between two responses are skipped (RFC 9112 §2.2), so stray CRLFs in the
same read as the end of a response do not count as ``extra``; any other byte does. Leading zeros in chunk sizes.

A HEAD response has no body whatever its Content-Length says, and httptools gives ``on_headers_complete`` no
way to tell llhttp so. At the final head of a HEAD response the parser is therefore stopped (an exception from
the callback); the bytes of the exchange, kept only for HEAD, show whether anything followed the head, and the
next exchange gets a fresh llhttp parser.
"""

from __future__ import annotations

from collections import deque

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

__all__ = ["HEAD_LIMIT", "ResponseError", "ResponseHead", "ResponseParser", "heads_end", "keep_alive"]

HEAD_LIMIT = 64 * 1024

_VERSIONS = ("1.1", "1.0")
_CR_LF = (b"\r", b"\n")
_NO_TOKENS: frozenset[str] = frozenset()


class ResponseError(ValueError):
    """The upstream's response is refused; the connection is out of step and must be closed."""


class _Stop(Exception):
    """Raised from an llhttp callback to stop parsing where the exchange ended."""


class ResponseHead:
    __slots__ = ("connection_tokens", "content_length", "headers", "keep_alive", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        # The lower-case tokens of its Connection fields: names of more hop-by-hop fields (RFC 9110 §7.6.1).
        self.connection_tokens: frozenset[str] = _NO_TOKENS


class ResponseParser:
    """Frames the responses of one connection (see the module docstring)."""

    def __init__(self) -> None:
        self._llhttp = HttpResponseParser(self)
        self._stale = False
        self.head: ResponseHead | None = None
        self.done = False
        self.extra = False
        self.until_close = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self._expect_body = True
        self._seen = 0
        self._since_body = 0
        self._raw = bytearray()
        self._messages = 0
        self._fields: list[tuple[str, str]] = []
        self._reason = ""
        self._length: int | None = None
        self._chunked = False
        self._connection: list[bytes] = []

    def begin(self, expect_body: bool) -> None:
        """Start a new exchange; ``expect_body`` is false for a HEAD request."""
        if self._stale:
            self._llhttp = HttpResponseParser(self)
            self._stale = False
        self.head = None
        self.done = self.extra = self.until_close = False
        self.chunks.clear()
        self.buffered = 0
        self._expect_body = expect_body
        self._seen = self._since_body = self._messages = 0
        if not expect_body:
            self._raw = bytearray()

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the exchange; raises :class:`ResponseError`."""
        if self.head is None:
            self._seen += len(data)
            if not self._expect_body:
                self._raw += data
        else:
            self._since_body += len(data)
        try:
            self._llhttp.feed_data(data)
        except HttpParserUpgrade:  # not reached: on_headers_complete refuses 101 first
            self._stale = True
            raise ResponseError("protocol upgrades are not proxied") from None
        except HttpParserError as exc:
            self._stopped(exc)
        if self.head is None:
            if self._seen > HEAD_LIMIT:
                raise ResponseError("response head too large")
        elif self._since_body > HEAD_LIMIT:  # llhttp would buffer an endless trailer field
            raise ResponseError("chunk lines or trailers too large")

    def take_body(self) -> bytes:
        """Every body piece not taken yet, joined."""
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        return data

    def _stopped(self, exc: HttpParserError) -> None:
        self._stale = True  # llhttp stays in its error state
        reason = exc.__context__
        if isinstance(reason, ResponseError):
            raise reason from None
        if isinstance(reason, _Stop):
            if not self._expect_body:  # stopped at the head of a HEAD response
                self.extra = len(self._raw) > heads_end(self._raw, self._messages)
            return
        if self.done:  # garbage after a complete response
            self.extra = True
            return
        raise ResponseError(str(exc)) from None

    # -- llhttp callbacks ------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:  # the start of a response nobody asked for
            self.extra = True
            raise _Stop
        self._fields.clear()
        self._reason = ""
        self._length = None
        self._chunked = False
        self._connection.clear()

    def on_status(self, reason: bytes) -> None:
        self._reason = reason.decode("utf-8", "surrogateescape")

    def on_header(self, name: bytes, value: bytes) -> None:
        value = value.rstrip(b" \t")  # llhttp drops the leading whitespace only
        size = len(name)
        if size == 14 or size == 17:
            self._framing_field(name, value)
        elif size == 10 and name.lower() == b"connection":
            self._connection.append(value)
        self._fields.append((name.decode(), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        llhttp = self._llhttp
        status = llhttp.get_status_code()
        version = llhttp.get_http_version()
        if version not in _VERSIONS:
            raise ResponseError(f"unsupported HTTP version {version}")
        self._messages += 1
        if status < 200:
            self._interim(status)
            return
        headers, self._fields = self._fields, []
        if self._seen > HEAD_LIMIT and _head_size(self._reason, headers) > HEAD_LIMIT:
            raise ResponseError("response head too large")
        if not self._expect_body:
            self.head = self._head(status, headers, keep_alive(version, headers))
            self.done = True
            raise _Stop  # llhttp would wait for the body a HEAD response does not have
        head = self._head(status, headers, llhttp.should_keep_alive())
        if status != 204 and status != 304:
            head.content_length = self._length
            self.until_close = self._length is None and not self._chunked
        self.head = head

    def _head(self, status: int, headers: list[tuple[str, str]], alive: bool) -> ResponseHead:
        head = ResponseHead(status, self._reason, headers, alive)
        if self._connection:
            values = b",".join(self._connection).decode("utf-8", "surrogateescape")
            head.connection_tokens = frozenset(token.strip().lower() for token in values.split(","))
        return head

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self._since_body = 0

    def on_message_complete(self) -> None:
        if self.head is not None:  # not a 1xx
            if self._fields and _head_size("", self._fields) > HEAD_LIMIT:  # the trailers
                raise ResponseError("response trailers too large")
            self.done = True

    # -- checks llhttp does not make -------------------------------------------------------------------------

    def _framing_field(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length":
            self._length = int(value)  # llhttp already refused anything but one run of ASCII digits
        elif lowered == b"transfer-encoding" and self.head is None:  # not a trailer
            if self._chunked or value.lower() != b"chunked":
                raise ResponseError(f"unsupported Transfer-Encoding {value[:40]!r}")
            self._chunked = True

    def _interim(self, status: int) -> None:
        if status == 101:
            raise ResponseError("protocol upgrades are not proxied")
        if self._length is not None or self._chunked:
            raise ResponseError(f"a {status} response with a body")


def keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    """Whether a response of HTTP ``version`` with these header fields leaves the connection open."""
    tokens: set[str] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(","))
    if "close" in tokens:
        return False
    return version == "1.1" or "keep-alive" in tokens


def heads_end(raw: bytes | bytearray, count: int) -> int:
    """Where the ``count``-th bodiless head in ``raw`` ends (heads llhttp accepted: CRLF only, no obs-fold)."""
    end = 0
    for _ in range(count):
        while raw[end : end + 1] in _CR_LF:  # llhttp skips empty lines before a response
            end += 1
        end = raw.index(b"\r\n\r\n", end) + 4
    return end


def _head_size(reason: str, headers: list[tuple[str, str]]) -> int:
    """About the size of a head in bytes (checked only when the bytes seen so far exceed the limit)."""
    return len("HTTP/1.1 200 \r\n\r\n") + len(reason) + sum(len(name) + len(value) + 4 for name, value in headers)
