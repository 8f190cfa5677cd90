"""The signed-in user's own account: where they are signed in, their API tokens, and a password change."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Template

from portal.auth import accounts, sessions, tokens
from portal.errors import Invalid, LightboxError, NotFound, Unauthenticated
from portal.routes._auth import client_of, portal_user
from portal.routes._render import flash, page, redirect
from portal.tables import User

_deps = {"me": Provide(portal_user)}


async def _page(request: Request, me: User, status_code: int = 200, **extra) -> Template:
    return await page(request, me, "account/page.html", status_code=status_code,
                      sessions=await sessions.active(me), current_session=request.scope.get("lightbox_session"),
                      tokens=await tokens.list_for(me), **extra)


@get("/account", dependencies=_deps, include_in_schema=False)
async def account_page(request: Request, me: User) -> Template:
    return await _page(request, me)


@post("/account/sessions/{session_id:int}/end", dependencies=_deps, include_in_schema=False)
async def session_end(request: Request, me: User, session_id: int) -> Response:
    if not await sessions.end_one(me, session_id):
        raise NotFound("No such active session of yours.", "session_not_found")
    flash(request, "That browser is signed out.", "success")
    return redirect(request, "/account")


@post("/account/sessions/end-others", dependencies=_deps, include_in_schema=False)
async def sessions_end_others(request: Request, me: User) -> Response:
    ended = await sessions.end_all(me, except_id=request.scope.get("lightbox_session"))
    flash(request, f"Signed out of {ended} other session{'s' if ended != 1 else ''}.", "success")
    return redirect(request, "/account")


@post("/account/tokens/{token_id:int}/revoke", dependencies=_deps, include_in_schema=False)
async def token_revoke(request: Request, me: User, token_id: int) -> Response:
    await tokens.revoke(me, token_id, by=me, client=client_of(request))
    flash(request, "Token revoked.", "success")
    return redirect(request, "/account")


@post("/account/password", dependencies=_deps, include_in_schema=False)
async def password_change(request: Request, me: User) -> Template | Response:
    form = await request.form()
    try:
        try:
            await accounts.authenticate(me.username, form.get("current", ""), client=client_of(request), via="change")
        except Unauthenticated:
            raise Invalid("Your current password is not right.", "invalid_credentials") from None
        if form.get("password", "") != form.get("password2", ""):
            raise Invalid("The two new passwords differ.", "password_mismatch")
        ended = await accounts.set_password(me, form.get("password", ""), by=me, client=client_of(request),
                                            keep_session=request.scope.get("lightbox_session"))
    except LightboxError as exc:
        return await _page(request, me, status_code=exc.status, password_error=exc.detail)
    flash(request, f"Password changed; {ended['sessions']} other session(s) signed out and {ended['tokens']} API "
                   "token(s) revoked.", "success")
    return redirect(request, "/account")


ROUTES = [account_page, session_end, sessions_end_others, token_revoke, password_change]
