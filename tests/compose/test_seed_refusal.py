"""The seed refuses to create the development accounts when ENVIRONMENT=production, with one line naming it.

No engine and no server: the refusal comes before any connection (the DSN below points nowhere). The Compose
consequence, `up --wait` stopping at the seed instead of a crash-looping gateway, is test_stack_production.py's.
"""

from __future__ import annotations

import pytest

from database.accounts import DEV_ACCOUNTS
from database.seed import SeedRefused, refuse_production, seed
from shared.settings import SettingsError
from stack.cli import main

NOWHERE = "postgresql://app:app@127.0.0.1:1/nowhere"


async def test_seed_refuses_production_before_connecting() -> None:
    with pytest.raises(SeedRefused) as refused:
        await seed(NOWHERE, environ={"ENVIRONMENT": "production"})
    message = str(refused.value)
    assert "ENVIRONMENT=production" in message
    assert "ENVIRONMENT=development" in message, "names the variable to set"
    assert "--scale seed=0" in message
    assert all(account.email in message for account in DEV_ACCOUNTS)
    assert "\n" not in message


def test_development_is_allowed_and_a_bad_value_names_the_variable() -> None:
    refuse_production({"ENVIRONMENT": "development"})
    refuse_production({})
    with pytest.raises(SettingsError, match="ENVIRONMENT='prod'"):
        refuse_production({"ENVIRONMENT": "prod"})


def test_scalable_api_seed_exits_1_with_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Compose's seed service prints: SystemExit's message on stderr and status 1, no traceback."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", NOWHERE)
    with pytest.raises(SystemExit) as exited:
        main(["seed", "--resources", "0"])
    assert isinstance(exited.value.code, str)
    assert exited.value.code.startswith("seed: refusing to create the development accounts")
