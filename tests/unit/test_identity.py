"""The signed internal identity header: only the gateway's signature, fresh, is believed."""

from __future__ import annotations

from shared.identity import ANONYMOUS, Identity, sign_identity, verify_identity

SECRET = "s" * 40
ADMIN = Identity(user_id=7, role="admin", tier="enterprise", method="jwt")


def test_round_trip() -> None:
    assert verify_identity(sign_identity(ADMIN, SECRET), SECRET) == ADMIN


def test_wrong_secret_is_anonymous() -> None:
    assert verify_identity(sign_identity(ADMIN, SECRET), "t" * 40) == ANONYMOUS


def test_tampered_fields_are_anonymous() -> None:
    header = sign_identity(Identity(user_id=7, role="user", tier="free", method="jwt"), SECRET)
    assert verify_identity(header.replace(".user.", ".admin."), SECRET) == ANONYMOUS
    assert verify_identity(header.replace("v1.7.", "v1.1."), SECRET) == ANONYMOUS


def test_stale_signature_is_anonymous() -> None:
    header = sign_identity(ADMIN, SECRET, now=1_000_000)
    assert verify_identity(header, SECRET, now=1_000_000 + 301) == ANONYMOUS
    assert verify_identity(header, SECRET, now=1_000_000 + 299) == ADMIN


def test_garbage_is_anonymous() -> None:
    for value in ["", "admin", "v1.1.admin.pro.jwt", "x" * 1000, "v1....." + "0" * 64, None]:
        assert verify_identity(value, SECRET) == ANONYMOUS
