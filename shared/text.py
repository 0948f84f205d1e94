"""What text the API accepts, defined once for the validators and for the OpenAPI document.

Every text value a client sends may end up in PostgreSQL (``text`` and ``jsonb`` columns), in JSON and in logs.
Two kinds of character cannot go everywhere, so every route refuses them with a 422 problem naming the field:

* NUL (U+0000): PostgreSQL ``text`` and ``jsonb`` cannot hold it (asyncpg raises
  ``CharacterNotInRepertoireError``, which would be a 500).
* lone UTF-16 surrogates (U+D800-U+DFFF): not Unicode scalar values, so they have no UTF-8 form. In a JSON body
  they can only arrive as a ``\\uD800`` escape; bodies are I-JSON (RFC 7493 §2.1), which forbids them. In a header
  they arrive as aiohttp's ``surrogateescape`` decoding of bytes that are not UTF-8.

The OpenAPI patterns say the same about NUL. They cannot name the surrogates: Rust's regex engine (jsonschema-rs,
which schemathesis validates with) rejects any pattern that mentions them, so a portable pattern stays silent
and the document states the I-JSON rule in words; a UTF-8 platform cannot produce such a string anyway.

"Blank" is what :meth:`str.strip` removes, spelled out in :data:`WHITESPACE_CLASS` for the patterns, because the
three regex engines a client may validate with each read ``\\s`` differently.
"""

from __future__ import annotations

import re

__all__ = [
    "LONE_SURROGATE",
    "NON_BLANK_TEXT_PATTERN",
    "NUL",
    "TEXT_PATTERN",
    "WHITESPACE_CLASS",
    "is_blank",
    "text_problem",
]

NUL = "\x00"
LONE_SURROGATE = "must not contain lone surrogates (U+D800-U+DFFF)"
# The characters str.isspace() accepts (and str.strip() removes), as a regex class body that ECMA-262, Python
# and Rust read alike; tests/unit/test_text.py checks it against str.isspace over every code point.
WHITESPACE_CLASS = (
    "\\t\\n\\u000b\\f\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# JSON Schema patterns (ECMA-262 syntax, read the same by Python's re and Rust's regex).
TEXT_PATTERN = "^[^\\u0000]*$"
NON_BLANK_TEXT_PATTERN = f"^[^\\u0000]*[^{WHITESPACE_CLASS}\\u0000][^\\u0000]*$"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or sent on (a message for a 422), or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return "must not contain NUL characters" if found.group() == NUL else LONE_SURROGATE


def is_blank(value: str) -> bool:
    return not value.strip()
