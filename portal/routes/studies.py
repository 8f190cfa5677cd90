"""Portal pages of one study and one series, and the images they show (files, thumbnails, renders)."""

from __future__ import annotations

import asyncio
import hashlib

from litestar import Request, get
from litestar.di import Provide
from litestar.response import Response, Template

from portal.routes._files import stored_file
from portal import archive as arch, audit, settings as settings_mod
from portal.archive import download, navigation, volumes
from portal.auth import permissions
from portal.db import row_of, together
from portal.dicom import render_frame, thumbnail
from portal.dicom.tags import tag_rows
from portal.errors import Invalid
from portal.routes._auth import client_of, portal_user
from portal.review import flags
from portal.routes import network, review
from portal.routes._render import page, partial
from portal.tables import Patient, Series, Study, User

_deps = {"me": Provide(portal_user)}
_IMAGE_CACHE = "private, max-age=3600"


@get("/projects/{project:str}/studies/{study_uid:str}", dependencies=_deps, include_in_schema=False)
async def study_page(request: Request, me: User, project: str, study_uid: str) -> Template:
    p = await permissions.project_for(me, project)
    study = await arch.find_study(p, study_uid)
    patient = await row_of(Patient, "id = {}", study.patient)
    series = await arch.series_of_study(study)
    counts = await arch.count_instances([s.id for s in series])
    return await page(request, me, "studies/study.html", project=p, study=study, patient=patient,
                      series=series, counts=counts, flagged=await flags.flagged_ids([s.id for s in series]),
                      volume_notes=await volumes.notes_of_study(study.id),
                      perms=await permissions.permissions(me, p), deidentified=download.deidentified(p),
                      **await network.send_context(me, p))


@get("/projects/{project:str}/series/{series_uid:str}", dependencies=_deps, include_in_schema=False)
async def series_page(request: Request, me: User, project: str, series_uid: str) -> Template:
    p = await permissions.project_for(me, project)
    series = await arch.find_series(p, series_uid)
    client = client_of(request)
    # The page's reads do not depend on one another: on PostgreSQL they run at once (db.together), so the page
    # waits for the slowest, not for the sum of a dozen round trips.
    ((study, patient, siblings), instances, (prev_uid, next_uid, next_instances), volume_sources, perms, panel,
     claim, send, _) = await together(
        _study_of(series), arch.instances_of(series), _walk(p, series_uid), volumes.sources_of_series(series.id),
        permissions.permissions(me, p), review.panel_context(me, p, series),
        review.claim_context(me, p, series, claim_now="queue" in request.query_params, client=client),
        network.send_context(me, p),
        audit.record("series_viewed", user=me, object=f"project:{p.name}/series:{series_uid}", client=client))
    return await page(request, me, "studies/series.html", project=p, study=study, patient=patient, series=series,
                      instances=instances, prev_uid=prev_uid, next_uid=next_uid, siblings=siblings,
                      volume_sources=volume_sources, viewer_instances=_viewer_instances(p.name, instances),
                      prefetch_instances=_viewer_instances(p.name, next_instances),
                      perms=perms, deidentified=download.deidentified(p), **panel, **claim, **send)


async def _study_of(series: Series) -> tuple[Study, Patient, list[Series]]:
    """The series' study, its patient, and the study's series (the thumbnail strip under the viewer)."""
    study = await row_of(Study, "id = {}", series.study)
    patient, siblings = await together(row_of(Patient, "id = {}", study.patient), arch.series_of_study(study))
    return study, patient, siblings


async def _walk(project, series_uid: str) -> tuple[str | None, str | None, list]:
    """The series before and after this one, and the next one's instances: the viewer prefetches them so that
    ↓ shows the next series at once."""
    prev_uid, next_uid = await navigation.neighbours(project, series_uid)
    next_instances = await arch.instances_of(await arch.find_series(project, next_uid)) if next_uid else []
    return prev_uid, next_uid, next_instances


def _viewer_instances(project: str, instances) -> list[dict]:
    """What the viewer loads: each instance's file URL and its frame count."""
    return [{"url": f"/projects/{project}/instances/{i.sop_instance_uid}/file", "frames": max(i.frames, 1)}
            for i in instances]


@get("/projects/{project:str}/instances/{sop_uid:str}/file", dependencies=_deps, include_in_schema=False)
async def instance_file(request: Request, me: User, project: str, sop_uid: str) -> Response:
    """The stored Part-10 file, as the viewer's loader fetches it (wadouri)."""
    p = await permissions.project_for(me, project, "api_dicom_get")
    instance = await arch.find_instance(p, sop_uid)
    return await stored_file(request, arch.storage(), instance.file_key, media_type="application/dicom",
                             filename=f"{sop_uid}.dcm", inline=True, headers={"Cache-Control": _IMAGE_CACHE})


@get("/projects/{project:str}/instances/{sop_uid:str}/rendered", dependencies=_deps, include_in_schema=False)
async def instance_rendered(request: Request, me: User, project: str, sop_uid: str, frame: int = 1,
                            size: int | None = None, auto: bool = False) -> Response:
    p = await permissions.project_for(me, project)
    instance = await arch.find_instance(p, sop_uid)
    if frame < 1 or frame > max(instance.frames, 1) or (size is not None and not 16 <= size <= 4096):
        raise Invalid("frame must be within the instance's frames and size between 16 and 4096.", "bad_parameter")
    png = await asyncio.to_thread(_render, arch.storage(), instance.file_key, frame - 1, size, auto)
    return Response(png, media_type="image/png", headers={"Cache-Control": _IMAGE_CACHE})


def _render(store, key: str, frame: int, size: int | None, auto: bool) -> bytes:
    with store.local_copy(key) as path:
        return render_frame(path, frame, size=size, auto_window=auto)


def _thumbnail(store, key: str, size: int) -> bytes:
    with store.local_copy(key) as path:
        return thumbnail(path, size)


def _tag_rows(store, key: str) -> list[dict]:
    with store.open(key) as f:
        return tag_rows(f)


@get("/projects/{project:str}/series/{series_uid:str}/thumbnail", dependencies=_deps, include_in_schema=False)
async def series_thumbnail(request: Request, me: User, project: str, series_uid: str) -> Response:
    """The middle image of the series, small; rendered once and cached on disk until the series changes."""
    p = await permissions.project_for(me, project)
    series = await arch.find_series(p, series_uid)
    instances = await arch.instances_of(series)
    if not instances:
        raise Invalid("The series has no images.", "no_dicom_available")
    middle = instances[len(instances) // 2]
    stamp = hashlib.sha1(f"{middle.file_key}:{len(instances)}".encode()).hexdigest()
    cache = settings_mod.current().data_dir / "cache" / "thumbnails" / stamp[:2] / f"{stamp}.png"
    if not cache.exists():
        png = await asyncio.to_thread(_thumbnail, arch.storage(), middle.file_key, 160)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(cache)
    return Response(cache.read_bytes(), media_type="image/png", headers={"Cache-Control": _IMAGE_CACHE})


@get("/projects/{project:str}/instances/{sop_uid:str}/tags", dependencies=_deps, include_in_schema=False)
async def instance_tags(request: Request, me: User, project: str, sop_uid: str) -> Template:
    """The tag browser's table: every header element of one instance (pixel data left out)."""
    p = await permissions.project_for(me, project, "api_dicom_get")
    instance = await arch.find_instance(p, sop_uid)
    rows = await asyncio.to_thread(_tag_rows, arch.storage(), instance.file_key)
    return partial("studies/_tags.html", rows=rows, sop_uid=sop_uid)


ROUTES = [study_page, series_page, instance_file, instance_rendered, series_thumbnail, instance_tags]
