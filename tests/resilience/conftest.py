"""Fixtures for the fault scenarios: a logged-in HTTP session and a prepared stack with resources to load."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from database.accounts import DEV_USER
from tests.resilience.load import session
from tests.support.stack import Stack


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with session() as client:
        yield client


@dataclass(frozen=True)
class Prepared:
    """A user session and resources for :class:`tests.resilience.load.MixedLoad`."""

    auth: dict[str, str]
    read_ids: list[int]
    own_ids: list[int]


async def prepare(http: aiohttp.ClientSession, cluster: Stack, *, reads: int = 20, own: int = 4) -> Prepared:
    auth = await cluster.bearer(http, DEV_USER.login)
    read_ids = await cluster.create(http, auth, reads, type_="read")
    own_ids = await cluster.create(http, auth, own, type_="own")
    return Prepared(auth, read_ids, own_ids)
