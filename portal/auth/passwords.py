"""Argon2 password hashes, with a small cache so header-authenticated API calls stay cheap."""

from __future__ import annotations

import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.auth.recent import Recent

_hasher = PasswordHasher()
# CAD4TB-style clients send X-USERNAME/X-PASSWORD on every call; re-running argon2 (tens of ms)
# on each would dominate. Remember recent successful (hash, password digest) pairs in memory.
# A pair is tied to the hash: a changed password makes a new hash, and the old pair never matches again.
_CACHE_SIZE = 256
_verified: Recent[bool] = Recent(float("inf"), max_keys=_CACHE_SIZE)

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash or not password or len(password) > MAX_LENGTH:
        return False
    key = (password_hash, hashlib.sha256(password.encode()).hexdigest())
    if _verified.get(key):
        return True
    try:
        _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    _verified.put(key, True)
    return True


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    return None
