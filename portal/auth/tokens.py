"""API tokens (`Authorization: Token ...`): issue, look up, revoke. Only a hash is stored."""

from __future__ import annotations

import hashlib
import secrets

import datetime as dt

from portal import audit, clock, rowcache
from portal.errors import NotFound
from portal.tables import ApiToken, User


LAST_USED_EVERY = dt.timedelta(minutes=1)  # how fresh a token's "last used" is kept


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def issue(user: User, name: str = "", *, by: User | None = None, client: str = "") -> str:
    """Create a token for `user` and return its key (shown once; only its hash is kept)."""
    key = secrets.token_hex(20)
    await ApiToken.insert(ApiToken(user=user.id, key_hash=_digest(key), prefix=key[:8],
                                   name=(name or "")[:100], created_at=clock.now()))
    await audit.record("token_issued", user=by or user, object=f"user:{user.username}",
                       detail={"prefix": key[:8], "name": name}, client=client)
    return key


async def user_for(key: str) -> User | None:
    """The active user owning an unrevoked token with this key."""
    if not key or len(key) > 200:
        return None
    digest = _digest(key)
    token = await rowcache.get(("token", digest), lambda: ApiToken.objects().get(ApiToken.key_hash == digest))
    if token is None or token.revoked_at is not None:
        return None
    from portal.auth import accounts

    user = await accounts.by_id_cached(token.user)
    if user is None or not user.is_active:
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        # Once a minute, not once a request: a write per call would take SQLite's write lock for every STOW.
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == token.id)
    return user


async def list_for(user: User) -> list[ApiToken]:
    return await ApiToken.objects().where(ApiToken.user == user.id).order_by(ApiToken.created_at, ascending=False)


async def revoke(user: User, token_id: int, *, by: User | None = None, client: str = "") -> None:
    token = await ApiToken.objects().get((ApiToken.id == token_id) & (ApiToken.user == user.id))
    if token is None:
        raise NotFound("No such token for this user.", "token_not_found")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        await token.save([ApiToken.revoked_at])
        await audit.record("token_revoked", user=by, object=f"user:{user.username}",
                           detail={"prefix": token.prefix}, client=client)
