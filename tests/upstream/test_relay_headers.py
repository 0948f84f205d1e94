"""The header sets the proxy core forwards each way: what is dropped, replaced and appended."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from shared.keys import REQUEST_ID, TRACEPARENT
from shared.upstream.parser import ResponseParser
from shared.upstream.relay import buffered_response, outgoing_headers

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_outgoing_headers_replace_the_context_fields_once_and_drop_hop_by_hop() -> None:
    request = make_mocked_request(
        "GET",
        "/x",
        headers=CIMultiDict(
            [
                ("Host", "edge"),
                ("X-Request-ID", "client-sent"),
                ("traceparent", "garbage"),
                ("X-Forwarded-For", "forged"),
                ("Keep-Alive", "timeout=5"),
                ("Accept", "application/json"),
                ("X-Custom", "kept"),
            ]
        ),
    )
    request[REQUEST_ID] = "accepted-id"
    request[TRACEPARENT] = TRACE
    headers = outgoing_headers(request, forwarded_for="203.0.113.7, 10.0.0.1")
    assert headers.getall("X-Request-ID") == ["accepted-id"]
    assert headers.getall("traceparent") == [TRACE]
    assert headers.getall("X-Forwarded-For") == ["203.0.113.7, 10.0.0.1"]
    assert "Host" not in headers
    assert "Keep-Alive" not in headers
    assert (headers["Accept"], headers["X-Custom"]) == ("application/json", "kept")


def test_outgoing_headers_honour_drop_and_connection_named_fields() -> None:
    request = make_mocked_request(
        "GET",
        "/x",
        headers=CIMultiDict(
            [("Connection", "X-Secret-Hop"), ("X-Secret-Hop", "1"), ("Authorization", "Bearer t"), ("X-Ok", "1")]
        ),
    )
    headers = outgoing_headers(request, forwarded_for="10.0.0.1", drop=["authorization"])
    assert set(headers) == {"X-Ok", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}
    # A request without our context keeps the client's fields as they came.
    plain = make_mocked_request("GET", "/x", headers={"X-Request-ID": "theirs"})
    assert outgoing_headers(plain, forwarded_for="10.0.0.1").getall("X-Request-ID") == ["theirs"]


class _Complete:
    def __init__(self, raw: bytes) -> None:
        parser = ResponseParser()
        parser.begin(True)
        parser.feed(raw)
        assert parser.head is not None
        self.head = parser.head
        self.status, self.reason, self.complete = parser.head.status, parser.head.reason, True
        self._body = parser.take_body()
        self.released = False

    def take_body(self) -> bytes:
        return self._body

    def release(self) -> None:
        self.released = True


def test_relayed_response_drops_connection_named_fields_and_replaces_ours() -> None:
    upstream = _Complete(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal-Hop\r\nX-Internal-Hop: secret\r\n"
        b'Keep-Alive: timeout=5\r\nX-Served-By: spoofed\r\nETag: "3"\r\nContent-Length: 2\r\n\r\n{}'
    )
    response = buffered_response(upstream, response_headers={"X-Served-By": "backend-1"})  # type: ignore[arg-type]
    assert upstream.released
    assert response.body == b"{}"
    assert response.headers.getall("X-Served-By") == ["backend-1"]
    assert response.headers["ETag"] == '"3"'
    for name in ("Connection", "X-Internal-Hop", "Keep-Alive"):
        assert name not in response.headers
