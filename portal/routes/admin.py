"""Administration pages: accounts (create, deactivate, reset password, admin flag) and their API tokens."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Template

from portal.auth import accounts, sessions, throttle, tokens
from portal.auth.permissions import require_admin
from portal.errors import Invalid, LightboxError, NotFound
from portal.routes._auth import client_of, portal_user
from portal.routes._render import flash, page, redirect
from portal.tables import User


async def admin_user(request: Request) -> User:
    user = await portal_user(request)
    require_admin(user)
    return user


_deps = {"me": Provide(admin_user)}


@get("/admin/users", dependencies=_deps, include_in_schema=False)
async def users_page(request: Request, me: User) -> Template:
    return await page(request, me, "admin/users.html", users=await accounts.list_users(), form={},
                      throttle=throttle.snapshot())


@post("/admin/users", dependencies=_deps, include_in_schema=False)
async def user_create(request: Request, me: User) -> Template | Response:
    form = await request.form()
    try:
        user = await accounts.create(form.get("username", ""), form.get("password", ""),
                                     email=form.get("email", ""), is_admin=form.get("is_admin") == "on",
                                     by=me, client=client_of(request))
    except LightboxError as exc:
        return await page(request, me, "admin/users.html", status_code=exc.status, error=exc.detail,
                          users=await accounts.list_users(), throttle=throttle.snapshot(),
                          form={k: v for k, v in form.items() if k != "password"})
    flash(request, f"User '{user.username}' created.", "success")
    return redirect(request, "/admin/users")


async def _user_page(request: Request, me: User, username: str, status_code: int = 200, **extra) -> Template:
    user = await accounts.get_or_404(username)
    return await page(request, me, "admin/user.html", status_code=status_code, user=user,
                      tokens=await tokens.list_for(user), sessions=await sessions.active(user),
                      current_session=request.scope.get("lightbox_session"), **extra)


@get("/admin/users/{username:str}", dependencies=_deps, include_in_schema=False)
async def user_page(request: Request, me: User, username: str) -> Template:
    return await _user_page(request, me, username)


@post("/admin/users/{username:str}/active", dependencies=_deps, include_in_schema=False)
async def user_active(request: Request, me: User, username: str) -> Template | Response:
    user = await accounts.get_or_404(username)
    active = (await request.form()).get("active") == "1"
    if user.id == me.id and not active:
        return await _user_page(request, me, username, status_code=400,
                                error="You cannot deactivate your own account.")
    await accounts.set_active(user, active, by=me, client=client_of(request))
    flash(request, f"{user.username} {'activated' if active else 'deactivated'}.", "success")
    return redirect(request, f"/admin/users/{user.username}")


@post("/admin/users/{username:str}/admin", dependencies=_deps, include_in_schema=False)
async def user_admin_flag(request: Request, me: User, username: str) -> Template | Response:
    user = await accounts.get_or_404(username)
    is_admin = (await request.form()).get("is_admin") == "1"
    if user.id == me.id and not is_admin:
        return await _user_page(request, me, username, status_code=400,
                                error="You cannot remove your own administrator rights.")
    await accounts.set_admin(user, is_admin, by=me, client=client_of(request))
    flash(request, f"{user.username} is {'now' if is_admin else 'no longer'} an administrator.", "success")
    return redirect(request, f"/admin/users/{user.username}")


@post("/admin/users/{username:str}/password", dependencies=_deps, include_in_schema=False)
async def user_password(request: Request, me: User, username: str) -> Template | Response:
    user = await accounts.get_or_404(username)
    form = await request.form()
    try:
        if form.get("password", "") != form.get("password2", ""):
            raise Invalid("The two passwords differ.", "password_mismatch")
        ended = await accounts.set_password(
            user, form.get("password", ""), by=me, client=client_of(request),
            keep_session=request.scope.get("lightbox_session") if user.id == me.id else None)
    except LightboxError as exc:
        return await _user_page(request, me, username, status_code=exc.status, password_error=exc.detail)
    flash(request, f"Password of {user.username} reset; {ended['sessions']} session(s) signed out and "
                   f"{ended['tokens']} API token(s) revoked.", "success")
    return redirect(request, f"/admin/users/{user.username}")


@post("/admin/users/{username:str}/tokens", dependencies=_deps, include_in_schema=False)
async def token_issue(request: Request, me: User, username: str) -> Template:
    user = await accounts.get_or_404(username)
    name = ((await request.form()).get("name") or "").strip()
    key = await tokens.issue(user, name or "issued by admin", by=me, client=client_of(request))
    # Rendered, not redirected: the key is shown exactly once.
    return await _user_page(request, me, username, new_token=key)


@post("/admin/users/{username:str}/tokens/{token_id:int}/revoke", dependencies=_deps, include_in_schema=False)
async def token_revoke(request: Request, me: User, username: str, token_id: int) -> Response:
    user = await accounts.get_or_404(username)
    await tokens.revoke(user, token_id, by=me, client=client_of(request))
    flash(request, "Token revoked.", "success")
    return redirect(request, f"/admin/users/{user.username}")


@post("/admin/users/{username:str}/sessions/{session_id:int}/end", dependencies=_deps, include_in_schema=False)
async def session_end(request: Request, me: User, username: str, session_id: int) -> Response:
    user = await accounts.get_or_404(username)
    if not await sessions.end_one(user, session_id):
        raise NotFound(f"{user.username} has no such active session.", "session_not_found")
    flash(request, f"A session of {user.username} was signed out.", "success")
    return redirect(request, f"/admin/users/{user.username}")
