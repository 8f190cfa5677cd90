"""Administration of mail and oversight: the outbox (with resend), the audit log (filters, CSV), sign-ups."""

from __future__ import annotations

import datetime as dt

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Template

from portal import audit, site
from portal.auth import signup
from portal.errors import Invalid, LightboxError
from portal.mail import outbox
from portal.routes._auth import client_of
from portal.routes._render import flash, page, redirect
from portal.routes.admin import admin_user
from portal.tables import User

_deps = {"me": Provide(admin_user)}


@get("/admin/outbox", dependencies=_deps, include_in_schema=False)
async def outbox_page(request: Request, me: User) -> Template:
    state = request.query_params.get("state") or ""
    return await page(request, me, "admin/outbox.html", messages=await outbox.listing(state), state=state,
                      counts=await outbox.counts(), states=outbox.STATES)


@post("/admin/outbox/{outbox_id:int}/resend", dependencies=_deps, include_in_schema=False)
async def outbox_resend(request: Request, me: User, outbox_id: int) -> Response:
    await outbox.resend(outbox_id, by=me, client=client_of(request))
    flash(request, f"Message #{outbox_id} queued again.", "success")
    return redirect(request, "/admin/outbox")


def _day(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise Invalid(f"'{name}' must be a date like 2026-11-22.", "invalid_date")


@get("/admin/audit", dependencies=_deps, include_in_schema=False)
async def audit_page(request: Request, me: User, user: str = "", action: str = "", object: str = "",
                     since: str = "", until: str = "", format: str = "html") -> Response | Template:
    """The audit log; `until` is inclusive (the whole day); `format=csv` downloads every matching row."""
    filters = {"user": user.strip(), "action": action.strip(), "object": object.strip(), "since": since,
               "until": until}
    try:
        start, end = _day(since, "since"), _day(until, "until")
    except LightboxError as exc:
        return await page(request, me, "admin/audit.html", status_code=exc.status, error=exc.detail, events=[],
                          filters=filters, actions=await audit.actions())
    query = dict(username=filters["user"], action=filters["action"], object=filters["object"], since=start,
                 until=end + dt.timedelta(days=1) if end else None)
    if format == "csv":
        rows = await audit.search(**query, limit=None)
        await audit.record("audit_exported", user=me, object="audit", detail={k: v for k, v in filters.items() if v},
                           client=client_of(request))
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        return Response(audit.to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="lightbox-audit-{stamp}.csv"'})
    return await page(request, me, "admin/audit.html", events=await audit.search(**query, limit=500),
                      filters=filters, actions=await audit.actions())


@get("/admin/signups", dependencies=_deps, include_in_schema=False)
async def signups_page(request: Request, me: User) -> Template:
    return await page(request, me, "admin/signups.html", pending=await signup.pending(),
                      signup_mode=await site.get("signup"))


@post("/admin/signups/{username:str}", dependencies=_deps, include_in_schema=False)
async def signup_decide(request: Request, me: User, username: str) -> Response:
    approve = (await request.form()).get("decision") == "approve"
    user = await signup.decide(username, approve, by=me, client=client_of(request))
    flash(request, f"{user.username} {'approved' if approve else 'rejected'}; they are told by mail.", "success")
    return redirect(request, "/admin/signups")


@post("/admin/site", dependencies=_deps, include_in_schema=False)
async def site_settings(request: Request, me: User) -> Response:
    mode = (await request.form()).get("signup", "")
    await site.put("signup", mode, by=me, client=client_of(request))
    flash(request, "Sign-up is now " + ("open, with approval." if mode == "approval" else "closed."), "success")
    return redirect(request, "/admin/signups")


ROUTES = [outbox_page, outbox_resend, audit_page, signups_page, signup_decide, site_settings]
