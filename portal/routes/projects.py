"""Portal pages of projects: the list, a project's page and its settings (archives, members)."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Template

from urllib.parse import urlencode

from portal import dimse, projects
from portal.archive import browse
from portal.auth import permissions
from portal.auth.permissions import ROLES, require_admin
from portal.errors import LightboxError
from portal.review import decisions, vocabulary
from portal.routes._auth import client_of, portal_user
from portal.routes._render import flash, is_htmx, page, partial, redirect
from portal.tables import User

_deps = {"me": Provide(portal_user)}


@get("/projects", dependencies=_deps, include_in_schema=False)
async def project_list(request: Request, me: User) -> Template:
    return await page(request, me, "projects/list.html")


@post("/projects", dependencies=_deps, include_in_schema=False)
async def project_create(request: Request, me: User) -> Template | Response:
    require_admin(me)
    form = await request.form()
    try:
        project = await projects.create(form.get("name", ""), description=form.get("description", ""),
                                        by=me, client=client_of(request))
    except LightboxError as exc:
        return await page(request, me, "projects/list.html", status_code=exc.status, error=exc.detail,
                          form=dict(form))
    flash(request, f"Project '{project.name}' created.", "success")
    return redirect(request, f"/projects/{project.name}")


@get("/projects/{project:str}", dependencies=_deps, include_in_schema=False)
async def project_page(request: Request, me: User, project: str) -> Template:
    """The studies table; htmx requests (search, filter, sort, page) get just the table."""
    p = await permissions.project_for(me, project)
    result = await browse.search_studies(p, browse.StudyQuery.from_params(request.query_params))
    if is_htmx(request) and request.headers.get("hx-target") == "studies":
        return partial("projects/_studies.html", project=p, result=result, urlencode=urlencode)
    return await page(request, me, "projects/detail.html", project=p, result=result, urlencode=urlencode,
                      role=await permissions.role_of(me, p), perms=await permissions.permissions(me, p),
                      statuses=decisions.REVIEW_STATUSES)


async def settings_page_context(me: User, name: str) -> dict:
    p = await permissions.project_for(me, name, "manage_project")
    conf = projects.settings_of(p)
    return {"project": p, "archives": await projects.archives(p), "members": await projects.members(p),
            "roles": ROLES, "vocabulary": conf["decisions"], "artifacts": conf["artifacts"],
            "review_roles": vocabulary.ROLES, "ae_titles": conf["ae_titles"], "ae_callers": conf["ae_callers"],
            "exchange": _exchange_settings(p, conf),
            "reserved_keys": sorted(vocabulary.RESERVED_KEYS), "settings_conf": conf}


def _exchange_settings(p, conf: dict) -> dict:
    from portal.exchange import exporter as export_mod

    keys = ("export_path", "import_path", "export_format", "export_images", "export_backups", "sync_every_minutes")
    return {**{k: conf[k] for k in keys}, "default_export": str(export_mod.export_file(p, conf["export_format"])[0])}


@get("/projects/{project:str}/settings", dependencies=_deps, include_in_schema=False)
async def settings_page(request: Request, me: User, project: str) -> Template:
    return await page(request, me, "projects/settings.html", **await settings_page_context(me, project))


@post("/projects/{project:str}/settings/dicom", dependencies=_deps, include_in_schema=False)
async def dicom_save(request: Request, me: User, project: str) -> Template | Response:
    """The called AE titles that reach this project over C-STORE, and the calling AE titles it accepts."""
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    try:
        changes = {"ae_titles": dimse.check_ae_titles(form.get("ae_titles", ""), "Called AE titles"),
                   "ae_callers": dimse.check_ae_titles(form.get("ae_callers", ""), "Allowed calling AE titles")}
        await projects.update_settings(p, changes, by=me, client=client_of(request))
    except LightboxError as exc:
        return await page(request, me, "projects/settings.html", status_code=exc.status, dicom_error=exc.detail,
                          **await settings_page_context(me, project))
    flash(request, "DICOM settings saved.", "success")
    return redirect(request, f"/projects/{p.name}/settings#dicom")


@post("/projects/{project:str}/settings/archives", dependencies=_deps, include_in_schema=False)
async def archive_create(request: Request, me: User, project: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    try:
        archive = await projects.create_archive(p, form.get("name", ""), by=me, client=client_of(request))
    except LightboxError as exc:
        return await page(request, me, "projects/settings.html", status_code=exc.status,
                          archive_error=exc.detail, **await settings_page_context(me, project))
    flash(request, f"Archive '{archive.name}' created.", "success")
    return redirect(request, f"/projects/{p.name}/settings")


async def _members_response(request: Request, me: User, project: str, *, status_code: int = 200,
                            error: str = "", notice: str = "") -> Template | Response:
    ctx = await settings_page_context(me, project)
    if is_htmx(request):
        return partial("projects/_members.html", status_code=status_code, member_error=error,
                       member_notice=notice, **ctx)
    if error:
        return await page(request, me, "projects/settings.html", status_code=status_code, member_error=error, **ctx)
    flash(request, notice, "success")
    return redirect(request, f"/projects/{project}/settings")


@post("/projects/{project:str}/settings/members", dependencies=_deps, include_in_schema=False)
async def member_set(request: Request, me: User, project: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_members")
    form = await request.form()
    username, role = (form.get("username") or "").strip(), form.get("role", "")
    try:
        await projects.set_member(p, username, role, by=me, client=client_of(request))
    except LightboxError as exc:
        return await _members_response(request, me, project, status_code=exc.status, error=exc.detail)
    return await _members_response(request, me, project, notice=f"{username} is now {role} in {p.name}.")


@post("/projects/{project:str}/settings/members/{username:str}/remove", dependencies=_deps,
      include_in_schema=False)
async def member_remove(request: Request, me: User, project: str, username: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_members")
    try:
        await projects.remove_member(p, username, by=me, client=client_of(request))
    except LightboxError as exc:
        return await _members_response(request, me, project, status_code=exc.status, error=exc.detail)
    return await _members_response(request, me, project, notice=f"{username} removed from {p.name}.")
