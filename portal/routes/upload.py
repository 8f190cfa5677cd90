"""Browser upload ("Upload scans"): a page with a drop zone, and the endpoint its script posts batches to."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import Template

from portal import audit, projects
from portal.auth import permissions
from portal.routes._auth import client_of, portal_user
from portal.routes._render import page, partial
from portal.routes._uploads import MAX_UPLOAD_BYTES, fields_of, ingest_parts, receive_parts, upload_dir
from portal.tables import User

_deps = {"me": Provide(portal_user)}


@get("/projects/{project:str}/upload", dependencies=_deps, include_in_schema=False)
async def upload_page(request: Request, me: User, project: str) -> Template:
    p = await permissions.project_for(me, project, "upload_project")
    return await page(request, me, "upload/page.html", project=p, archives=await projects.archives(p))


@post("/projects/{project:str}/upload", dependencies=_deps, include_in_schema=False,
      request_max_body_size=MAX_UPLOAD_BYTES)
async def upload_batch(request: Request, me: User, project: str) -> Template:
    """One batch of files from the page's script; answers the rows of the results table."""
    p = await permissions.project_for(me, project, "upload_project")
    async with upload_dir() as tmp:
        parts = await receive_parts(request, tmp, allowed=("multipart/form-data",))
        archive = await projects.archive(p, fields_of(parts).get("archive"))
        results = await ingest_parts(parts, p, archive)
    await audit.record("upload", user=me, object=f"project:{p.name}/archive:{archive.name}",
                       detail={s: sum(r.status == s for r in results)
                               for s in ("stored", "already_stored", "conflict", "rejected")},
                       client=client_of(request))
    return partial("upload/_rows.html", results=results, project=p)
