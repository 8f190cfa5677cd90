"""Projects on the API: list, create, show."""

from __future__ import annotations

from typing import TypedDict

from litestar import Request, get, post
from litestar.di import Provide

from portal import clock, projects
from portal.auth import permissions
from portal.auth.permissions import require_admin
from portal.errors import Invalid
from portal.routes._auth import api_user, client_of
from portal.routes import _openapi as doc
from portal.routes._body import json_object
from portal.tables import User

_deps = {"me": Provide(api_user)}


class Member(TypedDict):
    username: str
    role: str


class _Project(TypedDict):
    name: str
    description: str
    created: str | None


class ProjectOut(_Project, total=False):
    """projects.as_dict, and what one project's page adds."""
    archives: list[str]
    role: str | None
    permissions: list[str]
    members: list[Member]


class ArchiveOut(TypedDict):
    name: str
    created_at: str | None


@get("/api/v1/projects", tags=["projects"], dependencies=_deps, summary="Projects the caller may see")
async def list_projects(me: User) -> list[ProjectOut]:
    out = []
    for project in await projects.visible_to(me):
        out.append(projects.as_dict(project, role=await permissions.role_of(me, project)))
    return out


@post("/api/v1/projects", tags=["projects"], dependencies=_deps, status_code=201,
      summary="Create a project (administrators), with its default archive",
      operation_class=doc.documented(body={doc.JSON: doc.obj(("name",), name=doc.STR, description=doc.STR)}))
async def create_project(request: Request, me: User) -> ProjectOut:
    require_admin(me)
    data = await json_object(request, '{"name": "chest-qc"}')
    if not isinstance(data.get("name"), str):
        raise Invalid("'name' is required.", "no_data_submitted", fields={"name": "required"})
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise Invalid("'description' must be text.", "invalid_value", fields={"description": "must be text"})
    project = await projects.create(data["name"], description=description, by=me, client=client_of(request))
    return projects.as_dict(project, archive_names=[projects.DEFAULT_ARCHIVE])


@get("/api/v1/projects/{name:str}", tags=["projects"], dependencies=_deps, summary="One project")
async def get_project(me: User, name: str) -> ProjectOut:
    project = await permissions.project_for(me, name)
    archives = [a.name for a in await projects.archives(project)]
    out = projects.as_dict(project, role=await permissions.role_of(me, project), archive_names=archives)
    out["permissions"] = sorted(await permissions.permissions(me, project))
    if await permissions.may(me, "manage_members", project):
        out["members"] = [{"username": m["username"], "role": m["role"]} for m in await projects.members(project)]
    return out


@get("/api/v1/projects/{name:str}/archives", tags=["projects"], dependencies=_deps, summary="A project's archives")
async def list_archives(me: User, name: str) -> list[ArchiveOut]:
    project = await permissions.project_for(me, name)
    return [{"name": a.name, "created_at": clock.iso(a.created_at)} for a in await projects.archives(project)]


@post("/api/v1/projects/{name:str}/archives", tags=["projects"], dependencies=_deps, status_code=201,
      summary='Create an archive in a project (managers): {"name": "site-b"}',
      operation_class=doc.documented(body={doc.JSON: doc.obj(("name",), name=doc.STR)}))
async def create_archive(request: Request, me: User, name: str) -> ArchiveOut:
    project = await permissions.project_for(me, name, "manage_project")
    data = await json_object(request, '{"name": "site-b"}')
    if not isinstance(data.get("name"), str):
        raise Invalid("'name' is required.", "no_data_submitted", fields={"name": "required"})
    archive = await projects.create_archive(project, data["name"], by=me, client=client_of(request))
    return {"name": archive.name, "created_at": clock.iso(archive.created_at)}
