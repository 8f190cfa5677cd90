"""Finding and deleting patients, studies, series and instances of a project."""

from __future__ import annotations

import asyncio

from portal.archive.ingest import storage
from portal.db import row_of, rows_of
from portal.errors import NotFound
from portal.tables import Archive, Instance, Patient, Project, Series, Study, VolumeSource


async def find_patient(archive: Archive, patient_id: str) -> Patient:
    patient = await row_of(Patient, "key = {}", f"{archive.id}:{patient_id}") if patient_id else None
    if patient is None:
        raise NotFound(f"No patient '{patient_id}' in archive '{archive.name}'.", "patient_not_found")
    return patient


async def find_study(project: Project, study_uid: str, patient: Patient | None = None) -> Study:
    study = await row_of(Study, "key = {}", f"{project.id}:{study_uid}") if study_uid else None
    if study is None or (patient is not None and study.patient != patient.id):
        raise NotFound(f"No study {study_uid or '(no StudyInstanceUID given)'}"
                       f"{' for patient ' + patient.patient_id if patient else ''}.", "study_not_found")
    return study


async def find_series(project: Project, series_uid: str, study: Study | None = None) -> Series:
    series = await row_of(Series, "key = {}", f"{project.id}:{series_uid}") if series_uid else None
    if series is None or (study is not None and series.study != study.id):
        raise NotFound(f"No series {series_uid or '(no SeriesInstanceUID given)'}"
                       f"{' in study ' + study.study_instance_uid if study else ''}.", "series_not_found")
    return series


async def find_instance(project: Project, sop_uid: str) -> Instance:
    instance = await row_of(Instance, "key = {}", f"{project.id}:{sop_uid}") if sop_uid else None
    if instance is None:
        raise NotFound(f"No instance {sop_uid}.", "instance_not_found")
    return instance


async def studies_of_patient(patient: Patient) -> list[Study]:
    return await rows_of(Study, "patient = {}", patient.id, order="study_date, id")


async def series_of_study(study: Study) -> list[Series]:
    return await rows_of(Series, "study = {}", study.id, order="series_number, id")


async def instances_of(series: Series) -> list[Instance]:
    return await rows_of(Instance, "series = {}", series.id, order="instance_number, id")


async def count_instances(series_ids: list[int]) -> dict[int, int]:
    if not series_ids:
        return {}
    rows = await Instance.raw(
        "SELECT series, COUNT(*) AS n FROM lb_instance WHERE series IN ("
        + ",".join(str(int(i)) for i in series_ids) + ") GROUP BY series")
    return {r["series"]: r["n"] for r in rows}


async def _delete_files(keys: list[str], volume_keys: list[str] = ()) -> None:
    """After the rows are gone: the instances' files, and the volumes (NIfTI, MGZ, NRRD) no series keeps any
    more (a volume's copy is content-addressed, so another series may hold the same file)."""
    still = set(await VolumeSource.select(VolumeSource.file_key).where(
        VolumeSource.file_key.is_in(list(volume_keys))).output(as_list=True)) if volume_keys else set()
    gone = keys + [k for k in dict.fromkeys(volume_keys) if k not in still]
    store = storage()
    await asyncio.to_thread(lambda: [store.delete(k) for k in gone])


async def _file_keys(where, volumes_where) -> tuple[list[str], list[str]]:
    """The instance files and volume files of the rows a delete removes."""
    return (await Instance.select(Instance.file_key).where(where).output(as_list=True),
            await VolumeSource.select(VolumeSource.file_key).where(volumes_where).output(as_list=True))


async def delete_series(series: Series) -> int:
    """Delete a series, its instances and their files; a study or patient left empty goes too."""
    keys, volume_keys = await _file_keys(Instance.series == series.id, VolumeSource.series == series.id)
    await Series.delete().where(Series.id == series.id)
    if not await Series.exists().where(Series.study == series.study):
        study = await Study.objects().get(Study.id == series.study)
        if study is not None:
            await Study.delete().where(Study.id == study.id)
            await _drop_empty_patient(study.patient)
    await _delete_files(keys, volume_keys)
    return len(keys)


async def delete_study(study: Study) -> int:
    keys, volume_keys = await _file_keys(Instance.series.study == study.id, VolumeSource.series.study == study.id)
    await Study.delete().where(Study.id == study.id)
    await _drop_empty_patient(study.patient)
    await _delete_files(keys, volume_keys)
    return len(keys)


async def delete_patient(patient: Patient) -> int:
    keys, volume_keys = await _file_keys(Instance.series.study.patient == patient.id,
                                         VolumeSource.series.study.patient == patient.id)
    await Patient.delete().where(Patient.id == patient.id)
    await _delete_files(keys, volume_keys)
    return len(keys)


async def _drop_empty_patient(patient_id: int) -> None:
    if not await Study.exists().where(Study.patient == patient_id):
        await Patient.delete().where(Patient.id == patient_id)
