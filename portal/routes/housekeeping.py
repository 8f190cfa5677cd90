"""Housekeeping on the study and series pages: download as zip (de-identified when the project says so) and delete
(managers; audited; the page asks for confirmation)."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import Redirect, Stream

from portal import archive as arch, audit, projects
from portal.archive import download
from portal.auth import permissions
from portal.routes._auth import client_of, portal_user
from portal.routes._render import flash
from portal.tables import Study, User

_deps = {"me": Provide(portal_user)}


async def _zip(request: Request, me: User, p, study, series: list, what: str) -> Stream:
    name, entries = await download.plan(p, study, series)
    await audit.record("downloaded", user=me, object=what, client=client_of(request),
                       detail={"files": len(entries), "deidentified": download.deidentified(p)})
    return Stream(download.chunks(p, entries), media_type="application/zip",
                  headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@get("/projects/{project:str}/series/{series_uid:str}/download", dependencies=_deps, include_in_schema=False)
async def series_download(request: Request, me: User, project: str, series_uid: str) -> Stream:
    p = await permissions.project_for(me, project, "api_dicom_get")
    series = await arch.find_series(p, series_uid)
    study = await Study.objects().get(Study.id == series.study)
    return await _zip(request, me, p, study, [series], f"project:{p.name}/series:{series_uid}")


@get("/projects/{project:str}/studies/{study_uid:str}/download", dependencies=_deps, include_in_schema=False)
async def study_download(request: Request, me: User, project: str, study_uid: str) -> Stream:
    p = await permissions.project_for(me, project, "api_dicom_get")
    study = await arch.find_study(p, study_uid)
    return await _zip(request, me, p, study, await arch.series_of_study(study), f"project:{p.name}/study:{study_uid}")


@post("/projects/{project:str}/series/{series_uid:str}/delete", dependencies=_deps, include_in_schema=False)
async def series_delete(request: Request, me: User, project: str, series_uid: str) -> Redirect:
    p = await permissions.project_for(me, project, "api_delete_series")
    series = await arch.find_series(p, series_uid)
    study = await Study.objects().get(Study.id == series.study)
    files = await arch.delete_series(series)
    await audit.record("series_deleted", user=me, object=f"project:{p.name}/series:{series_uid}",
                       detail={"files": files, "study": study.study_instance_uid}, client=client_of(request))
    flash(request, f"Deleted the series and its {files} file(s).", "success")
    left = await Study.exists().where(Study.id == study.id)
    return Redirect(f"/projects/{p.name}/studies/{study.study_instance_uid}" if left else f"/projects/{p.name}",
                    status_code=303)


@post("/projects/{project:str}/studies/{study_uid:str}/delete", dependencies=_deps, include_in_schema=False)
async def study_delete(request: Request, me: User, project: str, study_uid: str) -> Redirect:
    p = await permissions.project_for(me, project, "api_delete_study")
    study = await arch.find_study(p, study_uid)
    files = await arch.delete_study(study)
    await audit.record("study_deleted", user=me, object=f"project:{p.name}/study:{study_uid}",
                       detail={"files": files}, client=client_of(request))
    flash(request, f"Deleted the study and its {files} file(s).", "success")
    return Redirect(f"/projects/{p.name}", status_code=303)


@post("/projects/{project:str}/settings/downloads", dependencies=_deps, include_in_schema=False)
async def downloads_setting(request: Request, me: User, project: str) -> Redirect:
    p = await permissions.project_for(me, project, "manage_project")
    on = (await request.form()).get(download.SETTING) == "on"
    await projects.update_settings(p, {download.SETTING: on}, by=me, client=client_of(request))
    flash(request, "Downloads are de-identified." if on else "Downloads keep the original identifiers.", "success")
    return Redirect(f"/projects/{p.name}/settings#downloads", status_code=303)


ROUTES = [series_download, study_download, series_delete, study_delete, downloads_setting]
