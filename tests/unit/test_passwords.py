"""Password hashing: argon2id, booleans instead of exceptions, and a lazily computed dummy hash."""

from __future__ import annotations

import pytest

import shared.passwords
from shared.passwords import dummy_hash, hash_password, needs_rehash, verify_password


def test_hash_is_argon2id_and_verifies() -> None:
    hashed = hash_password("correct horse")

    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong horse")


def test_same_password_hashes_differently() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize("bad_hash", ["", "not-a-hash", "$argon2id$v=19$m=1$broken", "$2b$12$bcryptlooking"])
def test_malformed_hash_is_a_mismatch_not_an_error(bad_hash: str) -> None:
    assert verify_password(bad_hash, "anything") is False


def test_needs_rehash() -> None:
    assert needs_rehash(hash_password("fresh")) is False
    assert needs_rehash("$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$c29tZWhhc2g") is True
    assert needs_rehash("garbage") is True


def test_dummy_hash_is_stable_and_matches_nothing_obvious() -> None:
    assert dummy_hash() == shared.passwords.DUMMY_HASH
    assert shared.passwords.DUMMY_HASH.startswith("$argon2id$")
    assert not verify_password(shared.passwords.DUMMY_HASH, "")


def test_unknown_module_attribute_still_raises() -> None:
    with pytest.raises(AttributeError):
        _ = shared.passwords.NO_SUCH_THING
