"""User accounts: create, authenticate (with throttling), deactivate, reset passwords."""

from __future__ import annotations

import asyncio
import math

from portal import audit, clock, names, rowcache
from portal.auth import sessions, throttle
from portal.auth.passwords import check_password, new_hash, password_problem
from portal.errors import Conflict, Invalid, NotFound, Throttled, Unauthenticated
from portal.tables import Membership, User

async def get(username: str) -> User | None:
    return await User.objects().get(User.username == username)


async def get_cached(username: str) -> User | None:
    """`get` through the row cache (portal/rowcache.py): what every header-authenticated request looks up."""
    return await rowcache.get(("user", username), lambda: get(username))


async def by_id_cached(user_id: int) -> User | None:
    return await rowcache.get(("user_id", user_id), lambda: User.objects().get(User.id == user_id))


async def get_or_404(username: str) -> User:
    user = await get(username)
    if user is None:
        raise NotFound(f"No user named '{username}'.", "user_not_found")
    return user


async def list_users() -> list[User]:
    return await User.objects().order_by(User.username)


async def visible_to(user: User) -> list[User]:
    """The accounts `user` may see: everyone for administrators, else themselves and people who share a project."""
    if user.is_admin:
        return await list_users()
    mine = await Membership.select(Membership.project).where(Membership.user == user.id).output(as_list=True)
    ids = set(await Membership.select(Membership.user).where(Membership.project.is_in(mine)).output(as_list=True)) \
        if mine else set()
    ids.add(user.id)
    return await User.objects().where(User.id.is_in(sorted(ids))).order_by(User.username)


async def create(username: str, password: str, *, email: str = "", is_admin: bool = False,
                 by: User | None = None, client: str = "", approval: str = "") -> User:
    """A new account; with `approval` ("pending") it is made inactive and waiting, in the same insert."""
    username = names.username(username)
    email = names.email(email)
    problem = password_problem(password or "")
    if problem:
        raise Invalid(problem, "invalid_password", fields={"password": problem})
    if await User.exists().where(User.username == username):
        raise Conflict(f"A user named '{username}' already exists.", "duplicate_username",
                       fields={"username": "already taken"})
    user = User(username=username, email=email, password_hash=await new_hash(password),
                is_admin=is_admin, is_active=not approval, created_at=clock.now(),
                **({"approval": approval} if approval else {}))
    await user.save()
    await audit.record("user_created", user=by, object=f"user:{username}",
                       detail={"is_admin": is_admin}, client=client)
    return user


async def set_active(user: User, active: bool, *, by: User | None = None, client: str = "") -> None:
    user.is_active = active
    await user.save([User.is_active])
    await audit.record("user_activated" if active else "user_deactivated", user=by,
                       object=f"user:{user.username}", client=client)


async def set_password(user: User, password: str, *, by: User | None = None, client: str = "",
                       keep_session: int | None = None) -> dict:
    """A new password; every session of the user ends (but `keep_session`, the changer's own) and every API
    token is revoked: whoever held the old password, or something obtained with it, is out."""
    problem = password_problem(password or "")
    if problem:
        raise Invalid(problem, "invalid_password", fields={"password": problem})
    user.password_hash = await new_hash(password)
    await user.save([User.password_hash])
    await audit.record("password_reset" if by is None or by.id != user.id else "password_changed", user=by,
                       object=f"user:{user.username}", client=client)
    return await sessions.end_everything(user, by=by, client=client, except_session=keep_session)


async def set_admin(user: User, is_admin: bool, *, by: User | None = None, client: str = "") -> None:
    user.is_admin = is_admin
    await user.save([User.is_admin])
    await audit.record("admin_granted" if is_admin else "admin_revoked", user=by,
                       object=f"user:{user.username}", client=client)


async def authenticate(username: str, password: str, *, client: str = "", via: str = "portal") -> User:
    """The active user with these credentials; raises Unauthenticated or Throttled otherwise."""
    username = (username or "").strip()[:150]
    if not username or not password:
        raise Invalid("Username and password are both required.", "no_data_submitted")
    wait, pause = throttle.check(username, client)
    if wait > 0:
        seconds = math.ceil(wait)
        raise Throttled(f"Too many failed sign-in attempts for this account. Try again in {seconds} second"
                        f"{'s' if seconds != 1 else ''}.", "login_throttled", retry_after=seconds)
    if pause > 0:
        await asyncio.sleep(pause)  # a noisy address is slowed, but its correct credentials still get in
    user = await get_cached(username)
    ok = user is not None and await check_password(user.password_hash, password)
    if not ok or not user.is_active:
        throttle.failed(username, client)
        await audit.record("login_failed", username=username, object=f"user:{username}",
                           detail={"via": via, "reason": "inactive" if ok else "bad_credentials"},
                           client=client)
        raise Unauthenticated("Invalid username or password.", "invalid_credentials")
    throttle.succeeded(username, client)
    if via in ("portal", "token"):
        # Header-authenticated API calls are not "logins"; recording each would flood the log.
        user.last_login = clock.now()
        await user.save([User.last_login])
        await audit.record("login", user=user, object=f"user:{username}", detail={"via": via}, client=client)
    return user
