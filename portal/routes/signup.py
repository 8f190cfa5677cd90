"""Self sign-up (when the site allows it): the account waits for an administrator's approval."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.response import Redirect, Template

from portal.auth import signup
from portal.errors import Invalid, LightboxError, NotFound
from portal.routes._auth import client_of
from portal.routes._render import flash, page


@get("/signup", include_in_schema=False)
async def signup_form(request: Request) -> Template:
    if not await signup.is_open():
        raise NotFound("Sign-up is closed on this site; ask an administrator for an account.", "signup_closed")
    return await page(request, None, "signup.html", form={})


@post("/signup", include_in_schema=False)
async def signup_send(request: Request) -> Template | Redirect:
    form = await request.form()
    try:
        if form.get("password", "") != form.get("password2", ""):
            raise Invalid("The two passwords differ.", "password_mismatch")
        user = await signup.request_account(form.get("username", ""), form.get("email", ""),
                                            form.get("password", ""), client=client_of(request))
    except LightboxError as exc:
        return await page(request, None, "signup.html", status_code=exc.status, error=exc.detail,
                          form={"username": form.get("username", ""), "email": form.get("email", "")})
    flash(request, f"Thank you, {user.username}: an administrator will review your request; you will get an email.",
          "success")
    return Redirect("/login", status_code=303)


ROUTES = [signup_form, signup_send]
