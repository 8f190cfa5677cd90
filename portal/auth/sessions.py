"""Portal sign-in sessions, kept server-side: the cookie holds a random key, and its row says whether it still counts.

Ending a row (sign-out, a password reset or change) signs that browser out at once, whatever its cookie says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from portal import audit, clock, db
from portal.auth import accounts
from portal.tables import ApiToken, User, UserSession

LIFETIME = dt.timedelta(hours=12)  # the cookie's max-age too
# last_seen_at is refreshed at most this often, so an ordinary page view writes nothing.
TOUCH_EVERY = dt.timedelta(minutes=5)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def start(user: User, *, client: str = "", user_agent: str = "") -> str:
    """A new session for `user`; returns the key the cookie carries (only its hash is stored)."""
    key = secrets.token_urlsafe(32)
    now = clock.now()
    await UserSession.insert(UserSession(user=user.id, key_hash=_digest(key), client=client[:64],
                                         user_agent=(user_agent or "")[:200], created_at=now, last_seen_at=now))
    return key


async def user_for(key: str) -> tuple[User, int] | None:
    """The active user of an unended, unexpired session with this key, and the session's id."""
    if not key or not isinstance(key, str) or len(key) > 100:
        return None
    # Every portal page starts here: plain SQL and the row cache, not the ORM's join (portal/db.py, rows_of).
    row = await db.row_of(UserSession, "key_hash = {} AND ended_at IS NULL", _digest(key))
    now = clock.now()
    if row is None or row.created_at < now - LIFETIME:
        return None
    user = await accounts.by_id_cached(row.user)
    if user is None or not user.is_active:
        return None
    if row.last_seen_at < now - TOUCH_EVERY:
        await UserSession.update({UserSession.last_seen_at: now}).where(UserSession.id == row.id)
    return user, row.id


async def end(key: str) -> None:
    """Sign-out: the session with this key stops counting."""
    if key and isinstance(key, str):
        await UserSession.update({UserSession.ended_at: clock.now()}).where(
            (UserSession.key_hash == _digest(key)) & UserSession.ended_at.is_null())


async def end_one(user: User, session_id: int) -> bool:
    ended = await UserSession.update({UserSession.ended_at: clock.now()}).where(
        (UserSession.id == session_id) & (UserSession.user == user.id) & UserSession.ended_at.is_null()
    ).returning(UserSession.id)
    return bool(ended)


async def end_all(user: User, *, except_id: int | None = None) -> int:
    """End every session of `user` (but `except_id`); returns how many were ended."""
    where = (UserSession.user == user.id) & UserSession.ended_at.is_null()
    if except_id is not None:
        where &= UserSession.id != except_id
    ended = await UserSession.update({UserSession.ended_at: clock.now()}).where(where).returning(UserSession.id)
    return len(ended)


async def active(user: User) -> list[UserSession]:
    """The user's sessions that still count, most recently seen first."""
    since = clock.now() - LIFETIME
    return await UserSession.objects().where(
        (UserSession.user == user.id) & UserSession.ended_at.is_null() & (UserSession.created_at >= since)
    ).order_by(UserSession.last_seen_at, ascending=False)


async def end_everything(user: User, *, by: User | None = None, client: str = "",
                         except_session: int | None = None) -> dict:
    """After a password reset or change: every session ends and every API token is revoked."""
    ended = await end_all(user, except_id=except_session)
    revoked = await ApiToken.update({ApiToken.revoked_at: clock.now()}).where(
        (ApiToken.user == user.id) & ApiToken.revoked_at.is_null()).returning(ApiToken.id)
    await audit.record("credentials_ended", user=by, object=f"user:{user.username}",
                       detail={"sessions": ended, "tokens": len(revoked)}, client=client)
    return {"sessions": ended, "tokens": len(revoked)}
