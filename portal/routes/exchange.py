"""Import/export routes: the API (managers start runs and read their status) and the portal's panel on the
project page, its live run status, the sync history page and the import/export settings."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Literal, TypedDict

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import File, Response, Template

from portal import projects, settings as settings_mod, uploads
from portal.auth import permissions
from portal.dicom import sanitize_filename
from portal.errors import Invalid, LightboxError, PermissionDenied
from portal.exchange import exporter as export_mod, importer, runs
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes import _openapi as doc
from portal.routes._body import json_object
from portal.routes._files import stored_file
from portal.routes._render import flash, page, partial, redirect
from portal.tables import Project, User

_api = {"me": Provide(api_user)}
_portal = {"me": Provide(portal_user)}
PERMISSION = "import_export"
MAX_BODY = importer.MAX_BYTES + 1024**2  # the largest import file, and the form around it

# Export options: de-identify, and the PS3.15 profile options (see portal/exchange/deidentify.py).
DEID_OPTIONS = ("deidentify", "remap_uids", "shift_dates", "clean_descriptors")


def _enqueue(run: dict) -> None:
    from portal.tasks.exchange import enqueue

    enqueue(run)


def _status_url(project: Project, run: dict) -> str:
    return f"/api/v1/projects/{project.name}/runs/{run['id']}"


async def _receive_file(request: Request, *, required: bool = True) -> str:
    """An uploaded import file (form field 'file'), kept under the data dir until its run has read it."""
    folder = settings_mod.current().data_dir / "imports" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    parts = await uploads.receive(request.stream(), request.headers.get("content-type", ""), folder,
                                  max_total=MAX_BODY, allowed=("multipart/form-data",))
    files = [p for p in parts if p.name == "file" and p.path is not None and p.filename and p.size]
    if not files:
        shutil.rmtree(folder, ignore_errors=True)
        if required:
            raise Invalid("Send the import file in a form field named 'file'.", "no_file", fields={"file": "required"})
        return ""
    # Keep the sender's file name (made safe): messages and the history name the file people know.
    named = folder / sanitize_filename(files[0].filename)
    files[0].path.rename(named)
    return str(named)


async def _create_import(p: Project, trigger: str, me: User, path: str, uploaded: bool) -> dict:
    try:
        return await runs.create(p, "import", trigger=trigger, user=me, path=path, options={"upload": uploaded})
    except LightboxError:
        if uploaded:  # refused (another import started meanwhile): the upload is not kept
            shutil.rmtree(Path(path).parent, ignore_errors=True)
        raise


def _admin_path(me: User, value, what: str) -> str:
    """A server path chosen by the caller: administrators only, since it reads or writes the server's disk."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"'{what}' must be a path.", "invalid_value", fields={what: "must be text"})
    if not me.is_admin:
        raise PermissionDenied(f"Only administrators may choose a server path ('{what}'); managers use the "
                               "project's configured path or upload a file.", "admin_required")
    return str(Path(value).expanduser().resolve())


# --- API ----------------------------------------------------------------------------------------------

Scalar = int | str | bool | None


class Problem(TypedDict):
    """Where an import file is wrong (records.Problem): its row or JSON path, the field, what to fix."""
    row: str
    field: str
    problem: str


class _Run(TypedDict):
    """runs.as_dict: an export, import or sync (files), or a DICOMweb pull (network/dicomweb_pull)."""
    id: int
    project: str
    kind: Literal["export", "import", "sync", "dicomweb"]  # runs.KINDS and dicomweb_pull.KIND
    trigger: Literal["portal", "api", "cli", "schedule"]
    state: Literal["queued", "running", "done", "failed"]
    format: Literal["", "json", "csv"]
    path: str
    options: dict[str, bool | int | str | dict[str, str]]  # de-identification flags; a pull's node, query, days
    username: str
    phase: str
    done: int
    total: int
    # Counts and file names; a sync nests its import's and export's summaries ("incoming", "import", "export").
    summary: dict[str, Scalar | dict[str, Scalar]]
    problems: list[Problem]
    message: str
    queued: str
    started: str | None
    finished: str | None
    active: bool
    download_url: str | None


class Run(_Run, total=False):
    direct_url: str  # a finished export's file straight from an S3 store (presigned, an hour)


class RunStarted(TypedDict):
    run: Run
    status_url: str


# The JSON file of an export (exporter.snapshot), as a download. MIQA's nesting with Lightbox's additions.
_LOCATION = doc.nullable(doc.obj(("x", "y", "z"), x=doc.NUMBER, y=doc.NUMBER, z=doc.NUMBER))
_EXPORTED_DECISION = doc.obj(
    ("decision", "creator", "note", "created", "user_identified_artifacts", "location"), decision=doc.STR,
    creator=doc.STR, role=doc.STR, note=doc.STR, created=doc.STR,
    user_identified_artifacts=doc.obj(others={"type": "integer", "enum": [1, 0, -1]}), location=_LOCATION)
_ANSWER = {"oneOf": [doc.STR, doc.NUMBER, doc.BOOL, doc.array(doc.STR)]}
_SCAN = doc.obj(
    ("type", "frames", "decisions"), type=doc.STR, scan_link=doc.STR, description=doc.STR,
    frames=doc.obj(others=doc.obj(("file_location",), file_location=doc.STR, sop_instance_uid=doc.STR,
                                  md5=doc.STR)),
    last_decision=doc.nullable(_EXPORTED_DECISION), decisions=doc.array(_EXPORTED_DECISION),
    form_submissions=doc.array(doc.obj(
        ("form", "form_version", "entry"), form=doc.STR, form_version=doc.INT, creator=doc.STR, email=doc.STR,
        created=doc.STR, entry=doc.obj(others=_ANSWER), entry_formatted=doc.STR)),
    ai_results=doc.array(doc.obj(
        ("model", "results"), model=doc.obj(("name", "version"), name=doc.STR, version=doc.STR),
        finished=doc.nullable(doc.STR), results=doc.array(doc.obj(
            ("name", "value"), name=doc.STR, algorithm=doc.STR, value=doc.nullable(doc.NUMBER), text=doc.STR,
            type=doc.STR)))))
_EXPORT_DOCUMENT = doc.obj(
    ("format", "version", "projects"), format=doc.enum(["lightbox"]), version=doc.INT, exported=doc.STR,
    deidentified=doc.BOOL, missing_files=doc.array(doc.STR),
    withheld_burned_in=doc.array(doc.obj(("sop_instance_uid", "reason"), sop_instance_uid=doc.STR,
                                         series_instance_uid=doc.STR, reason=doc.STR)),
    projects=doc.obj(others=doc.obj(
        ("experiments",),
        settings=doc.obj(decisions=doc.array(doc.obj(("code",), code=doc.STR, label=doc.STR, colour=doc.STR,
                                                     key=doc.STR, roles=doc.array(doc.STR))),
                         artifacts=doc.array(doc.STR)),
        forms=doc.array(doc.obj(("name", "version", "fields"), name=doc.STR, version=doc.INT, title=doc.STR,
                                description=doc.STR, fields=doc.array(doc.obj(
                                    ("name", "type"), name=doc.STR, type=doc.STR, label=doc.STR)))),
        experiments=doc.obj(others=doc.obj(
            ("scans",), notes=doc.STR, subject_id=doc.STR, session_id=doc.STR, archive=doc.STR,
            scans=doc.obj(others=_SCAN))))))


@post("/api/v1/projects/{name:str}/export", dependencies=_api, tags=["projects"], status_code=202,
      summary="Export the project (a task): body {format?, deidentify?, remap_uids?, shift_dates?, clean_descriptors?, "
              "to? (admins)}",
      operation_class=doc.documented(body={doc.JSON: doc.obj(
          format={"enum": ["", "json", "csv"]}, to={"type": ["string", "null"], "description": "administrators"},
          **{k: doc.BOOL for k in DEID_OPTIONS})}, body_required=False))
async def api_export(request: Request, me: User, name: str) -> RunStarted:
    p = await permissions.project_for(me, name, PERMISSION)
    data = await json_object(request, '{"format": "csv"}') if await request.body() else {}
    fmt = data.get("format") or ""
    if fmt not in ("", *export_mod.FORMATS):
        raise Invalid("format must be json or csv.", "invalid_format", fields={"format": "json or csv"})
    to = _admin_path(me, data.get("to"), "to")
    run = await runs.create(p, "export", trigger="api", user=me, fmt=fmt, path=to,
                            options={k: bool(data.get(k)) for k in DEID_OPTIONS})
    _enqueue(run)
    return {"run": run, "status_url": _status_url(p, run)}


@post("/api/v1/projects/{name:str}/import", dependencies=_api, tags=["projects"], status_code=202,
      request_max_body_size=MAX_BODY,
      summary="Import into the project (a task): a multipart 'file', JSON {path} (admins), or no body for the "
              "project's import path",
      operation_class=doc.documented(body={doc.MULTIPART: doc.obj(("file",), file=doc.BINARY),
                                           doc.JSON: doc.obj(path={"type": ["string", "null"],
                                                                   "description": "administrators"})},
                                     body_required=False))
async def api_import(request: Request, me: User, name: str) -> RunStarted:
    p = await permissions.project_for(me, name, PERMISSION)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    await runs.refuse_if_merging(p)  # before receiving a file that could not be imported now
    uploaded = media == "multipart/form-data"
    if uploaded:
        path = await _receive_file(request)
    elif await request.body():
        path = _admin_path(me, (await json_object(request, '{"path": "/srv/exchange/chest.csv"}')).get("path"), "path")
    else:
        path = ""
    run = await _create_import(p, "api", me, path, uploaded)
    _enqueue(run)
    return {"run": run, "status_url": _status_url(p, run)}


@get("/api/v1/projects/{name:str}/runs", dependencies=_api, tags=["projects"],
     summary="Import/export/sync runs of the project, newest first")
async def api_runs(me: User, name: str) -> list[Run]:
    return await runs.history(await permissions.project_for(me, name, PERMISSION), viewer=me.username)


@get("/api/v1/projects/{name:str}/runs/{run_id:int}", dependencies=_api, tags=["projects"],
     summary="One import/export/sync run: state, progress, summary, and every problem of a refused import")
async def api_run(me: User, name: str, run_id: int) -> Run:
    return await runs.get(await permissions.project_for(me, name, PERMISSION), run_id, viewer=me.username)


async def _export_file(request: Request, me: User, name: str, run_id: int) -> Response:
    p = await permissions.project_for(me, name, PERMISSION)
    store, key, filename = await runs.export_download(p, run_id, me)
    media = "text/csv" if filename.lower().endswith(".csv") else "application/json"
    return await stored_file(request, store, key, filename=filename, media_type=media)  # streamed, an attachment


@get("/api/v1/projects/{name:str}/runs/{run_id:int}/file", dependencies=_api, tags=["projects"],
     summary="The file a finished export wrote (its download_url), for the person who started it",
     operation_class=doc.documented(answers={200: {"text/csv": doc.BINARY, doc.JSON: _EXPORT_DOCUMENT},
                                             206: {"text/csv": doc.BINARY, doc.JSON: doc.BINARY}}))
async def api_run_file(request: Request, me: User, name: str, run_id: int) -> Response:
    return await _export_file(request, me, name, run_id)


# --- portal --------------------------------------------------------------------------------------------


def _run_partial(p: Project, run: dict, me: User | None = None) -> Template:
    return partial("exchange/_run.html", project=p, run=run, me=me)


@get("/projects/{project:str}/sync/runs/{run_id:int}/file", dependencies=_portal, include_in_schema=False)
async def portal_run_file(request: Request, me: User, project: str, run_id: int) -> Response:
    return await _export_file(request, me, project, run_id)


@post("/projects/{project:str}/export", dependencies=_portal, include_in_schema=False)
async def portal_export(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, PERMISSION)
    form = await request.form()
    fmt = form.get("format", "") if form.get("format", "") in export_mod.FORMATS else ""
    run = await runs.create(p, "export", trigger="portal", user=me, fmt=fmt,
                            options={k: bool(form.get(k)) for k in DEID_OPTIONS})
    _enqueue(run)
    return _run_partial(p, run, me)


@post("/projects/{project:str}/import", dependencies=_portal, include_in_schema=False, request_max_body_size=MAX_BODY)
async def portal_import(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, PERMISSION)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    await runs.refuse_if_merging(p)
    path = await _receive_file(request, required=False) if media == "multipart/form-data" else ""
    run = await _create_import(p, "portal", me, path, bool(path))
    _enqueue(run)
    return _run_partial(p, run)


@get("/projects/{project:str}/sync/runs/{run_id:int}", dependencies=_portal, include_in_schema=False)
async def portal_run(me: User, project: str, run_id: int) -> Template:
    p = await permissions.project_for(me, project, PERMISSION)
    return _run_partial(p, await runs.get(p, run_id), me)


@get("/projects/{project:str}/sync", dependencies=_portal, include_in_schema=False)
async def sync_history(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, PERMISSION)
    conf = projects.settings_of(p)
    return await page(request, me, "exchange/history.html", project=p, runs=await runs.history(p),
                      every=conf["sync_every_minutes"], export_file=export_mod.export_file(p)[0],
                      import_file=export_mod.import_file_path(p))


@post("/projects/{project:str}/settings/exchange", dependencies=_portal, include_in_schema=False)
async def exchange_settings(request: Request, me: User, project: str) -> Template | Response:
    p = await permissions.project_for(me, project, "manage_project")
    form = await request.form()
    changes: dict = {}
    try:
        if form.get("export_format") in export_mod.FORMATS:
            changes["export_format"] = form["export_format"]
        if form.get("export_images") in ("store", "copy"):
            changes["export_images"] = form["export_images"]
        for key, low, high in (("export_backups", 1, 1000), ("sync_every_minutes", 0, 7 * 24 * 60)):
            raw = (form.get(key) or "").strip()
            if raw:
                try:
                    value = int(raw)
                except ValueError:
                    raise Invalid(f"{key.replace('_', ' ')} must be a whole number.", "invalid_value") from None
                if not low <= value <= high:
                    raise Invalid(f"{key.replace('_', ' ')} must be between {low} and {high}.", "invalid_value")
                changes[key] = value
        conf = projects.settings_of(p)
        for key in ("export_path", "import_path"):
            value = (form.get(key) or "").strip()
            if value != conf[key]:
                changes[key] = _admin_path(me, value, key) if value else ""
        await projects.update_settings(p, changes, by=me, client=client_of(request))
    except LightboxError as exc:
        flash(request, exc.detail, "error")
        return redirect(request, f"/projects/{p.name}/settings#exchange")
    flash(request, "Import/export settings saved.", "success")
    return redirect(request, f"/projects/{p.name}/settings#exchange")


ROUTES = [api_export, api_import, api_runs, api_run, api_run_file, portal_export, portal_import, portal_run,
          portal_run_file, sync_history, exchange_settings]
