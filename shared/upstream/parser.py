"""The upstream response head: status line, header fields and how the body is framed.

parse_head(raw)           status line + fields; ValueError on anything a strict HTTP/1.1 parser refuses
framing(head, expect_body) NO_BODY (HEAD, 1xx, 204, 304) | LENGTH | CHUNKED | UNTIL_CLOSE
"""

from __future__ import annotations

__all__ = ["CHUNKED", "HEAD_LIMIT", "LENGTH", "NO_BODY", "UNTIL_CLOSE", "ResponseHead", "body_framing", "parse_head"]

HEAD_LIMIT = 64 * 1024

# Body framing of a response.
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)


class ResponseHead:
    __slots__ = ("content_length", "headers", "keep_alive", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length: int | None = None


def parse_head(raw: bytes) -> ResponseHead:
    """Status line and header fields; raises ``ValueError`` on anything a strict HTTP/1.1 parser rejects."""
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    connection = ""
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise ValueError(f"bad header line {line[:80]!r}")
        value = value.strip(" \t")
        headers.append((name, value))
        if len(name) == 10 and name.lower() == "connection":
            connection = value.lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return ResponseHead(int(code), reason, headers, keep_alive)


def body_framing(head: ResponseHead, expect_body: bool) -> int:
    status = head.status
    if not expect_body or status in (204, 304):
        return NO_BODY
    transfer_encoding = None
    content_length = None
    for name, value in head.headers:
        lowered = name.lower()
        if lowered == "transfer-encoding":
            transfer_encoding = value.lower()
        elif lowered == "content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise ValueError(f"bad Content-Length {value[:40]!r}")
            content_length = int(value)
    if transfer_encoding is not None:
        if content_length is not None:
            raise ValueError("both Transfer-Encoding and Content-Length")
        return CHUNKED if transfer_encoding.rstrip().endswith("chunked") else UNTIL_CLOSE
    if content_length is not None:
        head.content_length = content_length
        return LENGTH
    return UNTIL_CLOSE
