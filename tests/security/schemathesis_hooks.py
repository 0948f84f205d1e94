"""Hooks for the schemathesis run of tests/security/test_schemathesis.py (its configuration's ``hooks`` setting
imports this module in the schemathesis process; ``FUZZ_BASE_URL``, ``FUZZ_EMAIL`` and ``FUZZ_PASSWORD`` say
whom to sign in as).

Credentials: key management (``/api/v1/keys``) takes a signed-in session, so those operations carry a bearer
token; every other operation carries an API key of the same account. A fuzzed ``POST /api/v1/auth/logout``
sent with an API key revokes no session, so the run is not forever signing in again (each sign-in is a
deliberately slow argon2 verification); a fuzzed ``DELETE /api/v1/keys/{id}`` that happens to revoke the run's
own key answers the next request with 401, on which schemathesis invalidates the credential, calls ``get``
for a new one and replays the request.

Idempotency keys: a correct client sends a new ``Idempotency-Key`` with every new request, as the document
says. Generated cases draw keys from the documented pattern, and two different cases may well draw the same key
(the simplest ones come up again and again), which the API rightly answers with 422 "key reused". So a key that
fits the pattern is replaced by a fresh UUID just before the call; one that does not (a negative case) is sent
as generated, to get its 400.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import requests
import schemathesis

from gateway.openapi import IDEMPOTENCY_KEY_PATTERN

SESSION_ONLY_PREFIX = "/api/v1/keys"
KEY_NAME = "schemathesis"
TIMEOUT = 30.0
_VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
Case = schemathesis.Case[Any]


def _session_only(context: schemathesis.AuthContext) -> bool:
    return context.operation.path.startswith(SESSION_ONLY_PREFIX)


def _call(method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, os.environ["FUZZ_BASE_URL"] + path, headers=headers, timeout=TIMEOUT, **kwargs)


def sign_in() -> str:
    login = {"email": os.environ["FUZZ_EMAIL"], "password": os.environ["FUZZ_PASSWORD"]}
    response = requests.post(os.environ["FUZZ_BASE_URL"] + "/api/v1/auth/login", json=login, timeout=TIMEOUT)
    response.raise_for_status()
    return str(response.json()["token"])


def new_api_key(token: str) -> str:
    """A fresh API key; at the account's key cap (the run's own ``POST /api/v1/keys`` cases fill it), the
    account's keys are revoked first: they are the run's own, on a stack of the test's own."""
    for _ in range(5):  # the run's other worker may fill the cap again between the revocations and the retry
        created = _call("POST", SESSION_ONLY_PREFIX, token, json={"name": KEY_NAME})
        if created.status_code != 409:
            break
        for key in _call("GET", SESSION_ONLY_PREFIX, token).json()["data"]:
            _call("DELETE", f"{SESSION_ONLY_PREFIX}/{key['id']}", token)
    created.raise_for_status()
    return str(created.json()["key"])


@schemathesis.auth(cache_by_key=lambda case, context: "session" if _session_only(context) else "key")
class DevAccount:
    """The account named by FUZZ_EMAIL: a bearer token for key management, an API key for everything else."""

    def get(self, case: Case, context: schemathesis.AuthContext) -> dict[str, str]:
        token = sign_in()
        if _session_only(context):
            return {"Authorization": f"Bearer {token}"}
        return {"X-API-Key": new_api_key(token)}

    def set(self, case: Case, data: dict[str, str], context: schemathesis.AuthContext) -> None:
        case.headers.update(data)  # the case always has its (case-insensitive) headers mapping


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    key = case.headers.get("Idempotency-Key")
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
