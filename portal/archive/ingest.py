"""The one ingest path: every entry point (browser, APIs, DICOMweb, C-STORE, CLI, import) calls it.

parse → validate → write the file atomically (temp, fsync, rename; MD5) → upsert
Patient/Study/Series/Instance in one transaction → stored / already stored / conflict / rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from portal import clock, db, projects, settings as settings_mod
from portal.dicom import DicomRejected, FileStore, ParsedInstance, md5_of, read_instance, safe_extract
from portal.dicom.equivalence import same_apart_from_encoding
from portal.dicom.store import dataset_md5
from portal.errors import LightboxError
from portal.tables import Archive, Instance, Patient, Project, Series, Study

log = logging.getLogger("lightbox.ingest")

STORED, ALREADY_STORED, CONFLICT, REJECTED = "stored", "already_stored", "conflict", "rejected"

# A zip may expand to at most this much; more is refused rather than filling the disk.
MAX_ZIP_BYTES = 4 * 1024**3

# Called with (project, series id) after the first instance of a new series is stored, and after
# the first new instance of a series already scored (its score is then out of date); the task
# queue registers itself here (portal/tasks/inference.py) so that ingest needs no queue import.
new_series_hooks: list = []
RESCORE_AFTER = ("done", "failed")  # AI states after which a new instance queues the series again


@dataclass
class IngestResult:
    status: str
    filename: str = ""
    reason: str = ""
    suberror: str = ""
    patient_id: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (STORED, ALREADY_STORED)

    def as_dict(self) -> dict:
        return asdict(self)


def storage() -> FileStore:
    return FileStore(settings_mod.current().storage_dir)


def _key(project_id: int, uid: str) -> str:
    return f"{project_id}:{uid}"


def _assigned_patient_id(study_uid: str) -> str:
    # Stable: every instance of a study lands under the same assigned patient.
    return "LB-" + hashlib.sha1(study_uid.encode()).hexdigest()[:12].upper()


async def _upsert(table, key: str, row) -> int:
    """Insert `row` unless a row with `key` exists (a concurrent ingest may have just made it)."""
    await table.insert(row).on_conflict(target=table.key, action="DO NOTHING")
    found = await table.select(table.id).where(table.key == key).first()
    return found["id"]


async def _write_rows(project: Project, archive: Archive, p: ParsedInstance, patient_id: str,
                      file_key: str, size: int, md5: str) -> tuple[bool, dict | None]:
    """Upsert the hierarchy and insert the instance; (inserted, existing instance row if not)."""
    now = clock.now()
    series_key = _key(project.id, p.series_instance_uid)
    async with db.write_transaction():
        known = await Series.select(Series.id, Series.study, Series.ai_status).where(Series.key == series_key).first()
        new = not known
        rescore = bool(known) and known["ai_status"] in RESCORE_AFTER
        if known:  # the common case: the next instance of a series being received
            series, study = known["id"], known["study"]
        else:
            series, study = await _new_series(project, archive, p, patient_id, series_key, now)
        inserted = await Instance.insert(Instance(
            key=_key(project.id, p.sop_instance_uid), project=project.id, series=series,
            sop_instance_uid=p.sop_instance_uid, sop_class_uid=p.sop_class_uid, instance_number=p.instance_number,
            transfer_syntax_uid=p.transfer_syntax_uid, rows=p.rows or 0, columns=p.columns or 0,
            frames=p.number_of_frames, file_key=file_key, size=size, md5=md5, created_at=now,
        )).on_conflict(target=Instance.key, action="DO NOTHING").returning(Instance.id)
        if not inserted:
            existing = await Instance.select().where(Instance.key == _key(project.id, p.sop_instance_uid)).first()
            return False, existing
        # Quiet-period inference and "recently changed" sorting read these.
        changes = {Series.last_instance_at: now, **({Series.ai_status: ""} if rescore else {})}
        await Series.update(changes).where(Series.id == series)
        await Study.update({Study.updated_at: now}).where(Study.id == study)
    if new or rescore:
        for hook in new_series_hooks:
            hook(project, series)
    return True, None


async def _new_series(project: Project, archive: Archive, p: ParsedInstance, patient_id: str, series_key: str,
                      now) -> tuple[int, int]:
    """Patient, study and series rows for the first instance of a series (upserts: others may race us)."""
    patient_key = f"{archive.id}:{patient_id}"
    patient = await _upsert(Patient, patient_key, Patient(
        key=patient_key, project=project.id, archive=archive.id, patient_id=patient_id,
        patient_name=p.patient_name[:324], birth_date=p.patient_birth_date[:8], sex=p.patient_sex[:16],
        created_at=now))
    study_key = _key(project.id, p.study_instance_uid)
    study = await _upsert(Study, study_key, Study(
        key=study_key, project=project.id, patient=patient, study_instance_uid=p.study_instance_uid,
        study_date=p.study_date[:8], study_time=p.study_time[:16], description=p.study_description[:256],
        referring_physician=p.referring_physician_name[:324], institution=p.institution_name[:256],
        accession_number=p.accession_number[:64], study_id=p.study_id[:64], modalities="",
        created_at=now, updated_at=now))
    series = await _upsert(Series, series_key, Series(
        key=series_key, project=project.id, study=study, series_instance_uid=p.series_instance_uid,
        series_number=p.series_number, series_date=p.series_date[:8], series_time=p.series_time[:16],
        modality=p.modality[:16], body_part=p.body_part_examined[:64], description=p.series_description[:256],
        manufacturer=p.manufacturer[:128], model_name=p.manufacturer_model_name[:128],
        sop_class_uid=p.sop_class_uid, last_instance_at=now, created_at=now))
    if p.modality:
        row = await Study.select(Study.modalities).where(Study.id == study).first()
        modalities = set(filter(None, row["modalities"].split("\\")))
        if p.modality not in modalities:
            await Study.update({Study.modalities: "\\".join(sorted(modalities | {p.modality}))[:100]}).where(
                Study.id == study)
    return series, study


def _result(status: str, p: ParsedInstance, patient_id: str, filename: str, reason: str = "",
            suberror: str = "") -> IngestResult:
    return IngestResult(status=status, filename=filename, reason=reason, suberror=suberror, patient_id=patient_id,
                        study_instance_uid=p.study_instance_uid, series_instance_uid=p.series_instance_uid,
                        sop_instance_uid=p.sop_instance_uid, sop_class_uid=p.sop_class_uid)


async def ingest_file(path: str | Path, project: Project, archive: Archive | None = None, *,
                      filename: str = "", after_commit: list | None = None) -> IngestResult:
    """Ingest one file into `project` (its `archive`, the default one when None).

    Called inside a caller's transaction, `after_commit` collects what must wait for its commit (callables
    run by the caller once committed): a rollback must not leave the rows pointing at a deleted file."""
    filename = filename or Path(path).name
    try:
        parsed = await asyncio.to_thread(read_instance, path)
    except DicomRejected as exc:
        return IngestResult(status=REJECTED, filename=filename, reason=exc.detail, suberror=exc.suberror)
    if archive is None:
        archive = await projects.archive(project, None)
    conf = projects.settings_of(project)
    patient_id = parsed.patient_id.strip()
    if not patient_id:
        if conf["missing_patient_id"] == "reject":
            return _result(REJECTED, parsed, "", filename, "The file has no PatientID and this project rejects "
                           "such files; set PatientID or change the project's setting.", "missing_patient_id")
        patient_id = _assigned_patient_id(parsed.study_instance_uid)

    md5 = await asyncio.to_thread(md5_of, path)
    existing = await Instance.select().where(Instance.key == _key(project.id, parsed.sop_instance_uid)).first()
    if existing and (existing["md5"] == md5 or await _same_dataset(path, existing)):
        return _result(ALREADY_STORED, parsed, patient_id, filename)
    if existing and not conf["allow_overwrite"]:
        return _conflict(parsed, patient_id, filename)

    store = storage()
    # Content-addressed per project: a conflicting re-send never overwrites the stored file.
    file_key = store.key_for(f"{project.id}/{parsed.sop_instance_uid}/{md5}")
    stored = await asyncio.to_thread(store.put, path, file_key)
    if existing:  # overwrite allowed
        await Instance.update({Instance.file_key: file_key, Instance.size: stored.size, Instance.md5: md5,
                               Instance.transfer_syntax_uid: parsed.transfer_syntax_uid}).where(
            Instance.id == existing["id"])
        if after_commit is not None:
            after_commit.append(lambda: store.delete(existing["file_key"]))
        else:
            await asyncio.to_thread(store.delete, existing["file_key"])
        return _result(STORED, parsed, patient_id, filename, "replaced the earlier file with this SOP Instance UID")
    inserted, raced = await _write_rows(project, archive, parsed, patient_id, file_key, stored.size, md5)
    if inserted:
        return _result(STORED, parsed, patient_id, filename)
    # Another ingest stored this SOP Instance UID between our check and our insert.
    if raced["md5"] == md5 or await _same_dataset(path, raced):
        return _result(ALREADY_STORED, parsed, patient_id, filename)
    await asyncio.to_thread(store.delete, file_key)
    return _conflict(parsed, patient_id, filename)


async def _same_dataset(path: str | Path, existing: dict) -> bool:
    """Whether only the file meta differs (the same image sent over HTTP and then by C-STORE), or only the
    encoding (another transfer syntax, same attributes and pixels: portal/dicom/equivalence.py)."""
    stored = storage().path(existing["file_key"])
    try:
        return await asyncio.to_thread(lambda: dataset_md5(path) == dataset_md5(stored)
                                       or same_apart_from_encoding(path, stored))
    except OSError:
        return False


def _conflict(parsed: ParsedInstance, patient_id: str, filename: str) -> IngestResult:
    return _result(CONFLICT, parsed, patient_id, filename,
                   f"An instance with SOP Instance UID {parsed.sop_instance_uid} is already stored with different "
                   "content; it was kept. Send it with a new SOP Instance UID, or ask a manager to allow "
                   "overwriting.", "conflict")


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


async def ingest_path(path: str | Path, project: Project, archive: Archive | None = None, *,
                      filename: str = "", on_result=None) -> list[IngestResult]:
    """Ingest a file, a .zip (expanded safely) or a folder (recursively). `on_result` sees each result."""
    path = Path(path)
    results: list[IngestResult] = []

    async def one(p: Path, name: str) -> None:
        r = await ingest_file(p, project, archive, filename=name)
        results.append(r)
        if on_result:
            on_result(r)

    if path.is_dir():
        for p in sorted(x for x in path.rglob("*") if x.is_file()):
            if _is_zip(p):
                results.extend(await ingest_path(p, project, archive, filename=str(p.relative_to(path)),
                                                 on_result=on_result))
            else:
                await one(p, str(p.relative_to(path)))
        return results
    name = filename or path.name
    if not _is_zip(path):
        await one(path, name)
        return results
    with tempfile.TemporaryDirectory(prefix="lightbox-zip-", dir=settings_mod.current().data_dir) as tmp:
        try:
            members = await asyncio.to_thread(safe_extract, path, Path(tmp), max_total_bytes=MAX_ZIP_BYTES)
        except LightboxError as exc:
            r = IngestResult(status=REJECTED, filename=name, reason=exc.detail, suberror=exc.suberror)
            results.append(r)
            if on_result:
                on_result(r)
            return results
        for member in members:
            await one(member, f"{name}/{member.relative_to(tmp)}")
    return results
