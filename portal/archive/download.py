"""Download a study or series as a zip of its DICOM files, de-identified when the project says so."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from portal import projects, settings as settings_mod
from portal.archive.ingest import storage
from portal.dicom.store import sanitize_filename
from portal.dicom.zipfiles import stream_zip
from portal.tables import Instance, Patient, Project, Series, Study

SETTING = "download_deidentified"  # project setting: downloads from the portal are de-identified


def deidentified(project: Project) -> bool:
    return bool(projects.settings_of(project).get(SETTING))


async def _instances(series_ids: list[int]) -> list[dict]:
    return await Instance.select(Instance.series, Instance.sop_instance_uid, Instance.file_key,
                                 Instance.instance_number).where(Instance.series.is_in(series_ids or [-1])
                                                                 ).order_by(Instance.series).order_by(
        Instance.instance_number).order_by(Instance.id)


async def plan(project: Project, study: Study, series: list[Series]) -> tuple[str, list[tuple[str, Path]]]:
    """The zip's file name and its (name in zip, stored file key) entries: patient/study/series folders."""
    patient = await Patient.objects().get(Patient.id == study.patient)
    deid = _deidentifier(project)
    pid = deid.patient_id(patient.patient_id) if deid else patient.patient_id
    by_id = {s.id: s for s in series}
    entries = []
    for n, inst in enumerate(await _instances(list(by_id)), 1):
        s = by_id[inst["series"]]
        folder = f"{sanitize_filename(s.modality or 'series')}-{s.series_number if s.series_number is not None else n}"
        sop = deid.uid(inst["sop_instance_uid"]) if deid else inst["sop_instance_uid"]
        entries.append((f"{sanitize_filename(pid)}/{folder}/{sop}.dcm", inst["file_key"]))
    what = series[0].series_instance_uid if len(series) == 1 else study.study_instance_uid
    suffix = "-deidentified" if deid else ""
    return f"{sanitize_filename(pid)}-{what}{suffix}.zip", entries


def _deidentifier(project: Project):
    if not deidentified(project):
        return None
    from portal.exchange.deidentify import Deidentifier

    return Deidentifier(settings_mod.current().secret_key, project.name)


def chunks(project: Project, entries: list[tuple[str, Path]]) -> Iterator[bytes]:
    """The zip, chunk by chunk (blocking: run it in a thread). De-identified files pass through a temp folder."""
    deid = _deidentifier(project)
    if deid is None:
        yield from stream_zip(entries, store=storage())
        return
    with tempfile.TemporaryDirectory(prefix="lightbox-download-") as tmp:
        def clean() -> Iterator[tuple[str, Path]]:
            for i, (name, src) in enumerate(entries):
                dest = Path(tmp) / f"{i}.dcm"
                with storage().local_copy(src) as path:
                    deid.write_file(path, dest)
                yield name, dest
                dest.unlink()  # stream_zip has read it whole by now
        yield from stream_zip(clean())
