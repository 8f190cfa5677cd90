"""Argon2 password hashes, with a small cache so header-authenticated API calls stay cheap."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.auth.recent import Recent

_hasher = PasswordHasher()
# CAD4TB-style clients send X-USERNAME/X-PASSWORD on every call; re-running argon2 (tens of ms)
# on each would dominate. Remember recent successful (hash, password digest) pairs in memory.
# A pair is tied to the hash: a changed password makes a new hash, and the old pair never matches again.
_CACHE_SIZE = 256
_verified: Recent[bool] = Recent(float("inf"), max_keys=_CACHE_SIZE)

# Each argon2 run takes 64 MiB (argon2-cffi's default memory cost) besides tens of ms of CPU. Run on one
# thread of their own, a burst of first sign-ins or of wrong passwords waits its turn instead of holding
# 64 MiB per request at once (four clients signing in together took the server from 185 to 391 MB);
# the same pair asked for again while it is being checked shares that check.
_argon2 = ThreadPoolExecutor(1, thread_name_prefix="lightbox-argon2")
_checking: dict[tuple, asyncio.Future] = {}

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def new_hash(password: str) -> str:
    """hash_password in argon2's thread: it takes tens of ms, which must not stall the event loop's requests."""
    return await asyncio.get_running_loop().run_in_executor(_argon2, hash_password, password)


def _key(password_hash: str, password: str) -> tuple[str, str]:
    return password_hash, hashlib.sha256(password.encode()).hexdigest()


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash or not password or len(password) > MAX_LENGTH:
        return False
    key = _key(password_hash, password)
    if _verified.get(key):
        return True
    try:
        _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    _verified.put(key, True)
    return True


async def check_password(password_hash: str, password: str) -> bool:
    """verify_password for a request: a recent success answers at once; argon2 itself runs in a thread, so
    a first sign-in, or a client sending a wrong X-PASSWORD on every call, never holds up other requests."""
    key = _key(password_hash, password)
    if _verified.get(key):  # only pairs verify_password accepted are kept
        return True
    loop = asyncio.get_running_loop()
    pending = _checking.get((loop, key))
    if pending is None:
        pending = _checking[(loop, key)] = loop.run_in_executor(_argon2, verify_password, password_hash, password)
        pending.add_done_callback(lambda _: _checking.pop((loop, key), None))
    return await asyncio.shield(pending)  # a caller that goes away does not cancel the others' check


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    return None
