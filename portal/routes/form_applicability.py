"""Which series each report form applies to: the managers' table on the forms page, and its save."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import Template

from portal import forms
from portal.auth import permissions
from portal.errors import LightboxError, NotFound
from portal.forms import applicability
from portal.routes._auth import client_of, portal_user
from portal.routes._render import partial
from portal.tables import Project, User

_portal = {"me": Provide(portal_user)}


async def _context(project: Project, **extra) -> dict:
    rows = [{"form": f, "rule": applicability.rule_for(project, f["name"])} for f in await forms.forms_of(project)]
    return {"project": project, "rows": rows, "describe": applicability.describe, **extra}


@get("/projects/{project:str}/forms/applicability", dependencies=_portal, include_in_schema=False)
async def applicability_table(me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, "manage_forms")
    return partial("forms/_applicability.html", **await _context(p))


@post("/projects/{project:str}/forms/{form_name:str}/applies", dependencies=_portal, include_in_schema=False)
async def applicability_save(request: Request, me: User, project: str, form_name: str) -> Template:
    p = await permissions.project_for(me, project, "manage_forms")
    if form_name not in {f["name"] for f in await forms.forms_of(p)}:
        raise NotFound(f"Project '{p.name}' does not use a form named '{form_name}'.", "form_not_found")
    form = await request.form()
    try:
        rule = await applicability.set_rule(p, form_name, {k: form.get(k, "") for k in applicability.KEYS},
                                            by=me, client=client_of(request))
        return partial("forms/_applicability.html",
                       **await _context(p, notice=f"{form_name} applies to {applicability.describe(rule)}."))
    except LightboxError as exc:
        return partial("forms/_applicability.html", status_code=exc.status,
                       **await _context(p, error=exc.detail, error_form=form_name))


ROUTES = [applicability_table, applicability_save]
