"""A tiny controllable backend for balancer tests: answers 500s, stalls, or streams big bodies on demand.

In-process tests build it with :func:`create_backend`; e2e tests run it as ``python -m tests.balancer.backend_app
--port N``. ``POST /_control?status=500&delay=2`` changes how it answers; ``GET /_stats`` counts what it saw.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

STATE = web.AppKey("state", dict[str, object])
CHUNK = b"x" * 65536


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


async def control(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for name in ("status", "ready_status"):
        if name in request.query:
            state[name] = int(request.query[name])
    if "delay" in request.query:
        state["delay"] = float(request.query["delay"])
    return _json(state)


async def stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE])


async def ready(request: web.Request) -> web.Response:
    status = int(str(request.app[STATE]["ready_status"]))
    return _json({"status": "ready" if status == 200 else "failing"}, status)


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("mb", "10")) * 1024 * 1024
    response = web.StreamResponse()
    response.content_length = size
    await response.prepare(request)
    sent = 0
    while sent < size:
        piece = CHUNK[: size - sent]
        await response.write(piece)
        sent += len(piece)
    return response


async def anything(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state["requests"] = int(str(state["requests"])) + 1
    body = await request.read()
    if request.method == "POST":
        state["posts"] = int(str(state["posts"])) + 1
    delay = float(str(state["delay"]))
    if delay:
        await asyncio.sleep(delay)
    status = int(str(state["status"]))
    echo = {
        "instance": state["name"],
        "method": request.method,
        "path": request.raw_path,
        "headers": {str(name): value for name, value in request.headers.items()},
        "body_length": len(body),
    }
    headers = {"Connection": "keep-alive, X-Backend-Secret", "X-Backend-Secret": "1", "Keep-Alive": "timeout=60"}
    return _json(echo, status, headers) if status != 204 else web.Response(status=204, headers=headers)


def create_backend(name: str) -> web.Application:
    app = web.Application()
    app[STATE] = {"name": name, "status": 200, "ready_status": 200, "delay": 0.0, "requests": 0, "posts": 0}
    app.router.add_post("/_control", control)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", ready)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_backend(f"test-{args.port}"), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
