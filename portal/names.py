"""Validation of the names people choose: usernames, project and archive names."""

from __future__ import annotations

import re

from portal.errors import Invalid

# Project and archive names appear in URL paths (/projects/{name}, /dicomweb/{name}/): keep them
# to characters that need no escaping.
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def slug(kind: str, value: str, max_length: int = 64) -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid(f"{kind} is required.", "missing_value", fields={kind: "required"})
    if len(value) > max_length:
        raise Invalid(f"{kind} must be at most {max_length} characters.", "value_too_long",
                      fields={kind: "too long"})
    if not _SLUG.match(value):
        raise Invalid(f"{kind} may contain only letters, digits, '-', '_' and '.', and must start "
                      "with a letter or digit.", "invalid_characters", fields={kind: "invalid characters"})
    return value


def username(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid("Username is required.", "missing_value", fields={"username": "required"})
    if len(value) > 150:
        raise Invalid("Username must be at most 150 characters.", "value_too_long", fields={"username": "too long"})
    if not _USERNAME.match(value):
        raise Invalid("Username may contain only letters, digits and . _ @ + -", "invalid_characters",
                      fields={"username": "invalid characters"})
    return value


def email(value: str) -> str:
    value = (value or "").strip()
    if value and (len(value) > 254 or not _EMAIL.match(value)):
        raise Invalid(f"'{value[:80]}' is not an email address.", "invalid_email", fields={"email": "invalid"})
    return value
