"""What the upstream client refuses: each case fed whole and one byte at a time.

A refusal is an ``UpstreamFailure`` of kind ``protocol``; the connection is closed and never reused, since after
a framing error nobody knows where the next response starts. The list follows llhttp (what it refuses on its
own) plus the checks :mod:`shared.upstream.parser` adds where llhttp is more lenient.

Two equal Content-Length fields (``3`` and ``3``) are refused too: llhttp refuses any repeated Content-Length,
and RFC 9110 §8.6 allows a recipient to.
"""

from __future__ import annotations

import pytest

from shared.upstream.parser import HEAD_LIMIT
from tests.upstream.support import FEEDS, Feed, exchange, in_pieces

OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"
BIG_FIELDS = b"".join(b"X-Field-%05d: %s\r\n" % (index, b"v" * 15) for index in range(HEAD_LIMIT // 32))

REFUSED = {
    # Transfer-Encoding
    "te-xchunked": OK + b"Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "te-gzip-chunked": OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "te-twice": OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-empty": OK + b"Transfer-Encoding: \r\n\r\nabc",
    # chunk sizes
    "chunk-0x5": CHUNKED + b"0x5\r\nabcde\r\n0\r\n\r\n",
    "chunk-plus-0": CHUNKED + b"+0\r\n\r\n",
    "chunk-1_0": CHUNKED + b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "chunk-minus-1": CHUNKED + b"-1\r\nabc\r\n0\r\n\r\n",
    "chunk-space-5": CHUNKED + b" 5\r\nabcde\r\n0\r\n\r\n",
    "chunk-5-space": CHUNKED + b"5 \r\nabcde\r\n0\r\n\r\n",
    "chunk-overlong": CHUNKED + b"1" * 17 + b"\r\nabc\r\n0\r\n\r\n",
    "chunk-empty-size": CHUNKED + b"\r\nabc\r\n0\r\n\r\n",
    "chunk-no-crlf-after-data": CHUNKED + b"3\r\nabcX\r\n0\r\n\r\n",
    "chunk-bare-lf-size": CHUNKED + b"3\nabc\r\n0\r\n\r\n",
    "chunk-bare-lf-after-data": CHUNKED + b"3\r\nabc\n0\r\n\r\n",
    "chunk-bare-lf-trailer": CHUNKED + b"0\r\nX-T: 1\n\r\n",
    "trailers-over-64k": CHUNKED + b"3\r\nabc\r\n0\r\n" + BIG_FIELDS + b"\r\n",
    # Content-Length
    "cl-arabic-digit": OK + "Content-Length: \u0663\r\n\r\nabc".encode(),
    "cl-plus": OK + b"Content-Length: +3\r\n\r\nabc",
    "cl-two-numbers": OK + b"Content-Length: 3 3\r\n\r\nabc",
    "cl-list": OK + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl-empty": OK + b"Content-Length: \r\n\r\nabc",
    "cl-conflicting": OK + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl-equal-duplicate": OK + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl-and-te": OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": OK + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    # header lines
    "obs-fold-space": OK + b"X-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    "obs-fold-tab": OK + b"X-A: 1\r\n\tfolded\r\nContent-Length: 0\r\n\r\n",
    "first-field-indented": OK + b" X-A: 1\r\nContent-Length: 0\r\n\r\n",
    "space-before-colon": OK + b"X-A : 1\r\nContent-Length: 0\r\n\r\n",
    "no-colon": OK + b"X-A 1\r\nContent-Length: 0\r\n\r\n",
    "empty-name": OK + b": 1\r\nContent-Length: 0\r\n\r\n",
    "control-char-in-value": OK + b"X-A: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "bare-lf-status-line": b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "bare-lf-field": OK + b"Content-Length: 0\n\r\n",
    "bare-lf-end-of-head": OK + b"Content-Length: 0\r\n\n",
    "bare-cr-in-reason": b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
    # status lines
    "http-2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "http-0.9": b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    "http-1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "lowercase-http": b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "two-digit-code": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "four-digit-code": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "no-code": b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
    "two-spaces": b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    # interim and upgrade responses
    "101-upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
    "101-bare": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "1xx-with-body": b"HTTP/1.1 199 Odd\r\nContent-Length: 2\r\n\r\nab" + OK + b"Content-Length: 0\r\n\r\n",
    # size
    "head-over-64k": OK + BIG_FIELDS + b"Content-Length: 2\r\n\r\nok",
    "head-over-64k-unfinished": OK + BIG_FIELDS,
    "reason-over-64k": b"HTTP/1.1 200 " + b"O" * HEAD_LIMIT + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
@FEEDS
async def test_refused(feed: Feed, raw: bytes) -> None:
    outcome = await exchange(raw, feed)
    assert outcome.failure == "protocol"
    assert (outcome.reused, outcome.closed) == (False, True)


@pytest.mark.parametrize(
    "raw",
    [REFUSED["te-xchunked"], REFUSED["cl-arabic-digit"], REFUSED["obs-fold-space"], REFUSED["http-2.0"]],
    ids=["te-xchunked", "cl-arabic-digit", "obs-fold", "http-2.0"],
)
async def test_refused_for_head_requests_too(raw: bytes) -> None:
    outcome = await exchange(raw, lambda raw: iter([raw]), method="HEAD")
    assert (outcome.failure, outcome.reused, outcome.closed) == ("protocol", False, True)


async def test_endless_chunk_lines_are_refused() -> None:
    raw = CHUNKED + b"3\r\nabc\r\n3;ext=" + b"e" * (HEAD_LIMIT + 8192)
    outcome = await exchange(raw, in_pieces(4096))
    assert (outcome.body, outcome.failure, outcome.reused) == (b"abc", "protocol", False)


@FEEDS
async def test_a_head_just_under_the_limit_is_accepted(feed: Feed) -> None:
    fields = b"".join(b"X-Field-%05d: %s\r\n" % (index, b"v" * 15) for index in range(HEAD_LIMIT // 32 - 40))
    outcome = await exchange(OK + fields + b"Content-Length: 2\r\n\r\nok", feed)
    assert (outcome.status, outcome.body, outcome.reused) == (200, b"ok", True)
