"""The bell: flags and alerts addressed to me, marking them read, and how I want to be told."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Template

from portal import notifications
from portal.routes._auth import client_of, portal_user
from portal.routes._render import flash, page, partial, redirect
from portal.tables import User

_deps = {"me": Provide(portal_user)}


@get("/notifications/bell", dependencies=_deps, include_in_schema=False)
async def bell(me: User) -> Template:
    return partial("notifications/_bell.html", unread=await notifications.unread_count(me))


@get("/notifications", dependencies=_deps, include_in_schema=False)
async def notifications_page(request: Request, me: User) -> Template:
    return await page(request, me, "notifications/list.html", items=await notifications.for_user(me),
                      unread=await notifications.unread_count(me), preferences=notifications.PREFERENCES)


@post("/notifications/read", dependencies=_deps, include_in_schema=False)
async def mark_read(request: Request, me: User) -> Response:
    raw = (await request.form()).get("id") or ""
    await notifications.mark_read(me, int(raw) if raw.isdigit() else None)
    return redirect(request, "/notifications")


@get("/notifications/{notification_id:int}/open", dependencies=_deps, include_in_schema=False)
async def open_one(me: User, notification_id: int) -> Response:
    """Mark one read and go to what it is about."""
    from litestar.response import Redirect

    items = [n for n in await notifications.for_user(me, limit=500) if n["id"] == notification_id]
    await notifications.mark_read(me, notification_id)
    return Redirect(items[0]["link"] if items and items[0]["link"].startswith("/") else "/notifications",
                    status_code=303)


@post("/notifications/preference", dependencies=_deps, include_in_schema=False)
async def preference(request: Request, me: User) -> Response:
    choice = (await request.form()).get("notify", "")
    await notifications.set_preference(me, choice, client=client_of(request))
    flash(request, "You will get flags and alerts " + ("by mail at once." if choice == "immediate"
                                                       else "in a daily digest."), "success")
    return redirect(request, "/notifications")


ROUTES = [bell, notifications_page, mark_read, open_one, preference]
