"""DICOM nodes (administrators: API and the admin page with its C-ECHO button) and sending series to them
(the API, the "Send to" form of study and series pages, and the project's send history)."""

from __future__ import annotations

import asyncio
from typing import Literal, TypedDict

from litestar import Request, delete, get, post
from litestar.di import Provide
from litestar.response import Response, Template

from portal.auth import permissions
from portal.auth.permissions import require_admin
from portal.errors import LightboxError
from portal.network import dicomweb_pull, nodes, send
from portal.routes._auth import api_user, client_of, portal_user
from portal.routes import _openapi as doc
from portal.routes._body import json_object
from portal.routes._render import page, partial, redirect, flash
from portal.routes.exchange import Run
from portal.tables import Project, User

_api = {"me": Provide(api_user)}
_portal = {"me": Provide(portal_user)}
# Sending images out of a project is an export: the same permission (managers).
SEND_PERMISSION = "import_export"


def _enqueue(job: dict) -> None:
    from portal.tasks.network import enqueue

    enqueue(job)


class NodeOut(TypedDict):
    """nodes.as_dict: a remote DICOM node (DIMSE address; a DICOMweb root when it has one)."""
    name: str
    ae_title: str
    host: str
    port: int
    dicomweb_url: str | None
    description: str
    created_at: str | None


class Echo(TypedDict):
    ok: bool
    detail: str


class SendJob(TypedDict):
    """send.as_dict: a send of some series to a node, over DIMSE or STOW-RS, and how far it got."""
    id: int
    project: str
    node: str
    via: Literal["dimse", "dicomweb"]
    series: list[str]
    state: Literal["queued", "running", "retrying", "done", "failed"]  # send.QUEUED … send.FAILED
    attempts: int
    total: int
    sent: int
    failed: int
    error: str
    username: str
    queued_at: str
    started_at: str | None
    finished_at: str | None
    status_url: str


class PullStarted(Run):
    status_url: str


# --- nodes: API ----------------------------------------------------------------------------------------


@get("/api/v1/nodes", dependencies=_api, tags=["nodes"], summary="Remote DICOM nodes (administrators)")
async def api_nodes(me: User) -> list[NodeOut]:
    require_admin(me)
    return [nodes.as_dict(n) for n in await nodes.list_nodes()]


@post("/api/v1/nodes", dependencies=_api, tags=["nodes"], status_code=201,
      summary='Register a node: {"name", "ae_title", "host", "port", "dicomweb_url"?} (administrators)',
      operation_class=doc.documented(body={doc.JSON: doc.obj(
          ("name", "ae_title", "host", "port"), name=doc.STR, ae_title=doc.STR, host=doc.STR,
          port={"type": "integer", "minimum": 1, "maximum": 65535}, dicomweb_url=doc.STR, description=doc.STR)}))
async def api_node_create(request: Request, me: User) -> NodeOut:
    require_admin(me)
    data = await json_object(request, '{"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104}')
    node = await nodes.create(str(data.get("name") or ""), ae_title=str(data.get("ae_title") or ""),
                              host=str(data.get("host") or ""), port=data.get("port"),
                              dicomweb_url=str(data.get("dicomweb_url") or ""),
                              description=str(data.get("description") or ""), by=me, client=client_of(request))
    return nodes.as_dict(node)


@get("/api/v1/nodes/{name:str}", dependencies=_api, tags=["nodes"], summary="One node (administrators)")
async def api_node(me: User, name: str) -> NodeOut:
    require_admin(me)
    return nodes.as_dict(await nodes.get(name))


@delete("/api/v1/nodes/{name:str}", dependencies=_api, tags=["nodes"], status_code=204,
        summary="Remove a node (administrators)")
async def api_node_delete(request: Request, me: User, name: str) -> None:
    require_admin(me)
    await nodes.delete(name, by=me, client=client_of(request))


@post("/api/v1/nodes/{name:str}/echo", dependencies=_api, tags=["nodes"], status_code=200,
      summary="C-ECHO the node: {ok, detail} (administrators)")
async def api_node_echo(me: User, name: str) -> Echo:
    require_admin(me)
    node = await nodes.get(name)
    return (await asyncio.to_thread(nodes.echo, node)).as_dict()


# --- nodes: admin page ---------------------------------------------------------------------------------


async def _admin(request: Request) -> User:
    me = await portal_user(request)
    require_admin(me)
    return me


_admin_deps = {"me": Provide(_admin)}


async def _nodes_page(request: Request, me: User, status_code: int = 200, **extra) -> Template:
    return await page(request, me, "admin/nodes.html", status_code=status_code,
                      nodes=[nodes.as_dict(n) for n in await nodes.list_nodes()], **{"form": {}, **extra})


@get("/admin/nodes", dependencies=_admin_deps, include_in_schema=False)
async def nodes_page(request: Request, me: User) -> Template:
    return await _nodes_page(request, me)


@post("/admin/nodes", dependencies=_admin_deps, include_in_schema=False)
async def node_create(request: Request, me: User) -> Template | Response:
    form = dict(await request.form())
    try:
        node = await nodes.create(form.get("name", ""), ae_title=form.get("ae_title", ""), host=form.get("host", ""),
                                  port=form.get("port", ""), dicomweb_url=form.get("dicomweb_url", ""),
                                  description=form.get("description", ""), by=me, client=client_of(request))
    except LightboxError as exc:
        return await _nodes_page(request, me, status_code=exc.status, error=exc.detail, form=form)
    flash(request, f"Node '{node.name}' added.", "success")
    return redirect(request, "/admin/nodes")


@post("/admin/nodes/{name:str}/echo", dependencies=_admin_deps, include_in_schema=False)
async def node_echo(me: User, name: str) -> Template:
    node = await nodes.get(name)
    result = await asyncio.to_thread(nodes.echo, node)
    return partial("admin/_echo.html", result=result, node=node)


@post("/admin/nodes/{name:str}/delete", dependencies=_admin_deps, include_in_schema=False)
async def node_delete(request: Request, me: User, name: str) -> Response:
    await nodes.delete(name, by=me, client=client_of(request))
    flash(request, f"Node '{name}' removed.", "success")
    return redirect(request, "/admin/nodes")


# --- sending: API ----------------------------------------------------------------------------------------


@post("/api/v1/projects/{name:str}/send", dependencies=_api, tags=["projects"], status_code=202,
      summary='Send series to a node: {"node": NAME, "series": [UID, ...]} or {"node": NAME, "study": UID}',
      operation_class=doc.documented(body={doc.JSON: {"oneOf": [
          doc.obj(("node", "series"), node=doc.STR, series=doc.array(doc.STR)),
          doc.obj(("node", "study"), node=doc.STR, study=doc.STR)]}}))
async def api_send(request: Request, me: User, name: str) -> SendJob:
    project = await permissions.project_for(me, name, SEND_PERMISSION)
    data = await json_object(request, '{"node": "pacs", "series": ["1.2.3"]}')
    job = await send.request(project, str(data.get("node") or ""), series=data.get("series"),
                             study=data.get("study") if isinstance(data.get("study"), str) else None,
                             by=me, client=client_of(request))
    _enqueue(job)
    return job


@get("/api/v1/projects/{name:str}/send", dependencies=_api, tags=["projects"], summary="Send jobs, newest first")
async def api_send_history(me: User, name: str) -> list[SendJob]:
    project = await permissions.project_for(me, name, SEND_PERMISSION)
    return await send.history(project)


@get("/api/v1/projects/{name:str}/send/{job_id:int}", dependencies=_api, tags=["projects"],
     summary="One send job: state, attempts, instances sent and failed")
async def api_send_job(me: User, name: str, job_id: int) -> SendJob:
    project = await permissions.project_for(me, name, SEND_PERMISSION)
    return await send.get(project, job_id)


@post("/api/v1/projects/{name:str}/dicomweb-sync", dependencies=_api, tags=["projects"], status_code=202,
      summary="Pull new studies from the project's DICOMweb node now (its dicomweb_sync setting)")
async def api_dicomweb_sync(me: User, name: str) -> PullStarted:
    project = await permissions.project_for(me, name, SEND_PERMISSION)
    run = await dicomweb_pull.create_run(project, trigger="api", user=me)
    from portal.tasks.network import run_pull

    run_pull(run["id"])
    return {**run, "status_url": f"/api/v1/projects/{project.name}/runs/{run['id']}"}


# --- sending: portal ------------------------------------------------------------------------------------


@post("/projects/{project:str}/send", dependencies=_portal, include_in_schema=False)
async def portal_send(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, SEND_PERMISSION)
    form = await request.form()
    series, study = form.getall("series", []) if hasattr(form, "getall") else [], form.get("study") or None
    job = await send.request(p, form.get("node", ""), series=series or None, study=study,
                             by=me, client=client_of(request))
    _enqueue(job)
    return partial("network/_job.html", project=p, job=job)


@get("/projects/{project:str}/send/{job_id:int}", dependencies=_portal, include_in_schema=False)
async def portal_send_job(me: User, project: str, job_id: int) -> Template:
    p = await permissions.project_for(me, project, SEND_PERMISSION)
    return partial("network/_job.html", project=p, job=await send.get(p, job_id))


@get("/projects/{project:str}/send", dependencies=_portal, include_in_schema=False)
async def send_history(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, SEND_PERMISSION)
    return await page(request, me, "network/history.html", project=p, jobs=await send.history(p, 200))


async def send_context(me: User, project: Project) -> dict:
    """What the "Send to" form of a study or series page needs: the nodes, when the user may send."""
    if not await permissions.may(me, SEND_PERMISSION, project):
        return {"send_nodes": []}
    return {"send_nodes": [n.name for n in await nodes.list_nodes()]}


ROUTES = [api_dicomweb_sync, api_nodes, api_node_create, api_node, api_node_delete, api_node_echo, nodes_page, node_create, node_echo,
          node_delete, api_send, api_send_history, api_send_job, portal_send, portal_send_job, send_history]
