"""One vocabulary: every copy of the roles and tiers agrees with ``shared.identity``.

The types are the definition. The copies that cannot import them (the migration's CHECK constraints, the
OpenAPI enums a client generates code from) and the places that must cover every value (the gateway's per-tier
limits, the development accounts, the token and identity-header checks) are compared with them here, so adding
a tier in one place and forgetting another fails this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from database.accounts import DEV_ACCOUNTS, DEV_ADMIN
from database.migrate import load_migrations
from gateway.auth.tokens import AccessTokens, InvalidToken
from gateway.openapi import DOCUMENT
from gateway.settings import GatewaySettings, JwtSettings
from shared.identity import (
    ACCOUNT_ROLES,
    ACCOUNT_TIERS,
    ANONYMOUS,
    ROLES,
    TIERS,
    AccountRole,
    AccountTier,
    Identity,
    Role,
    Tier,
    sign_identity,
    verify_identity,
)

BASE = {"DATABASE_URL": "postgresql://a:b@localhost/db", "REDIS_URL": "redis://localhost/0"}
SECRET = "v" * 48


def _users_check(column: str) -> list[str]:
    """The values of the last ``CHECK (<column> IN (...))`` in the migrations, applied in order."""
    pattern = re.compile(rf"CHECK\s*\(\s*{column}\s+IN\s*\(([^)]*)\)\s*\)", re.IGNORECASE)
    found = [match[1] for migration in load_migrations() for match in pattern.finditer(migration.sql)]
    assert found, f"no CHECK ({column} IN (...)) in the migrations"
    return re.findall(r"'([^']*)'", found[-1])


def _users_default(column: str) -> str:
    match = re.search(rf"^\s*{column}\s+text\s+NOT NULL\s+DEFAULT\s+'([^']*)'", load_migrations()[0].sql, re.MULTILINE)
    assert match is not None, f"no DEFAULT for users.{column} in the first migration"
    return match[1]


def test_the_vocabulary_is_the_accounts_plus_anonymous() -> None:
    assert ("anonymous", *ACCOUNT_ROLES) == ROLES
    assert ("anonymous", *ACCOUNT_TIERS) == TIERS
    assert (ANONYMOUS.role, ANONYMOUS.tier) == ("anonymous", "anonymous")


def test_the_migration_allows_exactly_the_account_roles_and_tiers() -> None:
    assert sorted(_users_check("role")) == sorted(ACCOUNT_ROLES)
    assert sorted(_users_check("tier")) == sorted(ACCOUNT_TIERS)
    assert _users_default("role") in ACCOUNT_ROLES
    assert _users_default("tier") in ACCOUNT_TIERS


def _enums(node: Any, name: str) -> Iterator[list[Any]]:
    """Every ``enum`` of a property called ``name``, anywhere in the document."""
    if isinstance(node, dict):
        prop = node.get("properties", {}).get(name)
        if isinstance(prop, dict) and "enum" in prop:
            yield prop["enum"]
        for value in node.values():
            yield from _enums(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from _enums(item, name)


@pytest.mark.parametrize(("name", "expected"), [("role", ACCOUNT_ROLES), ("tier", ACCOUNT_TIERS)])
def test_openapi_enums_are_the_account_vocabulary(name: str, expected: tuple[str, ...]) -> None:
    served = orjson.loads(orjson.dumps(DOCUMENT))  # what GET /openapi.json sends
    enums = list(_enums(served, name))
    # The User schema and the admin's PATCH /api/v1/admin/users/{id} body both name it.
    assert len(enums) >= 2, f"expected at least two {name} enums, found {enums}"
    for enum in enums:
        assert enum == list(expected)


def test_the_gateway_limits_every_tier_and_reads_each_from_its_variable() -> None:
    assert set(GatewaySettings.from_env(BASE).rate_limits.limits) == set(TIERS)
    overrides = {f"RATE_LIMIT_{tier.upper()}": str(7 + index) for index, tier in enumerate(TIERS)}
    limits = GatewaySettings.from_env({**BASE, **overrides}).rate_limits.limits
    assert {tier: limits[tier] for tier in TIERS} == {tier: 7 + index for index, tier in enumerate(TIERS)}


def test_the_development_accounts_hold_valid_roles_and_tiers() -> None:
    for account in DEV_ACCOUNTS:
        assert account.role in ACCOUNT_ROLES, account
        assert account.tier in ACCOUNT_TIERS, account
    assert DEV_ADMIN.role == "admin"


def _tokens() -> AccessTokens:
    settings = JwtSettings(
        algorithm="HS256", signing_key=SECRET, verifying_key=SECRET, issuer="t", audience="t", access_ttl=60
    )
    return AccessTokens(settings)


@pytest.mark.parametrize("role", ACCOUNT_ROLES)
@pytest.mark.parametrize("tier", ACCOUNT_TIERS)
def test_access_tokens_carry_every_account_role_and_tier(role: AccountRole, tier: AccountTier) -> None:
    tokens = _tokens()
    token, _ = tokens.issue(user_id=1, role=role, tier=tier, family_id=None)
    claims = tokens.verify(token)
    assert (claims.role, claims.tier) == (role, tier)


@pytest.mark.parametrize(("role", "tier"), [("anonymous", "free"), ("user", "anonymous"), ("root", "free")])
def test_access_tokens_refuse_what_no_account_holds(role: Any, tier: Any) -> None:
    tokens = _tokens()  # issue() does not check (its callers pass database values); verify() must refuse
    token, _ = tokens.issue(user_id=1, role=role, tier=tier, family_id=None)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("tier", TIERS)
def test_the_identity_header_carries_every_role_and_tier(role: Role, tier: Tier) -> None:
    identity = Identity(user_id=1, role=role, tier=tier, method="jwt")
    assert verify_identity(sign_identity(identity, SECRET), SECRET) == identity
