"""The CAD4TB-style API v1: /api/v1/<command>/ with Project, Archive and DICOM UIDs as parameters.

Command for command as ../shared/seeds/cad4tb-api-v1.txt names them: paths keep their trailing
slash, errors carry the seed's error and suberror types.
"""

from __future__ import annotations

from typing import Literal, TypedDict
import asyncio

from litestar import Request, get, post
from litestar.di import Provide
from litestar.response import Response, Stream

from portal import archive as arch, audit, projects
from portal.archive.ingest import upload_audit
from portal.auth import permissions
from portal.dicom import stream_zip
from portal.errors import Conflict, Invalid, NotFound
from portal.routes import _openapi as doc
from portal.routes._auth import may_upload
from portal.routes._auth import api_user, client_of
from portal.routes._uploads import MAX_UPLOAD_BYTES, fields_of, ingest_parts, receive_parts, upload_dir
from portal.tables import Archive, Instance, Patient, Project, Series, Study, User
from portal.templates_env import dicom_date, dicom_time  # the API reference's YYYY-MM-DD / HH:MM:SS

_deps = {"me": Provide(api_user)}


async def default_project(me: User, name: str | None, permission: str) -> Project:
    """`Project` as given, or the caller's only project when they have exactly one."""
    if name:
        return await permissions.project_for(me, name, permission)
    visible = await projects.visible_to(me)
    if len(visible) != 1:
        raise Invalid("Pass the 'Project' parameter (you can see "
                      f"{len(visible)} projects, so there is no default).", "no_project_given")
    return await permissions.project_for(me, visible[0].name, permission)


async def _where(me: User, params: dict, permission: str) -> tuple[Project, Archive]:
    project = await default_project(me, params.get("Project"), permission)
    return project, await projects.archive(project, params.get("Archive"))


async def _patient(me: User, params: dict, permission: str) -> tuple[Project, Patient]:
    project, archive = await _where(me, params, permission)
    return project, await arch.find_patient(archive, params.get("PatientID", ""))


async def _study(me: User, params: dict, permission: str, suberror: str = "study_not_found") -> tuple[Project, Study]:
    project, patient = await _patient(me, params, permission)
    try:
        return project, await arch.find_study(project, params.get("StudyInstanceUID", ""), patient)
    except NotFound as exc:
        raise NotFound(exc.detail, suberror)


async def _series(me: User, params: dict, permission: str) -> tuple[Project, Series]:
    project, study = await _study(me, params, permission, "series_not_found")
    return project, await arch.find_series(project, params.get("SeriesInstanceUID", ""), study)


class PatientOut(TypedDict):
    PatientBirthDate: str
    PatientID: str
    PatientName: str
    PatientSex: str


class StudyOut(TypedDict):
    StudyInstanceUID: str
    StudyDate: str
    StudyTime: str
    StudyDescription: str
    ReferringPhysicianName: str
    InstitutionName: str
    AccessionNumber: str


class SeriesOut(TypedDict):
    SeriesInstanceUID: str
    SOPClassUID: str
    SeriesDate: str
    SeriesTime: str
    SeriesDescription: str
    Manufacturer: str
    ManufacturerModelName: str
    Modality: str
    NumberOfSeriesRelatedInstances: int
    status: Literal["stored", "empty"]
    status_message: str


class _Stored(TypedDict):
    PatientID: str
    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str
    status: str


class Stored(_Stored, total=False):
    """One uploaded instance: stored now or already (same bytes), and where when it is in another archive."""
    Archive: str
    detail: str


class Done(TypedDict):
    status: Literal["Ok"]


def patient_dict(p: Patient) -> PatientOut:
    return {"PatientBirthDate": dicom_date(p.birth_date), "PatientID": p.patient_id, "PatientName": p.patient_name,
            "PatientSex": p.sex}


def study_dict(s: Study) -> StudyOut:
    return {"StudyInstanceUID": s.study_instance_uid, "StudyDate": dicom_date(s.study_date),
            "StudyTime": dicom_time(s.study_time), "StudyDescription": s.description,
            "ReferringPhysicianName": s.referring_physician, "InstitutionName": s.institution,
            "AccessionNumber": s.accession_number}


def series_dict(s: Series, instances: int) -> SeriesOut:
    return {"SeriesInstanceUID": s.series_instance_uid, "SOPClassUID": s.sop_class_uid,
            "SeriesDate": dicom_date(s.series_date), "SeriesTime": dicom_time(s.series_time),
            "SeriesDescription": s.description, "Manufacturer": s.manufacturer,
            "ManufacturerModelName": s.model_name, "Modality": s.modality,
            "NumberOfSeriesRelatedInstances": instances,
            "status": "stored" if instances else "empty",
            "status_message": f"{instances} instance(s) stored; review status: {s.review_status}"}


@post("/api/v1/instance/upload/", dependencies=_deps, tags=["cad4tb-v1"], status_code=200, guards=[may_upload],
      request_max_body_size=MAX_UPLOAD_BYTES, summary="Upload DICOM file(s) (multipart form field 'file')",
      operation_class=doc.documented(
          body={doc.MULTIPART: doc.obj(("file",), file=doc.BINARY, Project=doc.STR, Archive=doc.STR)},
          query=doc.WHERE))
async def instance_upload(request: Request, me: User) -> Response[Stored | list[Stored]]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        # As the reference answers a POST without a file (seeds/cad4tb-api-v1.txt), whatever its body type.
        raise Invalid("No file was submitted: send the DICOM file as multipart/form-data in the form field 'file'.",
                      "no_data_submitted")
    async with upload_dir() as tmp:
        parts = await receive_parts(request, tmp, allowed=("multipart/form-data",))
        params = {**dict(request.query_params), **fields_of(parts)}
        # One permission look-up: every role granting api_instance_upload grants upload_project too.
        project, archive = await _where(me, params, "api_instance_upload")
        if not any(p.is_file and p.size for p in parts):
            raise Invalid("No file was submitted: send the DICOM file in the form field 'file'.",
                          "no_data_submitted")
        # The audit row is committed with the instances (one transaction for the request's rows).
        results = await ingest_parts(parts, project, archive, audit=lambda n: upload_audit(
            me, f"project:{project.name}/archive:{archive.name}", {"via": "api_v1", "files": n}, client_of(request)))
    for r in results:
        if r.status == "rejected":
            raise Invalid(f"{r.filename}: {r.reason}", r.suberror or "invalid_file")
        if r.status == "conflict":
            raise Conflict(r.reason, "conflict")
    out = [{"PatientID": r.patient_id, "StudyInstanceUID": r.study_instance_uid,
            "SeriesInstanceUID": r.series_instance_uid, "SOPInstanceUID": r.sop_instance_uid,
            "status": r.status, **await _where_stored(project, archive, r)} for r in results]
    return Response(out[0] if len(out) == 1 else out)


async def _where_stored(project, archive, result) -> dict:
    """For an instance already stored in another archive of the project: where it is, and why it stays there
    (an instance lives in one archive of a project; its patient is found in that one)."""
    if result.status != "already_stored":
        return {}
    row = await Instance.select(Instance.series.study.patient.archive.name.as_alias("archive")).where(
        Instance.project == project.id, Instance.sop_instance_uid == result.sop_instance_uid).first()
    if row is None or row["archive"] == archive.name:
        return {}
    return {"Archive": row["archive"],
            "detail": f"Already stored in archive '{row['archive']}' of project '{project.name}'; an instance is "
                      f"kept in one archive of a project, so it was not added to '{archive.name}'. Look for its "
                      f"patient in '{row['archive']}'."}


@get("/api/v1/patient/get/", dependencies=_deps, tags=["cad4tb-v1"], operation_class=doc.documented(query=doc.PATIENT))
async def patient_get(request: Request, me: User) -> PatientOut:
    _, patient = await _patient(me, dict(request.query_params), "api_get_patient")
    return patient_dict(patient)


@get("/api/v1/patient/delete/", dependencies=_deps, tags=["cad4tb-v1"],
     operation_class=doc.documented(query=doc.PATIENT))
async def patient_delete(request: Request, me: User) -> Done:
    project, patient = await _patient(me, dict(request.query_params), "api_delete_patient")
    await arch.delete_patient(patient)
    await audit.record("patient_deleted", user=me, object=f"project:{project.name}/patient:{patient.patient_id}",
                       client=client_of(request))
    return {"status": "Ok"}


@get("/api/v1/study/get/", dependencies=_deps, tags=["cad4tb-v1"], operation_class=doc.documented(query=doc.STUDY))
async def study_get(request: Request, me: User) -> StudyOut:
    _, study = await _study(me, dict(request.query_params), "api_get_study")
    return study_dict(study)


@get("/api/v1/patient/studies/list/", dependencies=_deps, tags=["cad4tb-v1"],
     operation_class=doc.documented(query=doc.PATIENT))
async def studies_list(request: Request, me: User) -> list[StudyOut]:
    _, patient = await _patient(me, dict(request.query_params), "api_list_studies")
    return [study_dict(s) for s in await arch.studies_of_patient(patient)]


@get("/api/v1/study/delete/", dependencies=_deps, tags=["cad4tb-v1"], operation_class=doc.documented(query=doc.STUDY))
async def study_delete(request: Request, me: User) -> Done:
    project, study = await _study(me, dict(request.query_params), "api_delete_study")
    await arch.delete_study(study)
    await audit.record("study_deleted", user=me, object=f"project:{project.name}/study:{study.study_instance_uid}",
                       client=client_of(request))
    return {"status": "Ok"}


@get("/api/v1/series/get/", dependencies=_deps, tags=["cad4tb-v1"], operation_class=doc.documented(query=doc.SERIES))
async def series_get(request: Request, me: User) -> SeriesOut:
    _, series = await _series(me, dict(request.query_params), "api_get_series")
    counts = await arch.count_instances([series.id])
    return series_dict(series, counts.get(series.id, 0))


@get("/api/v1/patient/study/series/list/", dependencies=_deps, tags=["cad4tb-v1"],
     operation_class=doc.documented(query=doc.STUDY))
async def series_list(request: Request, me: User) -> list[SeriesOut]:
    _, study = await _study(me, dict(request.query_params), "api_list_series")
    series = await arch.series_of_study(study)
    counts = await arch.count_instances([s.id for s in series])
    return [series_dict(s, counts.get(s.id, 0)) for s in series]


@get("/api/v1/dicom/get/", dependencies=_deps, tags=["cad4tb-v1"], summary="Zip of the series' DICOM files",
     operation_class=doc.documented(query=doc.SERIES, answers={200: {"application/zip": doc.BINARY}}))
async def dicom_get(request: Request, me: User) -> Stream:
    project, series = await _series(me, dict(request.query_params), "api_dicom_get")
    instances = await arch.instances_of(series)
    store = arch.storage()
    entries = [(f"{i.instance_number or n + 1:04d}_{i.sop_instance_uid}.dcm", i.file_key)
               for n, i in enumerate(instances)]
    if not entries or not await asyncio.to_thread(lambda: all(store.exists(key) for _, key in entries)):
        raise NotFound("No DICOM files are available for this series.", "no_dicom_available")
    await audit.record("download", user=me, object=f"project:{project.name}/series:{series.series_instance_uid}",
                       detail={"via": "zip", "files": len(entries)}, client=client_of(request))
    return Stream(stream_zip(entries, store=store), media_type="application/zip",
                  headers={"Content-Disposition": f'attachment; filename="{series.series_instance_uid}.zip"'})


@get("/api/v1/series/delete/", dependencies=_deps, tags=["cad4tb-v1"], operation_class=doc.documented(query=doc.SERIES))
async def series_delete(request: Request, me: User) -> Done:
    project, series = await _series(me, dict(request.query_params), "api_delete_series")
    await arch.delete_series(series)
    await audit.record("series_deleted", user=me,
                       object=f"project:{project.name}/series:{series.series_instance_uid}", client=client_of(request))
    return {"status": "Ok"}


ROUTES = [instance_upload, patient_get, patient_delete, study_get, studies_list, study_delete, series_get,
          series_list, dicom_get, series_delete]
