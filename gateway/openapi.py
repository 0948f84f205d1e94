"""``GET /openapi.json``: the OpenAPI 3.1 description of every public route of the gateway.

Written as data next to the code rather than generated from handlers: the routes are few, and a test
compares this document with the app's router, so a route added without documentation fails the build.
The role and tier enums are read from :mod:`shared.identity`, the one place the vocabulary is defined.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from shared.identity import ACCOUNT_ROLES, ACCOUNT_TIERS

Schema = dict[str, Any]

_PROBLEM: Schema = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
}
# What an account can hold: the users table has no "anonymous" row.
_ROLE: Schema = {"type": "string", "enum": list(ACCOUNT_ROLES)}
_TIER: Schema = {"type": "string", "enum": list(ACCOUNT_TIERS)}
_USER: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "role": _ROLE,
        "tier": _TIER,
        "disabled": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_SESSION: Schema = {
    "type": "object",
    "properties": {
        "token": {"type": "string"},
        "token_type": {"type": "string"},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
        "user": {"$ref": "#/components/schemas/User"},
    },
    "required": ["token", "refresh_token", "expires_in", "user"],
}
_RESOURCE_BODY: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
        "type": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,49}$"},
        "data": {"type": "object"},
    },
    "additionalProperties": False,
}
_RESOURCE_CREATE: Schema = {**_RESOURCE_BODY, "required": ["name", "type"]}
_RESOURCE_PATCH: Schema = {**_RESOURCE_BODY, "minProperties": 1}
_ANY: Schema = {"type": "object"}
# Path parameters as the edge accepts them (it refuses encoded slashes, backslashes and dots with a 400).
_TOKEN: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,199}$"}
_PATH_PARAMS: dict[str, Schema] = {"id": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}
# Resource writes accept an Idempotency-Key (apiserver/idempotency.py): 1-255 printable ASCII characters.
# Defined once under components.parameters and named in each write's description, not listed in its
# `parameters`: a fuzzer would reuse one generated key across different requests and get the documented 422.
_IDEMPOTENT_WRITE = (
    "Send `Idempotency-Key` (components.parameters.IdempotencyKey) to make this write safe to retry for 24 h: "
    "the same key with the same request answers the stored response with `Idempotent-Replayed: true` and writes "
    "nothing; the same key with another request is 422; while the first is still in flight, 409."
)
_IDEMPOTENCY_KEY: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the write safe to retry for 24 h: the same key with the same request answers the stored response "
        "(with Idempotent-Replayed: true) without writing again; keys are scoped per caller."
    ),
    "schema": {"type": "string", "pattern": "^[!-~]([ -~]{0,253}[!-~])?$"},
}
_IDEMPOTENCY_ERRORS = {
    "400": "Bad request (also: an Idempotency-Key that is not 1-255 printable ASCII characters)",
    "409": "Conflict (also: a request with the same Idempotency-Key is still in flight; retry later)",
    "422": "Invalid body or fields (also: the Idempotency-Key was already used with another request)",
}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    tag: str,
    *,
    ok: str = "200",
    response: Schema | None = None,
    body: Schema | None = None,
    auth: str = "user",
    params: tuple[str, ...] = (),
    idempotent: bool = False,
) -> Schema:
    responses: Schema = {ok: _json(response or _ANY) if ok != "204" else {"description": "No content"}}
    if idempotent:
        responses[ok]["headers"] = {
            "Idempotent-Replayed": {
                "description": "`true` when this is the stored response to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    errors = {
        "400": "Bad request",
        "404": "Not found",
        "413": "Body too large",
        "415": "Body is not JSON",
        "422": "Invalid body or fields",
        "429": "Rate limited",
        "503": "Overloaded or unavailable",
    }
    if body is not None or ok == "204":  # writes: ownership, conflicts and stale If-Match
        errors |= {"403": "Not allowed", "409": "Conflict", "412": "Stale If-Match"}
    if auth != "none" or body is not None:  # sign-in and refresh answer 401 for bad credentials
        errors["401"] = "Not authenticated"
        errors.setdefault("403", "Not allowed (e.g. key management with an API key)")
    if auth == "admin":
        errors["403"] = "Not an admin"
    if idempotent:
        errors |= _IDEMPOTENCY_ERRORS
    for status, text in errors.items():
        responses[status] = {
            "description": text,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    operation: Schema = {"summary": summary, "tags": [tag], "responses": responses}
    if auth == "none":
        operation["security"] = []
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": _PATH_PARAMS.get(name, _TOKEN)} for name in params
        ]
    if idempotent:
        operation["description"] = _IDEMPOTENT_WRITE
    return operation


def _credentials(*fields: str) -> Schema:
    properties = {name: {"type": "string", "minLength": 1, "pattern": r"\S"} for name in fields}
    return {"type": "object", "properties": properties, "required": list(fields)}


PATHS: Schema = {
    "/health": {"get": _op("Liveness", "system", auth="none")},
    "/ready": {"get": _op("Readiness: PostgreSQL and Redis checked", "system", auth="none")},
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "tags": ["system"],
            "security": [],
            "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
        }
    },
    "/openapi.json": {"get": _op("This document", "system", auth="none")},
    "/api/v1/auth/login": {
        "post": _op("Sign in", "auth", response=_SESSION, body=_credentials("email", "password"), auth="none")
    },
    "/api/v1/auth/refresh": {
        "post": _op(
            "Rotate a refresh token", "auth", response=_SESSION, body=_credentials("refresh_token"), auth="none"
        )
    },
    "/api/v1/auth/logout": {"post": _op("Revoke this session", "auth", ok="204")},
    "/api/v1/me": {"get": _op("The caller's account", "auth", response={"$ref": "#/components/schemas/User"})},
    "/api/v1/keys": {
        "get": _op("List my API keys", "keys"),
        "post": _op("Create an API key (shown once)", "keys", ok="201", body=_credentials("name")),
    },
    "/api/v1/keys/{id}": {"delete": _op("Revoke an API key", "keys", ok="204", params=("id",))},
    "/api/v1/resources": {
        "get": _op("List resources (keyset pagination)", "resources", auth="none"),
        "post": _op("Create a resource", "resources", ok="201", body=_RESOURCE_CREATE, idempotent=True),
    },
    "/api/v1/resources/{id}": {
        "get": _op("Read a resource", "resources", auth="none", params=("id",)),
        "put": _op("Replace a resource", "resources", body=_RESOURCE_CREATE, params=("id",), idempotent=True),
        "patch": _op("Update a resource", "resources", body=_RESOURCE_PATCH, params=("id",), idempotent=True),
        "delete": _op("Delete a resource", "resources", ok="204", params=("id",), idempotent=True),
    },
    "/api/v1/status": {"get": _op("The instance that served this request", "system", auth="none")},
    "/api/v1/external": {"get": _op("A flaky dependency behind a circuit breaker", "system", auth="none")},
    "/api/v1/admin/dashboard": {"get": _op("Gateway, balancer and apiserver figures", "admin", auth="admin")},
    "/api/v1/admin/stream": {
        "get": {
            **_op("Dashboard snapshots as server-sent events", "admin", auth="admin"),
            "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}}},
        }
    },
    "/api/v1/admin/circuit-breakers": {"get": _op("Every circuit breaker", "admin", auth="admin")},
    "/api/v1/admin/circuit-breakers/{name}/reset": {
        "post": _op("Reset a circuit breaker", "admin", auth="admin", params=("name",))
    },
    "/api/v1/admin/cache": {"get": _op("Cache statistics of every apiserver", "admin", auth="admin")},
    "/api/v1/admin/cache/clear": {"post": _op("Clear the cache namespace and every L1", "admin", auth="admin")},
    "/api/v1/admin/rate-limits/{identifier}": {
        "get": _op("Rate-limit state of a user or address", "admin", auth="admin", params=("identifier",))
    },
    "/api/v1/admin/users": {"get": _op("List accounts", "admin", auth="admin")},
    "/api/v1/admin/users/{id}": {
        "patch": _op(
            "Change an account's role, tier or disabled flag",
            "admin",
            auth="admin",
            params=("id",),
            body={
                "type": "object",
                "properties": {
                    "role": _ROLE,
                    "tier": _TIER,
                    "disabled": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
        )
    },
    "/api/v1/admin/backends/{backend}/{action}": {
        "post": {
            **_op("Drain or re-enable a balancer backend", "admin", auth="admin", params=("backend",)),
            "parameters": [
                {"name": "backend", "in": "path", "required": True, "schema": _TOKEN},
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["drain", "enable"]},
                },
            ],
        }
    },
    "/dashboard": {
        "get": {
            "summary": "Redirect to the admin dashboard",
            "tags": ["dashboard"],
            "security": [],
            "responses": {
                "308": {"description": "Location: /dashboard/"},
                "429": {"description": "Far too many dashboard requests from this address (Retry-After says when)"},
            },
        }
    },
    "/dashboard/{tail}": {
        "get": {
            "summary": "The admin dashboard (static single-page app; its data comes from the admin API)",
            "tags": ["dashboard"],
            "security": [],
            "parameters": [
                {
                    "name": "tail",
                    "in": "path",
                    "required": True,
                    # What the edge accepts as a canonical path: plain segments, no "..", "//" or backslashes
                    # (anything else is refused with 400 before it reaches the dashboard).
                    "schema": {
                        "type": "string",
                        "maxLength": 200,
                        "pattern": "^(?!.*\\.\\.)(?!.*//)[A-Za-z0-9_-][A-Za-z0-9._/-]*$",
                    },
                }
            ],
            "responses": {
                "200": {
                    "description": "A dashboard file, or index.html for a client route",
                    "content": {"text/html": {}},
                },
                "400": {
                    "description": "The path is not in canonical form",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
                "404": {"description": "No such dashboard file"},
                "429": {"description": "Far too many dashboard requests from this address (Retry-After says when)"},
                "503": {"description": "The dashboard is not built (the detail says how to build it)"},
            },
        }
    },
}

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "scalable-api",
        "version": "1.0.0",
        "description": "Public API of the gateway. Every response carries X-Request-ID; limited routes carry "
        "X-RateLimit-Limit/Remaining/Reset, RateLimit-Policy and RateLimit. Errors are RFC 9457 problems.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"apiKey": []}, {}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
        "schemas": {"Problem": _PROBLEM, "User": _USER},
        "parameters": {"IdempotencyKey": _IDEMPOTENCY_KEY},
    },
    "paths": PATHS,
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
