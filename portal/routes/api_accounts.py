"""Accounts on the API: MIQA-style token auth and the users list."""

from __future__ import annotations

from typing import TypedDict

from litestar import Request, get, post
from litestar.di import Provide

from portal import clock
from portal.auth import accounts, tokens
from portal.errors import Invalid
from portal.routes import _openapi as doc
from portal.routes._body import json_or_form
from portal.routes._auth import api_user, client_of
from portal.tables import User


async def _credentials(request: Request) -> tuple[str, str]:
    data = await json_or_form(request)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise Invalid("Both 'username' and 'password' are required.", "no_data_submitted",
                      fields={k: "required" for k in ("username", "password") if not data.get(k)})
    return username, password


class Token(TypedDict):
    token: str


class _User(TypedDict):
    id: int
    username: str
    is_admin: bool
    is_active: bool
    created: str | None
    last_login: str | None


class UserOut(_User, total=False):
    email: str  # to administrators, and to the account itself


@post("/api-token-auth/", tags=["auth"], status_code=200,
      summary="Exchange a username and password (form or JSON) for an API token",
      operation_class=doc.documented(body=doc.json_or_form(doc.obj(("username", "password"), username=doc.STR,
                                                                   password=doc.STR))))
async def token_auth(request: Request) -> Token:
    username, password = await _credentials(request)
    user = await accounts.authenticate(username, password, client=client_of(request), via="token")
    return {"token": await tokens.issue(user, "api-token-auth", client=client_of(request))}


def user_dict(user: User, *, with_email: bool) -> UserOut:
    out: UserOut = {"id": user.id, "username": user.username, "is_admin": user.is_admin, "is_active": user.is_active,
           "created": clock.iso(user.created_at), "last_login": clock.iso(user.last_login)}
    if with_email:
        out["email"] = user.email
    return out


@get("/api/v1/users", tags=["users"], dependencies={"me": Provide(api_user)},
     summary="Accounts that share a project with the caller (administrators: all; emails to administrators only)")
async def list_users(me: User) -> list[UserOut]:
    return [user_dict(u, with_email=me.is_admin) for u in await accounts.visible_to(me)]


@get("/api/v1/users/me", tags=["users"], dependencies={"me": Provide(api_user)}, summary="The calling account")
async def users_me(me: User) -> UserOut:
    return user_dict(me, with_email=True)
