"""Argon2 password hashes, with a small cache so header-authenticated API calls stay cheap."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# CAD4TB-style clients send X-USERNAME/X-PASSWORD on every call; re-running argon2 (tens of ms)
# on each would dominate. Remember recent successful (hash, password digest) pairs in memory.
_verified: OrderedDict[tuple[str, str], bool] = OrderedDict()
_lock = threading.Lock()
_CACHE_SIZE = 256

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash or not password or len(password) > MAX_LENGTH:
        return False
    key = (password_hash, hashlib.sha256(password.encode()).hexdigest())
    with _lock:
        if key in _verified:
            _verified.move_to_end(key)
            return True
    try:
        _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    with _lock:
        _verified[key] = True
        while len(_verified) > _CACHE_SIZE:
            _verified.popitem(last=False)
    return True


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    return None
