"""Images beside DICOMweb's core: study and series `/rendered`, `/thumbnail` at every level, and WADO-URI
(`/wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…`, used by older viewers and links).

Same authentication as DICOMweb (token, HTTP Basic, or the portal session for reads).
"""

from __future__ import annotations

import asyncio

from litestar import Controller, Request, get
from litestar.di import Provide
from litestar.response import File, Response, Stream
from pydicom.uid import ExplicitVRLittleEndian

from portal.archive import storage
from portal.routes._files import stored_file
from portal import audit
from portal.auth import permissions
from portal.dicom.transcode import to_explicit_little_endian
from portal.dicomweb import body, content_type, new_boundary, parse_accept, wado
from portal.dicomweb.accept import Offer, choose, not_acceptable
from portal.dicomweb.multipart import Part
from portal.errors import Invalid, NotFound
from portal.projects import visible_to
from portal.routes import _openapi as doc
from portal.routes._auth import client_of
from portal.routes.dicomweb import PARTS
from portal.routes._dicomweb_auth import dicomweb_user
from portal.tables import Instance, User

_STUDY = "/studies/{study:str}"
_SERIES = _STUDY + "/series/{series:str}"
_INSTANCE = _SERIES + "/instances/{instance:str}"
THUMBNAIL = "128,128"  # the viewport of a thumbnail unless the client names one
_IMAGE = {"image/png": doc.BINARY, "image/jpeg": doc.BINARY}
THUMB = doc.documented(query={"viewport": f"columns,rows (default {THUMBNAIL})"}, answers={200: _IMAGE})


def _rendered_parts(items: list[wado.Stored], request: Request) -> Stream:
    """One rendered image (the first frame) of each instance, as multipart/related."""
    accepted = parse_accept(request.headers.get("accept"))
    window, viewport = request.query_params.get("window"), request.query_params.get("viewport")
    media = choose(accepted, wado.RENDERED_OFFERS, "a rendered image").media_type
    renderable = [i for i in items if i.frames]
    if not renderable:
        raise NotFound("Nothing here has pixel data to render.", "no_pixel_data")

    def parts():  # each image is rendered only when it is sent (in a worker thread)
        for i in renderable:
            data, _ = wado.rendered(i, 1, accepted, window=window, viewport=viewport)
            yield Part(media, data)

    boundary = new_boundary()
    return Stream(body(parts(), boundary), media_type=content_type(media, boundary))


async def _thumbnail(request: Request, items: list[wado.Stored], frame: int | None = None) -> Response:
    pictures = [i for i in items if i.frames]
    if not pictures:
        raise NotFound("Nothing here has pixel data for a thumbnail.", "no_pixel_data")
    item = pictures[len(pictures) // 2]  # the middle image, as the portal's series cards show
    number = frame if frame is not None else (item.frames // 2 + 1 if item.frames > 1 else 1)
    data, media = await asyncio.to_thread(
        wado.rendered, item, number, parse_accept(request.headers.get("accept")),
        viewport=request.query_params.get("viewport") or THUMBNAIL)
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


class DicomWebImages(Controller):
    path = "/dicomweb/{project:str}"
    dependencies = {"me": Provide(dicomweb_user)}
    tags = ["dicomweb"]

    async def _items(self, me: User, name: str, study: str, series: str | None = None, instance: str | None = None):
        project = await permissions.project_for(me, name, "api_dicom_get")
        return await wado.stored_instances(project, study, series, instance)

    @get(_STUDY + "/rendered", summary="Every instance of a study rendered (first frame), multipart/related",
         operation_class=PARTS)
    async def study_rendered(self, request: Request, me: User, project: str, study: str) -> Stream:
        return _rendered_parts(await self._items(me, project, study), request)

    @get(_SERIES + "/rendered", summary="Every instance of a series rendered (first frame), multipart/related",
         operation_class=PARTS)
    async def series_rendered(self, request: Request, me: User, project: str, study: str, series: str) -> Stream:
        return _rendered_parts(await self._items(me, project, study, series), request)

    @get(_STUDY + "/thumbnail", summary="A small image standing for the study", operation_class=THUMB)
    async def study_thumbnail(self, request: Request, me: User, project: str, study: str) -> Response:
        items = await self._items(me, project, study)
        first_series = [i for i in items if i.series_uid == items[0].series_uid] if items else []
        return await _thumbnail(request, first_series)

    @get(_SERIES + "/thumbnail", summary="A small image standing for the series (its middle image)",
         operation_class=THUMB)
    async def series_thumbnail(self, request: Request, me: User, project: str, study: str, series: str) -> Response:
        return await _thumbnail(request, await self._items(me, project, study, series))

    @get(_INSTANCE + "/thumbnail", summary="A small image of the instance", operation_class=THUMB)
    async def instance_thumbnail(self, request: Request, me: User, project: str, study: str, series: str,
                                 instance: str) -> Response:
        return await _thumbnail(request, await self._items(me, project, study, series, instance))

    @get(_INSTANCE + "/frames/{frames:str}/thumbnail", summary="A small image of one frame", operation_class=THUMB)
    async def frame_thumbnail(self, request: Request, me: User, project: str, study: str, series: str,
                              instance: str, frames: str) -> Response:
        return await _thumbnail(request, await self._items(me, project, study, series, instance),
                                wado.frame_number(frames))


# --- WADO-URI (PS3.18 chapter 9) -------------------------------------------------------------------------


async def _find_for_wado(me: User, study: str, series: str, sop: str, project_name: str | None) -> tuple:
    """(project, stored instance) among the projects the caller can see (or the one named)."""
    projects = ([await permissions.project_for(me, project_name, "api_dicom_get")] if project_name
                else [p for p in await visible_to(me) if await permissions.may(me, "api_dicom_get", p)])
    ids = [p.id for p in projects]
    row = await Instance.select(Instance.project).where(
        Instance.sop_instance_uid == sop, Instance.project.is_in(ids or [0]),
        Instance.series.series_instance_uid == series,
        Instance.series.study.study_instance_uid == study).first()
    if row is None:
        raise NotFound(f"No instance {sop} in series {series} of study {study} that you can read.",
                       "instance_not_found")
    project = next(p for p in projects if p.id == row["project"])
    (item,) = await wado.stored_instances(project, study, series, sop)
    return project, item


@get("/wado", dependencies={"me": Provide(dicomweb_user)}, tags=["dicomweb"],
     summary="WADO-URI: requestType=WADO&studyUID&seriesUID&objectUID[&contentType][&frameNumber][&transferSyntax]"
             "[&rows][&columns][&windowCenter&windowWidth][&project]",
     operation_class=doc.documented(
         query={"requestType": "WADO", "studyUID": "StudyInstanceUID", "seriesUID": "SeriesInstanceUID",
                "objectUID": "SOPInstanceUID", "contentType": "application/dicom, image/jpeg (default) or image/png",
                "frameNumber": "1-based", "transferSyntax": "for application/dicom: as stored, or Explicit VR "
                "Little Endian", "rows": "height in pixels", "columns": "width in pixels",
                "windowCenter": "with windowWidth", "windowWidth": "with windowCenter",
                "project": "the project (default: any you can read)"},
         required=("requestType", "studyUID", "seriesUID", "objectUID"),
         answers={200: {"application/dicom": doc.BINARY, **_IMAGE}}))
async def wado_uri(request: Request, me: User) -> Response:
    q = request.query_params
    if q.get("requestType") != "WADO":
        raise Invalid("requestType must be WADO.", "invalid_request_type")
    missing = [k for k in ("studyUID", "seriesUID", "objectUID") if not q.get(k)]
    if missing:
        raise Invalid(f"WADO-URI needs {', '.join(missing)}.", "no_data_submitted")
    project, item = await _find_for_wado(me, q["studyUID"], q["seriesUID"], q["objectUID"], q.get("project"))
    # The first of contentType's comma-separated types we can make; image/jpeg is the standard default.
    wanted = [t.split(";")[0].strip() for t in (q.get("contentType") or "image/jpeg").split(",") if t.strip()]
    kind = next((t for t in wanted if t in ("application/dicom", "image/jpeg", "image/png", "image/*", "*/*")), None)
    if kind is None:
        raise not_acceptable([Offer("application/dicom"), *wado.RENDERED_OFFERS], "this object")
    await audit.record("download", user=me, object=f"project:{project.name}/instance:{item.sop_uid}",
                       detail={"via": "wado-uri", "content_type": kind}, client=client_of(request))
    if kind == "application/dicom":
        syntax = q.get("transferSyntax") or ""
        if syntax and syntax != item.transfer_syntax_uid:
            if syntax != ExplicitVRLittleEndian:
                raise not_acceptable([Offer("application/dicom", item.transfer_syntax_uid),
                                           Offer("application/dicom", ExplicitVRLittleEndian)], "this object")
            data = await asyncio.to_thread(_transcoded, item)
            return Response(data, media_type="application/dicom")
        return await stored_file(request, storage(), item.key, media_type="application/dicom",
                                 filename=f"{item.sop_uid}.dcm")
    frame = _int(q.get("frameNumber"), "frameNumber") or 1
    rows, columns = _int(q.get("rows"), "rows"), _int(q.get("columns"), "columns")
    viewport = f"{columns or rows},{rows or columns}" if rows or columns else None
    window = f"{q['windowCenter']},{q['windowWidth']}" if q.get("windowCenter") and q.get("windowWidth") else None
    media = "image/png" if kind == "image/png" else "image/jpeg"
    data, media = await asyncio.to_thread(wado.rendered, item, frame, parse_accept(media), window=window,
                                          viewport=viewport)
    return Response(data, media_type=media)


def _transcoded(item) -> bytes:
    with item.local() as path:
        return to_explicit_little_endian(path)


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) < 1:
        raise Invalid(f"{name} is a whole number from 1, not {value!r}.", "invalid_parameter")
    return int(value)


ROUTES = [DicomWebImages, wado_uri]
