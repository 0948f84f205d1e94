"""``GET /openapi.json``: the OpenAPI 3.1 description of every public route of the gateway.

Written as data next to the code rather than generated from handlers: the routes are few, and a test
compares this document with the app's router, so a route added without documentation fails the build.
The document is a contract a fuzzer holds the API to (tests/security/test_schemathesis.py, every check):

* requests: each field's type, length and pattern as the handlers check them (text patterns from
  :mod:`shared.text`, the cursor's from :mod:`apiserver.validation`, role and tier enums from
  :mod:`shared.identity`; tests check that the copies agree), ``null`` only where the API takes it, and
  ``additionalProperties: false`` where the API refuses unknown fields;
* responses: every status a route can answer. Some come from the layers every route passes through
  (:data:`EDGE_STATUSES`): a non-canonical path (400), a credential that is sent but invalid (401, on public
  routes too), the rate limit (429), load shedding (503); writes add 413/415, proxied routes 502/503/504.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from shared.identity import ACCOUNT_ROLES, ACCOUNT_TIERS
from shared.text import NON_BLANK_TEXT_PATTERN, TEXT_PATTERN

Schema = dict[str, Any]

# A copy of apiserver.validation.CURSOR_PATTERN (the gateway may not import the apiserver; a unit test compares).
CURSOR_PATTERN = (
    "^aWQ6(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){0,5}(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
    "|(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]|(?:[MN][AQgw]|O[AQ]))$"
)
BIGINT_MAX = 2**63 - 1
ID_PATTERN = "^[1-9][0-9]{0,17}$"  # ids the handlers look up; any other id is a 404
IDEMPOTENCY_KEY_PATTERN = "^[!-~]([ -~]{0,253}[!-~])?$"  # 1-255 printable ASCII (HTTP strips edge spaces)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int, *, blank: bool = False) -> Schema:
    """A string the API stores: no NUL, at most ``max_length`` characters, not all whitespace unless ``blank``."""
    return {"type": "string", "maxLength": max_length, "pattern": TEXT_PATTERN if blank else NON_BLANK_TEXT_PATTERN}


_TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}
_DOUBLE_MAX = 1.7976931348623157e308
_SCHEMAS: Schema = {
    "Problem": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["field", "message"],
                },
            },
        },
        "required": ["type", "title", "status", "detail", "instance", "request_id"],
    },
    "User": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            # What an account can hold: the users table has no "anonymous" row.
            "role": {"type": "string", "enum": list(ACCOUNT_ROLES)},
            "tier": {"type": "string", "enum": list(ACCOUNT_TIERS)},
            "disabled": {"type": "boolean"},
            "created_at": _TIMESTAMP,
        },
        "required": ["id", "email", "role", "tier", "disabled", "created_at"],
    },
    "Session": {
        "type": "object",
        "properties": {
            "token": {"type": "string"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "refresh_token": {"type": "string"},
            "user": _ref("User"),
        },
        "required": ["token", "token_type", "refresh_token", "expires_in", "user"],
    },
    "ApiKey": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "created_at": _TIMESTAMP,
            "last_used_at": _NULLABLE_TIMESTAMP,
            "expires_at": _NULLABLE_TIMESTAMP,
        },
        "required": ["id", "name", "prefix", "created_at", "last_used_at", "expires_at"],
    },
    "Resource": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "type": {"type": "string"},
            "data": {"type": "object"},
            "owner_id": {"type": ["integer", "null"]},
            "version": {"type": "integer"},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
        },
        "required": ["id", "name", "type", "data", "owner_id", "version", "created_at", "updated_at"],
    },
    # Any JSON value PostgreSQL's jsonb stores and a client reads back: no NUL in a string or a key, and numbers
    # a double holds (a JSON number beyond that is refused as malformed; integers past 64 bits read back as doubles).
    "JsonValue": {
        "type": ["null", "boolean", "number", "string", "array", "object"],
        "minimum": -_DOUBLE_MAX,
        "maximum": _DOUBLE_MAX,
        "pattern": TEXT_PATTERN,
        "items": _ref("JsonValue"),
        "propertyNames": {"pattern": TEXT_PATTERN},
        "additionalProperties": _ref("JsonValue"),
    },
}
_SCHEMAS["ApiKeyCreated"] = {
    "allOf": [_ref("ApiKey"), {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}]
}
_SCHEMAS["ResourcePage"] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": _ref("Resource")},
        "next_cursor": {"type": ["string", "null"], "pattern": CURSOR_PATTERN},
        "limit": {"type": "integer"},
    },
    "required": ["items", "next_cursor", "limit"],
}

_RESOURCE_FIELDS: Schema = {
    "name": {**_text(200), "description": "Trimmed before it is stored; 1 to 200 characters, not all whitespace."},
    "type": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,49}$"},
    "data": {
        "type": "object",
        "description": "Any JSON object up to 64 KiB serialized and 32 levels deep (the body's limit).",
        "propertyNames": {"pattern": TEXT_PATTERN},
        "additionalProperties": _ref("JsonValue"),
    },
}
_RESOURCE_EXAMPLE = {"name": "Quarterly report", "type": "document", "data": {"pages": 12, "tags": ["finance"]}}
_RESOURCE_CREATE: Schema = {
    "type": "object",
    "properties": _RESOURCE_FIELDS,
    "required": ["name", "type"],
    "additionalProperties": False,
    "examples": [_RESOURCE_EXAMPLE],
}
_RESOURCE_PATCH: Schema = {
    "type": "object",
    "properties": _RESOURCE_FIELDS,
    "minProperties": 1,
    "additionalProperties": False,
    "examples": [{"name": "Quarterly report (final)"}],
}
_ACCOUNT_PATCH: Schema = {
    "type": "object",
    "properties": {
        "role": _SCHEMAS["User"]["properties"]["role"],
        "tier": _SCHEMAS["User"]["properties"]["tier"],
        "disabled": {"type": "boolean", "description": "true also revokes every refresh token of the account"},
    },
    "additionalProperties": False,
    "examples": [{"tier": "pro"}],
}


def _credentials(example: dict[str, str], **fields: int) -> Schema:
    """A body of exactly these required text fields (name -> maxLength); any other field is a 422."""
    properties = {name: _text(max_length) for name, max_length in fields.items()}
    return {
        "type": "object",
        "properties": properties,
        "required": list(fields),
        "additionalProperties": False,
        "examples": [example],
    }


# The statuses the layers every non-probe route passes through can answer (gateway.edge, gateway.auth,
# gateway.ratelimit), and what each means there; an operation adds its own.
EDGE_STATUSES = {
    "400": "Bad request (also: a path not in canonical form)",
    "401": "Not authenticated (also: a credential that is sent but invalid, expired or revoked, on any route)",
    "429": "Rate limited; Retry-After says when",
    "503": "Overloaded or a dependency is unavailable; Retry-After says when",
}
_BODY_STATUSES = {
    "413": "The body is too large",
    "415": "The body is not application/json",
}
_PROXY_STATUSES = {
    "502": "The upstream failed to answer",
    "503": "No upstream can serve, the database is unavailable, or the gateway is overloaded; Retry-After says when",
    "504": "The upstream did not answer in time",
}
_IDEMPOTENCY = {
    "400": "Bad request (also: an Idempotency-Key that is not 1-255 printable ASCII characters)",
    "409": "Conflict (also: a request with the same Idempotency-Key is still in flight; retry later)",
    "422": "Invalid body or fields (also: the Idempotency-Key was already used with another request)",
}
_IDEMPOTENT_WRITE = (
    "Send `Idempotency-Key` to make this write safe to retry for 24 h: the same key with the same request answers "
    "the stored response with `Idempotent-Replayed: true` and writes nothing; the same key with another request "
    "is 422; while the first is still in flight, 409. Use a new key (a UUID) for every new request."
)
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "optional": [{"bearer": []}, {"apiKey": []}, {}],
    "user": [{"bearer": []}, {"apiKey": []}],
    "admin": [{"bearer": []}, {"apiKey": []}],
    "session": [{"bearer": []}],
}


def _problem(description: str) -> Schema:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _path_param(name: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
    return {**param, "description": description} if description else param


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _header(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": description}


_ID = _path_param("id", {"type": "string", "pattern": ID_PATTERN})
# One path segment as the edge passes it on: not "." or "..", no "/" or "\" (which would arrive encoded and be
# refused with 400) and no NUL.
_SEGMENT: Schema = {"type": "string", "minLength": 1, "maxLength": 320, "pattern": "^(?!\\.\\.?$)[^/\\\\\\u0000]*$"}
_TAIL: Schema = {k: v for k, v in _SEGMENT.items() if k != "maxLength"}  # any length: an unknown route is index.html


def _integer(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


_IF_MATCH = _header("If-Match", {"type": "string"}, "An ETag from an earlier response: 412 unless it is current")
_IDEMPOTENCY_KEY: Schema = _header(
    "Idempotency-Key",
    {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    "Makes the write safe to retry for 24 h: the same key with the same request answers the stored response "
    "(with Idempotent-Replayed: true) without writing again; keys are scoped per caller.",
)


def _statuses(auth: str, *, has_body: bool, writes: bool, proxied: bool) -> dict[str, str]:
    """What the layers in front of a handler can answer for an operation of this kind."""
    statuses = {**EDGE_STATUSES}
    if writes:  # the edge checks the body of every POST, PUT and PATCH
        statuses |= _BODY_STATUSES
    if has_body:
        statuses |= {"400": "Bad request: the body is empty or not JSON", "422": "Invalid body or fields"}
    if auth in ("user", "admin", "session"):
        statuses["401"] = "Not signed in, or the credential is invalid, expired or revoked"
    if auth == "admin":
        statuses["403"] = "Not an admin"
    if auth == "session":
        statuses["403"] = "Key management needs a signed-in session, not an API key"
    if proxied:
        statuses |= _PROXY_STATUSES | ({"408": "The body arrived too slowly"} if has_body else {})
    return statuses


def _op(
    summary: str,
    tag: str,
    op_id: str,
    *,
    ok: str = "200",
    response: Schema | None = None,
    body: Schema | None = None,
    body_required: bool = True,
    writes: bool = False,
    auth: str = "user",
    params: tuple[Schema, ...] = (),
    errors: dict[str, str] | None = None,
    proxied: bool = False,
    idempotent: bool = False,
    links: Schema | None = None,
) -> Schema:
    """An operation: its own statuses (``errors``) plus those every route, write and proxied route can answer."""
    success: Schema = {"description": "No content"} if ok == "204" else _json(response or {"type": "object"})
    statuses = _statuses(auth, has_body=body is not None, writes=writes or body is not None, proxied=proxied)
    statuses |= (errors or {}) | (_IDEMPOTENCY if idempotent else {})
    if idempotent:
        success["headers"] = {
            "Idempotent-Replayed": {
                "description": "`true` when this is the stored response to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    if links:
        success["links"] = links
    responses: Schema = {ok: success} | {status: _problem(text) for status, text in sorted(statuses.items())}
    operation: Schema = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "security": _SECURITY[auth],
        "responses": responses,
    }
    if body is not None:
        content = {"application/json": {"schema": body}}
        operation["requestBody"] = {"required": body_required, "content": content}
    parameters = [*params, {"$ref": "#/components/parameters/IdempotencyKey"}] if idempotent else list(params)
    if parameters:
        operation["parameters"] = parameters
    if idempotent:
        operation["description"] = _IDEMPOTENT_WRITE
    return operation


def _with_responses(operation: Schema, responses: Schema) -> Schema:
    return {**operation, "responses": {**operation["responses"], **responses}}


def _header_ref(name: str) -> Schema:
    return {"$ref": f"#/components/headers/{name}"}


# What a cacheable read's 200 and 304 carry (gateway.caching, gateway.cors); none is required: the ETag of a list
# page cached before pages had versions is absent, and the CORS headers only answer an allowed Origin.
_CACHEABLE_HEADERS: Schema = {
    "ETag": _header_ref("ETag"),
    "Cache-Control": _header_ref("CacheControl"),
    "Vary": _header_ref("Vary"),
    "Access-Control-Allow-Origin": _header_ref("AccessControlAllowOrigin"),
    "Access-Control-Expose-Headers": _header_ref("AccessControlExposeHeaders"),
}


def _cacheable(operation: Schema, not_modified: str) -> Schema:
    """A public read: its 200 and a 304 (for ``If-None-Match``) with the caching and CORS headers."""
    ok = {**operation["responses"]["200"], "headers": _CACHEABLE_HEADERS}
    return _with_responses(operation, {"200": ok, "304": {"description": not_modified, "headers": _CACHEABLE_HEADERS}})


_IF_NONE_MATCH = _header("If-None-Match", {"type": "string"}, "An ETag: 304 while it is still current")

_RESPONSE_HEADERS: Schema = {
    "CacheControl": {
        "description": "Anonymous GET/HEAD of resources and lists (200, 304): public with max-age, s-maxage, "
        "stale-while-revalidate and stale-if-error (HTTP_CACHE_*); signed in: private, max-age; every other "
        "response, errors and 429 included: no-store",
        "schema": {"type": "string"},
        "example": "public, max-age=5, s-maxage=30, stale-while-revalidate=30, stale-if-error=600",
    },
    "Vary": {
        "description": "The request headers that change the response (Origin too when CORS lists origins)",
        "schema": {"type": "string"},
        "example": "Accept-Encoding, Authorization, X-API-Key",
    },
    "ETag": {
        "description": "A resource: its version; a list page: a hash of the page. Send it back in If-None-Match "
        "for a 304",
        "schema": {"type": "string"},
        "example": '"3"',
    },
    "AccessControlAllowOrigin": {
        "description": "When CORS_ALLOW_ORIGINS allows the caller's Origin: * or that configured origin (never a "
        "reflected one); absent otherwise",
        "schema": {"type": "string"},
    },
    "AccessControlExposeHeaders": {
        "description": "The response headers page code may read (with Access-Control-Allow-Origin)",
        "schema": {"type": "string"},
        "example": "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy, "
        "Retry-After, ETag, X-Request-ID, Location, Idempotent-Replayed, WWW-Authenticate",
    },
}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _link(operation_id: str, **parameters: str) -> Schema:
    return {"operationId": operation_id, "parameters": parameters}


_RESOURCE_LINKS = {
    name: _link(op_id, id="$response.body#/id")
    for name, op_id in [
        ("GetResource", "getResource"),
        ("ReplaceResource", "replaceResource"),
        ("UpdateResource", "updateResource"),
        ("DeleteResource", "deleteResource"),
    ]
}
_NOT_FOUND = {"404": "No such resource"}
_WRITE_ERRORS = _NOT_FOUND | {
    "403": "Only the owner or an admin may change this resource",
    "412": "If-Match names a version that is no longer current (the ETag header has the current one)",
}
_RESOURCE_ID = (_ID,)
_PROBE = {"security": [], "tags": ["system"]}
_DASHBOARD = {"security": [], "tags": ["dashboard"]}

PATHS: Schema = {
    "/health": {"get": {**_PROBE, "operationId": "health", "summary": "Liveness", "responses": {"200": _json({})}}},
    "/ready": {
        "get": {
            **_PROBE,
            "operationId": "ready",
            "summary": "Readiness: PostgreSQL and Redis checked",
            "responses": {"200": _json({}), "503": _problem("Not ready: the failing dependencies are named")},
        }
    },
    "/metrics": {
        "get": {
            **_PROBE,
            "operationId": "metrics",
            "summary": "Prometheus metrics (only to the addresses in METRICS_ALLOW)",
            "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
                "403": _problem("This address may not read the metrics"),
            },
        }
    },
    "/openapi.json": {"get": _op("This document", "system", "openapi", auth="optional")},
    "/api/v1/auth/login": {
        "post": _op(
            "Sign in",
            "auth",
            "login",
            response=_ref("Session"),
            body=_credentials(
                {"email": "ada@example.com", "password": "correct horse battery"}, email=320, password=1024
            ),
            auth="none",
            errors={
                "401": "Wrong email or password, or the account is disabled (also: an invalid credential header)",
                "429": "Rate limited, or too many failed sign-ins for this account or address; Retry-After says when",
            },
        )
    },
    "/api/v1/auth/refresh": {
        "post": _op(
            "Rotate a refresh token",
            "auth",
            "refresh",
            response=_ref("Session"),
            body=_credentials({"refresh_token": "rt_example"}, refresh_token=256),
            auth="none",
            errors={"401": "The refresh token is invalid, expired, revoked or reused (reuse revokes its family)"},
        )
    },
    "/api/v1/auth/logout": {
        "post": _op(
            "Revoke this session (and, given its refresh token, that token's family)",
            "auth",
            "logout",
            ok="204",
            body=_credentials({"refresh_token": "rt_example"}, refresh_token=256),
            body_required=False,
        )
    },
    "/api/v1/me": {"get": _op("The caller's account", "auth", "me", response=_ref("User"))},
    "/api/v1/keys": {
        "get": _op(
            "List my API keys",
            "keys",
            "listKeys",
            auth="session",
            response={"type": "object", "properties": {"data": {"type": "array", "items": _ref("ApiKey")}}},
        ),
        "post": _op(
            "Create an API key (the key is shown once)",
            "keys",
            "createKey",
            ok="201",
            auth="session",
            response=_ref("ApiKeyCreated"),
            body=_credentials({"name": "ci-deploy"}, name=100),
            errors={"409": "At most 100 active keys per account"},
            links={"RevokeKey": _link("revokeKey", id="$response.body#/id")},
        ),
    },
    "/api/v1/keys/{id}": {
        "delete": _op(
            "Revoke an API key",
            "keys",
            "revokeKey",
            ok="204",
            auth="session",
            params=(_ID,),
            errors={"404": "No such key of yours"},
        )
    },
    "/api/v1/resources": {
        "get": _cacheable(
            _op(
                "List resources (keyset pagination)",
                "resources",
                "listResources",
                auth="optional",
                proxied=True,
                response=_ref("ResourcePage"),
                params=(
                    _query("type", _RESOURCE_FIELDS["type"], "Only resources of this type"),
                    _query("owner", _integer(1, BIGINT_MAX), "Only resources of this owner (a user id)"),
                    _query("limit", _integer(1, 100), "Page size (default 20)"),
                    _query("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "next_cursor of the previous page"),
                    _IF_NONE_MATCH,
                ),
                errors={"400": "An unknown query parameter or a bad value (also: a path not in canonical form)"},
            ),
            "Not modified: If-None-Match names the current page (ETag)",
        ),
        "post": _op(
            "Create a resource",
            "resources",
            "createResource",
            ok="201",
            response=_ref("Resource"),
            body=_RESOURCE_CREATE,
            proxied=True,
            idempotent=True,
            links=_RESOURCE_LINKS,
        ),
    },
    "/api/v1/resources/{id}": {
        "get": _cacheable(
            _op(
                "Read a resource",
                "resources",
                "getResource",
                auth="optional",
                proxied=True,
                response=_ref("Resource"),
                params=(_ID, _IF_NONE_MATCH),
                errors=_NOT_FOUND,
            ),
            "Not modified: If-None-Match names the current version (ETag)",
        ),
        "put": _op(
            "Replace a resource",
            "resources",
            "replaceResource",
            response=_ref("Resource"),
            body=_RESOURCE_CREATE,
            params=(_ID, _IF_MATCH),
            proxied=True,
            idempotent=True,
            errors=_WRITE_ERRORS,
        ),
        "patch": _op(
            "Update a resource",
            "resources",
            "updateResource",
            response=_ref("Resource"),
            body=_RESOURCE_PATCH,
            params=(_ID, _IF_MATCH),
            proxied=True,
            idempotent=True,
            errors=_WRITE_ERRORS,
        ),
        "delete": _op(
            "Delete a resource",
            "resources",
            "deleteResource",
            ok="204",
            params=(_ID, _IF_MATCH),
            proxied=True,
            idempotent=True,
            errors=_WRITE_ERRORS,
        ),
    },
    "/api/v1/status": {
        "get": _op("The instance that served this request", "system", "status", auth="optional", proxied=True)
    },
    "/api/v1/external": {
        "get": _op(
            "A flaky dependency behind a circuit breaker",
            "system",
            "external",
            auth="optional",
            proxied=True,
            errors={"503": "The dependency failed or its breaker is open, or no upstream can serve; Retry-After"},
        )
    },
    "/api/v1/admin/dashboard": {
        "get": _op("Gateway, balancer and apiserver figures", "admin", "adminDashboard", auth="admin")
    },
    "/api/v1/admin/stream": {
        "get": _with_responses(
            _op(
                "Dashboard snapshots as server-sent events",
                "admin",
                "adminStream",
                auth="admin",
                params=(_query("max_events", _integer(1, 1_000_000), "End the stream after this many events"),),
                errors={"422": "max_events is not an integer from 1 to 1,000,000"},
            ),
            {"200": {"description": "Server-sent events", "content": {"text/event-stream": {}}}},
        )
    },
    "/api/v1/admin/circuit-breakers": {"get": _op("Every circuit breaker", "admin", "listBreakers", auth="admin")},
    "/api/v1/admin/circuit-breakers/{name}/reset": {
        "post": _op(
            "Reset a circuit breaker",
            "admin",
            "resetBreaker",
            auth="admin",
            writes=True,
            params=(_path_param("name", _SEGMENT, "ratelimit-redis, external-api, redis-cache or backend:<id>"),),
            errors={"404": "No breaker of that name", "502": "The balancer refused or did not answer"},
        )
    },
    "/api/v1/admin/cache": {"get": _op("Cache statistics of every apiserver", "admin", "cacheStats", auth="admin")},
    "/api/v1/admin/cache/clear": {
        "post": _op(
            "Clear the cache namespace and every L1",
            "admin",
            "clearCache",
            auth="admin",
            writes=True,
            errors={"502": "No apiserver could clear the cache"},
        )
    },
    "/api/v1/admin/rate-limits/{identifier}": {
        "get": _op(
            "Rate-limit state of a user or address",
            "admin",
            "rateLimitState",
            auth="admin",
            params=(_path_param("identifier", _SEGMENT, "user:<id>, a user id, an email, ip:<address> or an address"),),
            errors={"404": "No such user or address"},
        )
    },
    "/api/v1/admin/users": {
        "get": _op(
            "List accounts",
            "admin",
            "listUsers",
            auth="admin",
            params=(
                _query("after", _integer(0, BIGINT_MAX), "Accounts with a greater id (default 0)"),
                _query("limit", _integer(1, 100), "Page size (default 50)"),
            ),
            errors={"422": "after or limit is out of range"},
            response={
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": _ref("User")},
                    "next_after": {"type": ["integer", "null"]},
                },
                "required": ["data", "next_after"],
            },
            links={"UpdateUser": _link("updateUser", id="$response.body#/data/0/id")},
        )
    },
    "/api/v1/admin/users/{id}": {
        "patch": _op(
            "Change an account's role, tier or disabled flag",
            "admin",
            "updateUser",
            auth="admin",
            params=(_ID,),
            body=_ACCOUNT_PATCH,
            response=_ref("User"),
            errors={
                "403": "Not an admin, or an admin demoting or disabling their own account",
                "404": "No such account",
            },
        )
    },
    "/api/v1/admin/backends/{backend}/{action}": {
        "post": _op(
            "Drain or re-enable a balancer backend",
            "admin",
            "backendAction",
            auth="admin",
            writes=True,
            params=(
                _path_param("backend", _SEGMENT, "A backend id as /lb/status names it (host:port)"),
                _path_param("action", {"type": "string", "enum": ["drain", "enable"]}),
            ),
            errors={"404": "No such backend", "502": "The balancer refused or did not answer"},
        )
    },
    "/dashboard": {
        "get": {
            **_DASHBOARD,
            "operationId": "dashboardRedirect",
            "summary": "Redirect to the admin dashboard",
            "responses": {
                "308": {"description": "Location: /dashboard/"},
                **{status: _problem(text) for status, text in EDGE_STATUSES.items()},
                "429": _problem("Far too many dashboard requests from this address (Retry-After says when)"),
            },
        }
    },
    "/dashboard/{tail}": {
        "get": {
            **_DASHBOARD,
            "operationId": "dashboardFile",
            "summary": "The admin dashboard (static single-page app; its data comes from the admin API)",
            "description": "A file of the built dashboard, or index.html for any other client route. Files under "
            "assets/ take more than one segment; the template describes one.",
            "parameters": [_path_param("tail", _TAIL)],
            "responses": {
                "200": {
                    "description": "A dashboard file, or index.html for a client route",
                    "content": {"text/html": {}},
                },
                **{status: _problem(text) for status, text in EDGE_STATUSES.items()},
                "404": _problem("No such dashboard file (a path that names a file is never answered with HTML)"),
                "429": _problem("Far too many dashboard requests from this address (Retry-After says when)"),
                "503": _problem("The dashboard is not built (the detail says how), or the gateway is overloaded"),
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
        "X-RateLimit-Limit/Remaining/Reset, RateLimit-Policy and RateLimit. Errors are RFC 9457 problems "
        "(application/problem+json); a 422 names each bad field in `errors`. Bodies are I-JSON (RFC 7493): "
        "UTF-8, and no string or key may hold a lone surrogate escape such as \\ud800 (422). No text anywhere may "
        "hold NUL (U+0000): PostgreSQL cannot store it (422). Every response carries Cache-Control: public for "
        "anonymous reads of resources and lists, private when signed in, no-store otherwise (errors and 429 "
        "included); cacheable answers carry Vary. With CORS_ALLOW_ORIGINS set, every /api/ response to an allowed "
        "Origin carries Access-Control-Allow-Origin and Access-Control-Expose-Headers, and the gateway answers "
        "preflights (OPTIONS with Origin and Access-Control-Request-Method) itself: 204 with "
        "Access-Control-Allow-Methods/-Headers/-Max-Age, 403 without CORS headers for what is not allowed, 429 "
        "beyond 600 preflights per 10 s from one address.",
    },
    "servers": [{"url": "/"}],
    "security": _SECURITY["optional"],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
        "schemas": _SCHEMAS,
        "parameters": {"IdempotencyKey": _IDEMPOTENCY_KEY},
        "headers": _RESPONSE_HEADERS,
    },
    "paths": PATHS,
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
