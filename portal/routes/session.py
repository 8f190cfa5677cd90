"""Portal sign-in and sign-out."""

from __future__ import annotations

from urllib.parse import urlparse

from litestar import Request, get, post
from litestar.response import Redirect, Template

from portal.auth import accounts, sessions, signup
from portal.errors import LightboxError
from portal.routes._auth import client_of
from portal.routes._render import flash, page


def _safe_next(value: str | None) -> str:
    """Only same-site paths: never redirect a freshly signed-in user to another host."""
    if not value or not value.startswith("/") or value.startswith("//") or urlparse(value).netloc:
        return "/projects"
    return value


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/projects")


@get("/login", include_in_schema=False)
async def login_form(request: Request, next: str | None = None) -> Template:
    return await page(request, None, "login.html", next=_safe_next(next), username="",
                      signup_open=await signup.is_open())


@post("/login", include_in_schema=False)
async def login(request: Request) -> Template | Redirect:
    form = await request.form()
    username, password = form.get("username", ""), form.get("password", "")
    target = _safe_next(form.get("next"))
    try:
        user = await accounts.authenticate(username, password, client=client_of(request), via="portal")
    except LightboxError as exc:
        return await page(request, None, "login.html", status_code=exc.status, error=exc.detail,
                          next=target, username=username[:150], signup_open=await signup.is_open())
    # A fresh session on sign-in (no fixation): only the server-side session's key and a flash.
    key = await sessions.start(user, client=client_of(request), user_agent=request.headers.get("user-agent", ""))
    request.set_session({"sid": key})
    flash(request, f"Signed in as {user.username}.", "success")
    return Redirect(target, status_code=303)


@post("/logout", include_in_schema=False)
async def logout(request: Request) -> Redirect:
    """Sign-out ends the session on the server too: a copy of the cookie no longer opens anything.
    POST only (with the CSRF token), so another site cannot sign a user out."""
    await sessions.end((request.session or {}).get("sid"))
    request.clear_session()
    return Redirect("/login", status_code=303)
