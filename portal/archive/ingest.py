"""The one ingest path: every entry point (browser, APIs, DICOMweb, C-STORE, CLI, import) calls it.

read once (parse, MD5, keep the bytes) → validate → hand to the group-commit writer (writer.py), which
places the file (written or, for a spooled upload, renamed; fsynced) and upserts
Patient/Study/Series/Instance with the instances that arrived with it → stored / already stored /
conflict / rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from portal import projects, settings as settings_mod, storage as storage_mod
from portal.archive import writer
from portal.archive.writer import ALREADY_STORED, CONFLICT, STORED  # noqa: F401 (re-exported)
from portal.dicom import DicomRejected, FileStore, ParsedInstance, safe_extract
from portal.dicom.parse import ReadFile, read_once
from portal.errors import LightboxError
from portal.tables import Archive, Project

log = logging.getLogger("lightbox.ingest")

REJECTED = "rejected"
# Files parsed per thread hop; two such chunks at most wait for the writer (memory stays bounded).
PREPARE_CHUNK = 32

# A zip may expand to at most this much; more is refused rather than filling the disk.
MAX_ZIP_BYTES = 4 * 1024**3

# Called with (project, series id) after the first instance of a new series is stored, and after
# the first new instance of a series already scored (its score is then out of date); the task
# queue registers itself here (portal/tasks/inference.py) so that ingest needs no queue import.
new_series_hooks: list = []


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
    """The configured store (portal/storage): local files or S3, with the same methods."""
    return storage_mod.current()


def _assigned_patient_id(study_uid: str) -> str:
    # Stable: every instance of a study lands under the same assigned patient.
    return "LB-" + hashlib.sha1(study_uid.encode()).hexdigest()[:12].upper()


def _result(status: str, p: ParsedInstance, patient_id: str, filename: str, reason: str = "",
            suberror: str = "") -> IngestResult:
    return IngestResult(status=status, filename=filename, reason=reason, suberror=suberror, patient_id=patient_id,
                        study_instance_uid=p.study_instance_uid, series_instance_uid=p.series_instance_uid,
                        sop_instance_uid=p.sop_instance_uid, sop_class_uid=p.sop_class_uid)


def prepare(path: str | Path | None = None, data: bytes | None = None, *,
            keep: bool = True) -> ReadFile | DicomRejected:
    """Read a file (or bytes) once: parsed, hashed and (`keep`) kept for placing; what is unfit comes back as
    the refusal."""
    try:
        return read_once(path, data, keep=keep)
    except DicomRejected as exc:
        return exc


def upload_audit(user, obj: str, detail: dict, client: str = "", action: str = "upload") -> dict:
    """The audit row of an upload request, committed in the same transaction as its last instance."""
    return {"user": user.id if user else None, "username": (user.username if user else "")[:150], "action": action,
            "object": obj, "detail": detail, "client": (client or "")[:64]}


async def ingest_file(path: str | Path, project: Project, archive: Archive | None = None, *,
                      filename: str = "", after_commit: list | None = None, move: bool = False) -> IngestResult:
    """Ingest one file into `project` (its `archive`, the default one when None).

    With `move` the file (a spooled upload) is renamed into place instead of copied. Called inside a
    caller's transaction, `after_commit` collects what must wait for its commit (callables run by the
    caller once committed): a rollback must not leave the rows pointing at a deleted file."""
    filename = filename or Path(path).name
    read = await asyncio.to_thread(prepare, path, keep=not move)
    (result,) = await ingest_prepared([(read, Path(path), filename)], project, archive, move=move,
                                      after_commit=after_commit, return_exceptions=False)
    return result


async def ingest_files(files: list[tuple[Path | bytes, str]], project: Project, archive: Archive | None = None,
                       *, move: bool = False, audit: dict | None = None, accept=None,
                       return_exceptions: bool = False, volumes: bool = True) -> list:
    """Ingest many (path or bytes, filename) at once, answered in order; they share the writer's batches.

    `audit` (see upload_audit) is committed with them. `accept(parsed)` may refuse an instance by returning
    the reason (rejected, suberror "refused"). With `return_exceptions`, an instance that could not be
    stored (disk, database) is answered by its exception instead of raising it. With `volumes`, a NIfTI,
    MGZ or NRRD file (by its name) becomes DICOM images first (archive/volumes.py), answered by one result
    per image in its place."""
    if archive is None:
        archive = await projects.archive(project, None)
    if volumes and any(_volume_name(_name_of(src, name)) for src, name in files):
        return await _with_volumes(files, project, archive, move=move, audit=audit, accept=accept,
                                   return_exceptions=return_exceptions)
    conf = projects.settings_of(project)
    store = storage()
    results: list = []
    pending: list = []

    def read_and_place(chunk: list) -> tuple:
        """One thread hop per chunk: parse and hash each file, apply the project's policy, place the files."""
        reads = [prepare(data=src) if isinstance(src, bytes | bytearray) else prepare(src, keep=not move)
                 for src, _ in chunk]
        refused = {}
        for j, (r, (_, name)) in enumerate(zip(reads, chunk)):
            if accept is not None and isinstance(r, ReadFile) and (why := accept(r.parsed)):
                refused[j] = _result(REJECTED, r.parsed, r.parsed.patient_id, name, why, "refused")
        items = [(r, None if isinstance(src, bytes | bytearray) else Path(src), name)
                 for j, (r, (src, name)) in enumerate(zip(reads, chunk)) if j not in refused]
        planned = _plan(items, project, archive, conf, move)
        if planned[1]:
            writer.place_all(store, [job for _, job in planned[1]])
        return refused, items, planned

    async def store_chunk(prepared: tuple, n: int, audit: dict | None) -> list:
        refused, items, (results, jobs) = prepared
        out = await _commit(items, results, jobs, project, archive, audit=audit, return_exceptions=True)
        it = iter(out)
        return [refused[j] if j in refused else next(it) for j in range(n)]

    for start in range(0, max(len(files), 1), PREPARE_CHUNK):
        chunk = files[start:start + PREPARE_CHUNK]
        prepared = await asyncio.to_thread(read_and_place, chunk)
        last = start + PREPARE_CHUNK >= len(files)
        pending.append(asyncio.ensure_future(store_chunk(prepared, len(chunk), audit if last else None)))
        while len(pending) > 2:  # parse the next chunk while the last ones are written; bounded memory
            results.extend(await pending.pop(0))
    for fut in pending:
        results.extend(await fut)
    if not return_exceptions:
        for r in results:
            if isinstance(r, BaseException):
                raise r
    return results


def _name_of(src: Path | bytes, name: str) -> str:
    return name or ("" if isinstance(src, bytes | bytearray) else Path(src).name)


def _volume_name(name: str) -> bool:
    from portal.dicom.volumes import volume_format

    return bool(volume_format(name))


async def _with_volumes(files, project, archive, *, move, audit, accept, return_exceptions) -> list:
    from portal.archive import volumes as volumes_mod  # it builds on this module

    results: list = []
    plain: list = []

    async def flush(audit=None) -> None:
        if plain or audit is not None:
            results.extend(await ingest_files(list(plain), project, archive, move=move, audit=audit, accept=accept,
                                              return_exceptions=return_exceptions, volumes=False))
            plain.clear()

    for p, name in files:
        name = _name_of(p, name)
        if not _volume_name(name):
            plain.append((p, name))
            continue
        await flush()
        path, data = (None, bytes(p)) if isinstance(p, bytes | bytearray) else (Path(p), None)
        conv = await asyncio.to_thread(volumes_mod.prepare, project, volumes_mod.scan_of_upload(name),
                                       path, data, name)
        results.extend(await volumes_mod.ingest_volume(conv, project, archive, filename=name))
    await flush(audit)
    if not return_exceptions:
        for r in results:
            if isinstance(r, BaseException):
                raise r
    return results


def _plan(items: list, project: Project, archive: Archive, conf: dict, move: bool) -> tuple[list, list]:
    """The project's policy on what `prepare` read: (results so far, [(index, Job)] of what is to be stored)."""
    results: list = [None] * len(items)
    jobs: list[tuple[int, writer.Job]] = []
    for i, (read, src, filename) in enumerate(items):
        if isinstance(read, DicomRejected):
            results[i] = IngestResult(status=REJECTED, filename=filename, reason=read.detail, suberror=read.suberror)
            continue
        patient_id = read.parsed.patient_id.strip()
        if not patient_id:
            if conf["missing_patient_id"] == "reject":
                results[i] = _result(REJECTED, read.parsed, "", filename, "The file has no PatientID and this "
                                     "project rejects such files; set PatientID or change the project's setting.",
                                     "missing_patient_id")
                continue
            patient_id = _assigned_patient_id(read.parsed.study_instance_uid)
        jobs.append((i, writer.Job(project, archive, read, patient_id, src=src, move=move and src is not None,
                                   allow_overwrite=bool(conf["allow_overwrite"]))))
    return results, jobs


async def ingest_prepared(items: list[tuple[ReadFile | DicomRejected, Path | None, str]], project: Project,
                          archive: Archive | None = None, *, move: bool = False, audit: dict | None = None,
                          after_commit: list | None = None, return_exceptions: bool = False) -> list:
    """Store what `prepare` read: [(read, file on disk or None, filename)] → results in the same order."""
    if archive is None:
        archive = await projects.archive(project, None)
    planned = await asyncio.to_thread(place_prepared, items, project, archive, move=move, audit=audit,
                                      rows=after_commit is None)
    return await answer_prepared(items, planned, project, archive, audit=audit, after_commit=after_commit,
                                 return_exceptions=return_exceptions)


def place_prepared(items: list, project: Project, archive: Archive, *, move: bool = False,
                   audit: dict | None = None, rows: bool = True) -> tuple:
    """The part of `ingest_prepared` that needs no event loop, for a caller with a thread of its own (a C-STORE
    association, one instance at a time: nothing to batch with): the project's policy, the files placed
    (durable) and, with `rows`, their rows written here when the database allows (writer.commit_here: SQLite),
    `audit` with them. What `answer_prepared` answers from, on the loop."""
    results, jobs = _plan(items, project, archive, projects.settings_of(project), move)
    done = None
    if jobs:  # files first (durable), then the rows
        if audit is not None:
            jobs[-1][1].audit = audit
        writer.place_all(storage(), [job for _, job in jobs])
        if rows:
            done = writer.commit_here([job for _, job in jobs])
    return results, jobs, done


async def answer_prepared(items: list, planned: tuple, project: Project, archive: Archive, *,
                          audit: dict | None = None, after_commit: list | None = None,
                          return_exceptions: bool = False) -> list:
    """The results of what `place_prepared` did: the rows it did not write go through the writer."""
    results, jobs, done = planned
    return await _commit(items, results, jobs, project, archive, audit=audit, after_commit=after_commit,
                         return_exceptions=return_exceptions, done=done)


async def _commit(items: list, results: list, jobs: list, project: Project, archive: Archive, *,
                  audit: dict | None = None, after_commit: list | None = None,
                  return_exceptions: bool = False, done: tuple | None = None) -> list:
    """The rows of placed `jobs` through the writer (or inside the caller's transaction with `after_commit`);
    `done`: what `writer.commit_here` wrote already."""
    if audit is not None:
        if jobs:
            jobs[-1][1].audit = audit
        else:
            jobs.append((-1, writer.Job(project, archive, None, audit=audit)))
    if done is not None:
        outcomes = await writer.finish([job for _, job in jobs], done)
    elif after_commit is not None:  # inside the caller's transaction: no batching across callers
        outcomes = []
        for _, job in jobs:
            try:
                outcomes.append(await writer.run_inline(job, after_commit))
            except Exception as exc:
                outcomes.append(exc)
    else:
        outcomes = await writer.run([job for _, job in jobs])
    for (i, job), outcome in zip(jobs, outcomes):
        if i < 0:
            continue
        filename = items[i][2]
        if isinstance(outcome, BaseException):
            if not return_exceptions:
                raise outcome
            results[i] = outcome
            continue
        status, note = outcome
        if status == CONFLICT:
            results[i] = _conflict(job.read.parsed, job.patient_id, filename)
        else:
            results[i] = _result(status, job.read.parsed, job.patient_id, filename, note)
    return results


def _conflict(parsed: ParsedInstance, patient_id: str, filename: str) -> IngestResult:
    return _result(CONFLICT, parsed, patient_id, filename,
                   f"An instance with SOP Instance UID {parsed.sop_instance_uid} is already stored with different "
                   "content; it was kept. Send it with a new SOP Instance UID, or ask a manager to allow "
                   "overwriting.", "conflict")


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


async def ingest_path(path: str | Path, project: Project, archive: Archive | None = None, *,
                      filename: str = "", on_result=None, move: bool = False) -> list[IngestResult]:
    """Ingest a file, a .zip (expanded safely) or a folder (recursively). `on_result` sees each result.

    The files of a folder or zip go to the writer together (batched); `move` renames a spooled file into place."""
    path = Path(path)
    results: list[IngestResult] = []

    async def many(files: list[tuple[Path, str]], move: bool) -> None:
        for r in await ingest_files(files, project, archive, move=move):
            results.append(r)
            if on_result:
                on_result(r)

    if path.is_dir():
        plain = []
        for p in sorted(x for x in path.rglob("*") if x.is_file()):
            if is_zip(p):
                results.extend(await ingest_path(p, project, archive, filename=str(p.relative_to(path)),
                                                 on_result=on_result))
            else:
                plain.append((p, str(p.relative_to(path))))
        if plain:
            await many(plain, move)
        return results
    name = filename or path.name
    if not is_zip(path):
        await many([(path, name)], move)
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
        # Extracted into the data dir's filesystem: the members are moved into place, not copied again.
        await many([(m, f"{name}/{m.relative_to(tmp)}") for m in members], True)
    return results


async def record_audit(project: Project, audit: dict) -> None:
    """Commit an audit row through the writer (with whatever instances are being written)."""
    (outcome,) = await writer.run([writer.Job(project, None, None, audit=audit)])
    if isinstance(outcome, BaseException):
        raise outcome


async def record_placed(project: Project, archive: Archive, parsed: ParsedInstance, file_key: str, size: int,
                        md5: str, *, filename: str = "", after_commit: list | None = None) -> IngestResult:
    """The rows of a file its caller already placed in the store under `file_key` (an import places all its
    images before the short transaction that merges its rows): `ingest_file` without the file work, with
    the same answers. Inside the caller's transaction; `after_commit` as for `ingest_file`."""
    conf = projects.settings_of(project)
    patient_id = parsed.patient_id.strip()
    if not patient_id:
        if conf["missing_patient_id"] == "reject":
            return _result(REJECTED, parsed, "", filename, "The file has no PatientID and this project rejects "
                           "such files; set PatientID or change the project's setting.", "missing_patient_id")
        patient_id = _assigned_patient_id(parsed.study_instance_uid)
    job = writer.Job(project, archive, ReadFile(parsed=parsed, md5=md5, size=size, data=None), patient_id,
                     src=None, allow_overwrite=bool(conf["allow_overwrite"]),
                     file_key=file_key, placed=True)
    status, note = await writer.run_inline(job, after_commit if after_commit is not None else [])
    if status == CONFLICT:
        return _conflict(parsed, patient_id, filename)
    return _result(status, parsed, patient_id, filename, note)
