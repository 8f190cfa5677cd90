"""Qure-style upload: POST /api/v1/studies (alias /api/v1/upload), multipart/related or form-data."""

from __future__ import annotations

from collections import Counter
from typing import TypedDict

from litestar import Request, post
from litestar.di import Provide
from litestar.response import Response

from portal import archive as arch, audit, projects
from portal.archive.ingest import upload_audit
from portal.routes import _openapi as doc
from portal.routes._auth import may_upload
from portal.routes._auth import api_user, client_of
from portal.routes._uploads import MAX_UPLOAD_BYTES, fields_of, ingest_parts, receive_parts, upload_dir
from portal.routes.api_v1 import default_project
from portal.tables import Series, User

NO_DICOM = "No DICOM files were uploaded!"


class Failed(TypedDict):
    filename: str
    status: str
    reason: str


class SeriesCount(TypedDict):
    SeriesInstanceUID: str
    NumberOfSeriesRelatedInstances: int


class Uploaded(TypedDict):
    message: str
    series_instance_uids: list[str]
    detailed_info: list[SeriesCount]
    failed: list[Failed]
    counts: dict[str, int]


@post(["/api/v1/studies", "/api/v1/upload"], dependencies={"me": Provide(api_user)}, tags=["qure"],
      status_code=200, request_max_body_size=MAX_UPLOAD_BYTES, guards=[may_upload],
      summary="Upload DICOM files (multipart/related; type=application/dicom, or multipart/form-data)",
      operation_class=doc.documented(
          body={doc.MULTIPART: doc.obj(Project=doc.STR, Archive=doc.STR, others=doc.BINARY),
                doc.DICOM_PARTS: doc.BINARY},
          body_description="DICOM files: parts of multipart/related (type=application/dicom), or files of a "
                           "form (any field name), with Project and Archive as fields or query parameters",
          query=doc.WHERE))
async def upload_studies(request: Request, me: User) -> Response[Uploaded]:
    async with upload_dir() as tmp:
        parts = await receive_parts(request, tmp, allowed=("multipart/related", "multipart/form-data"))
        params = {**fields_of(parts), **dict(request.query_params)}
        project = await default_project(me, params.get("Project"), "upload_project")
        archive = await projects.archive(project, params.get("Archive"))
        results = await ingest_parts(parts, project, archive, audit=lambda n: upload_audit(
            me, f"project:{project.name}/archive:{archive.name}", {"via": "qure", "files": n}, client_of(request)))
    failed = [{"filename": r.filename, "status": r.status, "reason": r.reason} for r in results if not r.ok]
    series_uids = list(dict.fromkeys(r.series_instance_uid for r in results if r.ok))
    if not series_uids:
        return Response({"message": NO_DICOM, "error": "invalid_post_value", "suberror": "no_data_submitted",
                         "detail": "; ".join(f"{f['filename']}: {f['reason']}" for f in failed)
                         or "The request carried no files.", "failed": failed}, status_code=400)
    rows = await Series.select(Series.id, Series.series_instance_uid).where(
        Series.key.is_in([f"{project.id}:{u}" for u in series_uids]))
    counts = await arch.count_instances([r["id"] for r in rows])
    by_uid = {r["series_instance_uid"]: counts.get(r["id"], 0) for r in rows}
    return Response({"message": "Success", "series_instance_uids": series_uids,
                     "detailed_info": [{"SeriesInstanceUID": u, "NumberOfSeriesRelatedInstances": by_uid.get(u, 0)}
                                       for u in series_uids],
                     "failed": failed, "counts": dict(Counter(r.status for r in results))})
