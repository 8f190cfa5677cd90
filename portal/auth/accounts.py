"""User accounts: create, authenticate (with throttling), deactivate, reset passwords."""

from __future__ import annotations

import datetime as dt

from portal import audit, clock, names
from portal.auth.passwords import hash_password, password_problem, verify_password
from portal.errors import Conflict, Invalid, NotFound, Throttled, Unauthenticated
from portal.tables import User

# After this many failed attempts for one username (or from one client) within the window,
# further attempts are refused until the window has passed.
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)


async def get(username: str) -> User | None:
    return await User.objects().get(User.username == username)


async def get_or_404(username: str) -> User:
    user = await get(username)
    if user is None:
        raise NotFound(f"No user named '{username}'.", "user_not_found")
    return user


async def list_users() -> list[User]:
    return await User.objects().order_by(User.username)


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
    user = User(username=username, email=email, password_hash=hash_password(password),
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


async def set_password(user: User, password: str, *, by: User | None = None, client: str = "") -> None:
    problem = password_problem(password or "")
    if problem:
        raise Invalid(problem, "invalid_password", fields={"password": problem})
    user.password_hash = hash_password(password)
    await user.save([User.password_hash])
    await audit.record("password_reset", user=by, object=f"user:{user.username}", client=client)


async def set_admin(user: User, is_admin: bool, *, by: User | None = None, client: str = "") -> None:
    user.is_admin = is_admin
    await user.save([User.is_admin])
    await audit.record("admin_granted" if is_admin else "admin_revoked", user=by,
                       object=f"user:{user.username}", client=client)


async def _check_throttle(username: str, client: str) -> None:
    since = clock.now() - FAILURE_WINDOW
    by_user = await audit.count_since("login_failed", since, username=username)
    by_client = await audit.count_since("login_failed", since, client=client) if client else 0
    if by_user >= MAX_FAILURES or by_client >= MAX_FAILURES * 4:
        minutes = int(FAILURE_WINDOW.total_seconds() // 60)
        raise Throttled(f"Too many failed sign-in attempts. Wait {minutes} minutes and try again, "
                        "or ask an administrator to reset your password.", "login_throttled")


async def authenticate(username: str, password: str, *, client: str = "", via: str = "portal") -> User:
    """The active user with these credentials; raises Unauthenticated or Throttled otherwise."""
    username = (username or "").strip()[:150]
    if not username or not password:
        raise Invalid("Username and password are both required.", "no_data_submitted")
    await _check_throttle(username, client)
    user = await get(username)
    ok = user is not None and verify_password(user.password_hash, password)
    if not ok or not user.is_active:
        await audit.record("login_failed", username=username, object=f"user:{username}",
                           detail={"via": via, "reason": "inactive" if ok else "bad_credentials"},
                           client=client)
        raise Unauthenticated("Invalid username or password.", "invalid_credentials")
    if via in ("portal", "token"):
        # Header-authenticated API calls are not "logins"; recording each would flood the log.
        user.last_login = clock.now()
        await user.save([User.last_login])
        await audit.record("login", user=user, object=f"user:{username}", detail={"via": via}, client=client)
    return user
