"""DICOMweb at /dicomweb/{project}/: STOW-RS, QIDO-RS and WADO-RS over one project's archive."""

from __future__ import annotations

import asyncio

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.response import Response, Stream

from portal import settings as settings_mod
from portal.archive.ingest import record_audit, upload_audit
from portal.auth.permissions import project_for
from portal.dicomweb import Links, body, content_type, new_boundary, parse_accept, qido, stow, wado
from portal.dicomweb.accept import Offer, choose
from portal.dicomweb.multipart import abody
from portal.routes import _openapi as doc
from portal.routes._auth import api_user, client_of
from portal.routes._dicomweb_auth import dicomweb_user
from portal.routes._uploads import MAX_UPLOAD_BYTES, receive_parts, upload_dir
from portal.tables import Project, User

DICOM_JSON = "application/dicom+json"
_STUDY = "/studies/{study:str}"
_SERIES = _STUDY + "/series/{series:str}"
_INSTANCE = _SERIES + "/instances/{instance:str}"

# What each kind of DICOMweb answer is in the OpenAPI document (DICOM JSON, or plain JSON when Accept asks for it).
_DATASETS = doc.array(doc.DATASET)
STOW = doc.documented(body={doc.DICOM_PARTS: doc.BINARY}, body_description="DICOM instances, one a part",
                      answers={s: {DICOM_JSON: doc.DATASET, doc.JSON: doc.DATASET} for s in (200, 202, 409)})
QIDO = doc.documented(query={
    "limit": "The most matches to return", "offset": "Matches to skip", "includefield": "Attributes to add, or 'all'",
    "fuzzymatching": "true: person names match by word beginnings"},
    answers={200: {DICOM_JSON: _DATASETS, doc.JSON: _DATASETS}})
METADATA = doc.documented(answers={200: {DICOM_JSON: _DATASETS, doc.JSON: _DATASETS}})
INSTANCES = doc.documented(answers={200: {doc.DICOM_PARTS: doc.BINARY}})
PARTS = doc.documented(answers={200: {"multipart/related": doc.BINARY}})
RENDERED = doc.documented(query={"window": "center,width", "viewport": "columns,rows"},
                          answers={200: {"image/png": doc.BINARY, "image/jpeg": doc.BINARY}})


def _links(request: Request, project: Project) -> Links:
    # Behind a proxy (or for clients that drop the port from Host) the configured public address is right.
    conf = settings_mod.current()
    base = conf.base_url if conf.base_url_set else str(request.base_url).rstrip("/")
    return Links(f"{base}/dicomweb/{project.name}")


def _json_type(request: Request) -> str:
    return choose(parse_accept(request.headers.get("accept")), [Offer(DICOM_JSON), Offer("application/json")],
                  "DICOM JSON").media_type


def _json(request: Request, content, *, status: int = 200, warnings: list[str] | None = None,
          media_type: str | None = None) -> Response:
    # application/dicom+json exactly (no charset): dicomweb-client compares the header as a string.
    headers = {"Warning": ", ".join(f'299 lightbox "{w}"' for w in warnings)} if warnings else None
    return Response(content, media_type=media_type or _json_type(request), status_code=status, headers=headers)


def _multipart(media_type: str, parts) -> Stream:
    boundary = new_boundary()
    return Stream(body(parts, boundary), media_type=content_type(media_type, boundary))


async def _store(request: Request, me: User, name: str, study: str | None) -> Response:
    project = await project_for(me, name, "upload_project")
    stow.check_content_type(request.headers.get("content-type", ""))
    answer_type = _json_type(request)  # a 406 must come before anything is stored
    async with upload_dir() as tmp:
        parts = await receive_parts(request, tmp, allowed=("multipart/related",))
        files = [(p.source, p.filename) for p in parts if p.is_file]
        result = await stow.store(files, project, _links(request, project), study, audit=upload_audit(
            me, f"project:{project.name}", {"via": "stow-rs", "files": len(files)}, client_of(request)))
    return _json(request, result.as_dicom_json(), status=result.status, media_type=answer_type)


async def _search(request: Request, me: User, name: str, level: str, study: str | None = None,
                  series: str | None = None) -> Response:
    project = await project_for(me, name, "view_project")
    result = await qido.search(project, level, request.query_params.multi_items(), _links(request, project),
                               study_uid=study, series_uid=series)
    return _json(request, result.matches, warnings=result.warnings)


async def _stored(me: User, name: str, study: str, series: str | None = None, instance: str | None = None):
    project = await project_for(me, name, "api_dicom_get")
    return project, await wado.stored_instances(project, study, series, instance)


async def _retrieve(request: Request, me: User, name: str, study: str, series: str | None = None,
                    instance: str | None = None) -> Stream:
    project, items = await _stored(me, name, study, series, instance)
    accepted = parse_accept(request.headers.get("accept"))
    target = "/".join(f"{k}:{v}" for k, v in (("study", study), ("series", series), ("instance", instance)) if v)
    parts = wado.instance_parts(items, accepted, _links(request, project))
    # Through the ingest writer: under many clients the download rows share transactions.
    await record_audit(project, upload_audit(me, f"project:{project.name}/{target}",
                                             {"via": "wado-rs", "instances": len(items)}, client_of(request),
                                             action="download"))
    boundary = new_boundary()
    return Stream(abody(parts, boundary), media_type=content_type(wado.DICOM, boundary))


async def _metadata(request: Request, me: User, name: str, study: str, series: str | None = None,
                    instance: str | None = None) -> Response:
    project, items = await _stored(me, name, study, series, instance)
    return _json(request, await wado.metadata(items, _links(request, project)))


async def _rendered(request: Request, me: User, name: str, study: str, series: str, instance: str,
                    frame: int) -> Response:
    _, (item,) = await _stored(me, name, study, series, instance)
    data, media = await asyncio.to_thread(
        wado.rendered, item, frame, parse_accept(request.headers.get("accept")),
        window=request.query_params.get("window"), viewport=request.query_params.get("viewport"))
    return Response(data, media_type=media)


class DicomWeb(Controller):
    """One project's DICOMweb root. Reads need view access; STOW needs upload rights."""

    path = "/dicomweb/{project:str}"
    dependencies = {"me": Provide(dicomweb_user)}
    tags = ["dicomweb"]

    # STOW-RS

    @post("/studies", status_code=200, request_max_body_size=MAX_UPLOAD_BYTES,
          summary='Store instances (multipart/related; type="application/dicom")', operation_class=STOW)
    async def store(self, request: Request, me: User, project: str) -> Response:
        return await _store(request, me, project, None)

    @post(_STUDY, status_code=200, request_max_body_size=MAX_UPLOAD_BYTES,
          summary="Store instances of one study; instances of other studies are refused", operation_class=STOW)
    async def store_in_study(self, request: Request, me: User, project: str, study: str) -> Response:
        return await _store(request, me, project, study)

    # QIDO-RS

    @get("/studies", summary="Search for studies", operation_class=QIDO)
    async def search_studies(self, request: Request, me: User, project: str) -> Response:
        return await _search(request, me, project, qido.STUDY)

    @get("/series", summary="Search for series", operation_class=QIDO)
    async def search_series(self, request: Request, me: User, project: str) -> Response:
        return await _search(request, me, project, qido.SERIES)

    @get("/instances", summary="Search for instances", operation_class=QIDO)
    async def search_instances(self, request: Request, me: User, project: str) -> Response:
        return await _search(request, me, project, qido.INSTANCE)

    @get(_STUDY + "/series", summary="Search for series of a study", operation_class=QIDO)
    async def search_study_series(self, request: Request, me: User, project: str, study: str) -> Response:
        return await _search(request, me, project, qido.SERIES, study)

    @get(_STUDY + "/instances", summary="Search for instances of a study", operation_class=QIDO)
    async def search_study_instances(self, request: Request, me: User, project: str, study: str) -> Response:
        return await _search(request, me, project, qido.INSTANCE, study)

    @get(_SERIES + "/instances", summary="Search for instances of a series", operation_class=QIDO)
    async def search_series_instances(self, request: Request, me: User, project: str, study: str,
                                      series: str) -> Response:
        return await _search(request, me, project, qido.INSTANCE, study, series)

    # WADO-RS

    @get(_STUDY, summary="Retrieve a study's instances (multipart/related, as stored)", operation_class=INSTANCES)
    async def retrieve_study(self, request: Request, me: User, project: str, study: str) -> Stream:
        return await _retrieve(request, me, project, study)

    @get(_SERIES, summary="Retrieve a series' instances (multipart/related, as stored)", operation_class=INSTANCES)
    async def retrieve_series(self, request: Request, me: User, project: str, study: str, series: str) -> Stream:
        return await _retrieve(request, me, project, study, series)

    @get(_INSTANCE, summary="Retrieve an instance (multipart/related, as stored)", operation_class=INSTANCES)
    async def retrieve_instance(self, request: Request, me: User, project: str, study: str, series: str,
                                instance: str) -> Stream:
        return await _retrieve(request, me, project, study, series, instance)

    @get(_STUDY + "/metadata", summary="Metadata of a study's instances (DICOM JSON)", operation_class=METADATA)
    async def study_metadata(self, request: Request, me: User, project: str, study: str) -> Response:
        return await _metadata(request, me, project, study)

    @get(_SERIES + "/metadata", summary="Metadata of a series' instances (DICOM JSON)", operation_class=METADATA)
    async def series_metadata(self, request: Request, me: User, project: str, study: str, series: str) -> Response:
        return await _metadata(request, me, project, study, series)

    @get(_INSTANCE + "/metadata", summary="Metadata of an instance (DICOM JSON)", operation_class=METADATA)
    async def instance_metadata(self, request: Request, me: User, project: str, study: str, series: str,
                                instance: str) -> Response:
        return await _metadata(request, me, project, study, series, instance)

    @get(_INSTANCE + "/frames/{frames:str}", summary="Frames (1-based, comma-separated), as stored or decoded",
          operation_class=PARTS)
    async def frames(self, request: Request, me: User, project: str, study: str, series: str, instance: str,
                     frames: str) -> Stream:
        numbers = wado.frame_numbers(frames)
        _, (item,) = await _stored(me, project, study, series, instance)
        media, parts = await asyncio.to_thread(wado.frames, item, numbers,
                                               parse_accept(request.headers.get("accept")))
        return _multipart(media, parts)

    @get(_INSTANCE + "/bulkdata/{tag:str}", summary="A bulk data value named by a BulkDataURI", operation_class=PARTS)
    async def bulkdata(self, request: Request, me: User, project: str, study: str, series: str, instance: str,
                       tag: str) -> Stream:
        _, (item,) = await _stored(me, project, study, series, instance)
        media, parts = await asyncio.to_thread(wado.bulkdata, item, tag, parse_accept(request.headers.get("accept")))
        return _multipart(media, parts)

    @get(_INSTANCE + "/rendered", summary="The first frame rendered as PNG or JPEG (window, viewport)",
          operation_class=RENDERED)
    async def rendered(self, request: Request, me: User, project: str, study: str, series: str,
                       instance: str) -> Response:
        return await _rendered(request, me, project, study, series, instance, 1)

    @get(_INSTANCE + "/frames/{frames:str}/rendered", summary="One frame rendered as PNG or JPEG (window, viewport)",
          operation_class=RENDERED)
    async def frame_rendered(self, request: Request, me: User, project: str, study: str, series: str,
                             instance: str, frames: str) -> Response:
        return await _rendered(request, me, project, study, series, instance, wado.frame_number(frames))


ROUTES = [DicomWeb]
