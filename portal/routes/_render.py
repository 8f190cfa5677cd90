"""Rendering helpers shared by portal routes: pages with their layout context, flash messages, redirects."""

from __future__ import annotations

from litestar import Request, Response
from litestar.response import Redirect, Template

from portal import projects
from portal.tables import User


def flash(request: Request, message: str, category: str = "info") -> None:
    """Queue a message for the next rendered page (kept in the session cookie)."""
    session = dict(request.session or {})
    session["flash"] = [*session.get("flash", []), [category, message]][-5:]
    request.set_session(session)


def _pop_flashes(request: Request) -> list[list[str]]:
    session = dict(request.session or {})
    messages = session.pop("flash", [])
    if messages:
        request.set_session(session)
    return messages


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def page(request: Request, me: User | None, template: str, status_code: int = 200, **context) -> Template:
    """Render a page (or, for htmx, a partial) with what the layout needs: the user, their projects, flashes."""
    if me is not None and not is_htmx(request):
        context.setdefault("my_projects", await projects.visible_to(me))
    context.setdefault("flashes", [] if is_htmx(request) else _pop_flashes(request))
    return Template(template_name=template, context={"me": me, **context}, status_code=status_code)


def partial(template: str, status_code: int = 200, headers: dict | None = None, **context) -> Template:
    return Template(template_name=template, context=context, status_code=status_code, headers=headers)


def redirect(request: Request, path: str) -> Response:
    """Go to `path` after a form post; htmx callers get an HX-Redirect (XHR would follow a 303 silently)."""
    if is_htmx(request):
        return Response(content=b"", status_code=200, headers={"HX-Redirect": path})
    return Redirect(path, status_code=303)
