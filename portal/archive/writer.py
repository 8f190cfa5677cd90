"""Group commit for ingest: instances arriving together share one transaction and one round of fsyncs.

Every ingest hands its prepared instances to the writer of its event loop and waits. The writer takes what
is queued (whatever arrived while the previous batch was being written, so a lone instance never waits),
places the files (each fsynced, then each changed directory once), commits all rows (and the requests'
audit rows) in one transaction, and only then answers each caller: nothing is acknowledged before its
row is committed and its file is durable.

Inside a batch each instance is answered as if it had been sent alone, in order: a second copy of a SOP
Instance UID already in the batch waits for the next batch (so it sees the first as stored), and when the
batch transaction fails it is retried instance by instance, so one bad instance fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from portal import clock, db
from portal.dicom import FileStore
from portal.dicom.parse import ReadFile
from portal.dicom.equivalence import same_apart_from_encoding
from portal.dicom.store import dataset_md5, sync_dirs
from portal.tables import Archive, AuditEvent, Instance, Patient, Project, Series, Study

log = logging.getLogger("lightbox.ingest")

STORED, ALREADY_STORED, CONFLICT = "stored", "already_stored", "conflict"
REPLACED = "replaced the earlier file with this SOP Instance UID"
RESCORE_AFTER = ("done", "failed")  # AI states after which a new instance queues the series again
MAX_BATCH = 64



@dataclass(eq=False)
class Job:
    """One instance to store (or, with `read` None, only an audit row to commit)."""

    project: Project
    archive: Archive | None
    read: ReadFile | None
    patient_id: str = ""
    src: Path | None = None  # the file on disk, when there is one
    move: bool = False  # rename `src` into place (a spooled upload) instead of copying it
    allow_overwrite: bool = False
    audit: dict | None = None  # an AuditEvent row committed with this job
    future: asyncio.Future | None = None
    file_key: str = ""
    replace: dict | None = None  # the row an allowed overwrite replaces
    placed: bool = False
    error: BaseException | None = None  # why its file could not be placed

    @property
    def key(self) -> str:
        return f"{self.project.id}:{self.read.parsed.sop_instance_uid}"


def _storage() -> FileStore:
    from portal import settings as settings_mod

    return FileStore(settings_mod.current().storage_dir)


class Writer:
    """The group-commit queue of one event loop."""

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()
        self.task: asyncio.Task | None = None

    def submit(self, jobs: list[Job]) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.future = loop.create_future()
            self.queue.append(job)
        if self.task is None or self.task.done():
            # A task of its own: a caller that goes away (client hung up) does not stop the others' batch.
            self.task = loop.create_task(self._flush())
        return [j.future for j in jobs]

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let instances that are ready at the same moment join the first batch
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            try:
                await commit_batch(batch, self)
            except BaseException as exc:  # never leave a caller waiting
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise


_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def writer() -> Writer:
    loop = asyncio.get_running_loop()
    w = _writers.get(loop)
    if w is None:
        w = _writers[loop] = Writer()
    return w


async def run(jobs: list[Job]) -> list:
    """Store `jobs` through the loop's writer; each outcome is (status, note) or the exception it raised."""
    return await asyncio.gather(*writer().submit(jobs), return_exceptions=True)


async def run_inline(job: Job, after_commit: list) -> tuple[str, str]:
    """Store one job inside the caller's transaction; removing a replaced file waits for its commit."""
    job.future = asyncio.get_running_loop().create_future()
    await commit_batch([job], None, after_commit=after_commit)
    return job.future.result()


async def _drop_unless_kept(store: FileStore, job: Job, row: dict) -> None:
    """Remove the file placed for `job` unless it is the stored row's own (same key: same UID and bytes)."""
    if job.file_key and job.file_key != row["file_key"]:
        await asyncio.to_thread(store.delete, job.file_key)


async def _delete_orphan(store: FileStore, key: str) -> None:
    """Remove a placed file no row ended up pointing at (another process may have stored the same bytes)."""
    try:
        if not await Instance.exists().where(Instance.file_key == key):
            await asyncio.to_thread(store.delete, key)
    except Exception:
        log.exception("could not remove the unused file %s", key)


def _done(job: Job, status: str, note: str = "") -> None:
    if not job.future.done():
        job.future.set_result((status, note))


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


async def commit_batch(batch: list[Job], w: Writer | None, *, after_commit: list | None = None) -> None:
    store = _storage()
    audits = [j.audit for j in batch if j.audit]
    jobs = [j for j in batch if j.read is not None]
    # What is stored already: one query for the whole batch.
    keys = list({j.key for j in jobs})
    existing = {}
    if keys:
        for row in await Instance.select(Instance.id, Instance.key, Instance.md5, Instance.file_key).where(
                Instance.key.is_in(keys)):
            existing[row["key"]] = row
    seen: set[str] = set()
    todo: list[Job] = []
    later: list[Job] = []
    for job in jobs:
        if not job.placed:
            _fail(job, job.error or RuntimeError("the file was not written"))
            continue
        if job.key in seen:  # a second copy in this batch: answered after the first is committed
            later.append(job)
            continue
        row = existing.get(job.key)
        if row is not None:
            if row["md5"] == job.read.md5 or await _same_dataset(store, job, row):
                await _drop_unless_kept(store, job, row)
                _done(job, ALREADY_STORED)
                continue
            if not job.allow_overwrite:
                await _drop_unless_kept(store, job, row)
                _done(job, CONFLICT)
                continue
            job.replace = row
        seen.add(job.key)
        todo.append(job)
    placed = todo
    results: dict[int, tuple] = {}
    try:
        if placed or audits:
            async with db.write_transaction():
                results = await _write_rows(placed)
                if audits:
                    await _write_audits(audits)
        audits = []
    except Exception as exc:
        if len(placed) <= 1 and not audits:
            for job in placed:
                await _delete_orphan(store, job.file_key)
                _fail(job, exc)
            placed = []
        else:
            log.warning("ingest batch of %d failed; storing its instances one by one", len(placed), exc_info=True)
            results = {}
            for job in placed:
                try:
                    async with db.write_transaction():
                        results.update(await _write_rows([job]))
                except Exception as exc:
                    await _delete_orphan(store, job.file_key)
                    _fail(job, exc)
    if audits:
        try:
            async with db.write_transaction():
                await _write_audits(audits)
        except Exception:
            log.exception("could not record %d upload audit event(s)", len(audits))
    for job in placed:
        outcome = results.get(id(job))
        if outcome is None:
            continue
        kind, series = outcome
        if kind == "replaced":
            old = job.replace["file_key"]
            if old != job.file_key:
                if after_commit is not None:
                    after_commit.append(lambda old=old: store.delete(old))
                else:
                    await asyncio.to_thread(store.delete, old)
            _done(job, STORED, REPLACED)
        elif kind == "raced":  # another process stored this SOP Instance UID between our look and our insert
            raced = series
            if raced and (raced["md5"] == job.read.md5 or await _same_dataset(store, job, raced)):
                if raced["file_key"] != job.file_key:
                    await _delete_orphan(store, job.file_key)
                _done(job, ALREADY_STORED)
            else:
                await _delete_orphan(store, job.file_key)
                _done(job, CONFLICT)
        else:
            _done(job, STORED)
            if kind == "hook":
                from portal.archive import ingest  # the hooks live there (the queue registers itself)

                for hook in ingest.new_series_hooks:
                    hook(job.project, series)
    for job in batch:
        if job.read is None:
            _done(job, "audited")
    if later:
        if w is not None:  # ahead of anything queued since: per series, order is kept
            w.queue.extendleft(reversed(later))
        else:
            await commit_batch(later, None, after_commit=after_commit)


_placers = ThreadPoolExecutor(8, thread_name_prefix="lightbox-place")


def place_all(store: FileStore, jobs: list[Job]) -> None:
    """Write (or move) every file, fsynced in parallel (the journal commits them together), then fsync each
    changed directory once. Runs before the jobs reach the writer, so one batch's fsyncs overlap the
    previous batch's commit. A job whose file could not be written keeps `placed` False and its error."""
    def one(job: Job) -> set[Path]:
        p = job.read.parsed
        # Content-addressed per project: a conflicting re-send never overwrites the stored file.
        job.file_key = store.key_for(f"{job.project.id}/{p.sop_instance_uid}/{job.read.md5}")
        try:
            if job.read.data is not None and not job.move:
                dirs = store.place(job.file_key, data=job.read.data, sync_dir=False)
            else:
                dirs = store.place(job.file_key, src=job.src, move=job.move, sync_dir=False)
        except Exception as exc:
            log.exception("could not write the file of %s", p.sop_instance_uid)
            job.error = exc
            return set()
        job.placed = True
        return dirs

    if len(jobs) == 1:
        dirs = one(jobs[0])
    else:
        dirs = set().union(*_placers.map(one, jobs))
    if len(dirs) > 1:
        list(_placers.map(_sync_one, dirs))
    else:
        sync_dirs(dirs)


def _sync_one(d: Path) -> None:
    sync_dirs([d])


async def _same_dataset(store: FileStore, job: Job, existing: dict) -> bool:
    """Whether only the file meta differs (the same image sent over HTTP and then by C-STORE), or only the
    encoding (another transfer syntax, same attributes and pixels: portal/dicom/equivalence.py)."""
    def compare() -> bool:
        mine = job.read.data if job.read.data is not None else job.src
        stored = store.path(existing["file_key"])
        return dataset_md5(mine) == dataset_md5(stored) or same_apart_from_encoding(mine, stored)

    try:
        return await asyncio.to_thread(compare)
    except OSError:
        return False


async def _write_rows(jobs: list[Job]) -> dict[int, tuple]:
    """The rows of `jobs` (in the caller's transaction): {id(job): (what happened, series id or raced row)}."""
    if not jobs:
        return {}
    now = clock.now()
    out: dict[int, tuple] = {}
    series_keys = list({f"{j.project.id}:{j.read.parsed.series_instance_uid}" for j in jobs})
    known = {r["key"]: r for r in await Series.select(Series.id, Series.key, Series.study, Series.ai_status).where(
        Series.key.is_in(series_keys))}
    fresh: set[str] = set()
    for job in jobs:
        p = job.read.parsed
        skey = f"{job.project.id}:{p.series_instance_uid}"
        if skey not in known:
            series, study = await _new_series(job, skey, now)
            known[skey] = {"id": series, "study": study, "ai_status": ""}
            fresh.add(skey)
    for job in [j for j in jobs if j.replace is not None]:
        p = job.read.parsed
        await Instance.update({Instance.file_key: job.file_key, Instance.size: job.read.size,
                               Instance.md5: job.read.md5, Instance.transfer_syntax_uid: p.transfer_syntax_uid}).where(
            Instance.id == job.replace["id"])
        from portal.tables import InstanceMetadata

        await InstanceMetadata.delete().where(InstanceMetadata.instance == job.replace["id"])
        out[id(job)] = ("replaced", None)
    new = [j for j in jobs if j.replace is None]
    if not new:
        return out
    rows = []
    for job in new:
        p = job.read.parsed
        s = known[f"{job.project.id}:{p.series_instance_uid}"]
        rows.append(Instance(
            key=job.key, project=job.project.id, series=s["id"],
            sop_instance_uid=p.sop_instance_uid, sop_class_uid=p.sop_class_uid, instance_number=p.instance_number,
            transfer_syntax_uid=p.transfer_syntax_uid, rows=p.rows or 0, columns=p.columns or 0,
            frames=p.number_of_frames, file_key=job.file_key, size=job.read.size, md5=job.read.md5, created_at=now))
    inserted = {r["key"] for r in await Instance.insert(*rows).on_conflict(
        target=Instance.key, action="DO NOTHING").returning(Instance.key)}
    touched: dict[int, int] = {}  # series id -> study id
    rescore: set[int] = set()
    hooked: set[str] = set()
    for job in new:
        p = job.read.parsed
        skey = f"{job.project.id}:{p.series_instance_uid}"
        s = known[skey]
        if job.key not in inserted:
            raced = await Instance.select(Instance.id, Instance.md5, Instance.file_key).where(
                Instance.key == job.key).first()
            out[id(job)] = ("raced", raced)
            continue
        touched[s["id"]] = s["study"]
        first = skey not in hooked and (skey in fresh or s["ai_status"] in RESCORE_AFTER)
        if first:
            hooked.add(skey)
            if skey not in fresh:
                rescore.add(s["id"])
        out[id(job)] = ("hook" if first else "stored", s["id"])
    if touched:
        # Quiet-period inference and "recently changed" sorting read these.
        await Series.update({Series.last_instance_at: now}).where(Series.id.is_in(list(touched)))
        if rescore:
            await Series.update({Series.ai_status: ""}).where(Series.id.is_in(list(rescore)))
        await Study.update({Study.updated_at: now}).where(Study.id.is_in(list(set(touched.values()))))
    return out


async def _write_audits(audits: list[dict]) -> None:
    now = clock.now()
    await AuditEvent.insert(*[AuditEvent(**{"created_at": now, **a}) for a in audits])


async def _upsert(table, key: str, row) -> int:
    """Insert `row` unless a row with `key` exists (a concurrent ingest may have just made it)."""
    await table.insert(row).on_conflict(target=table.key, action="DO NOTHING")
    found = await table.select(table.id).where(table.key == key).first()
    return found["id"]


async def _new_series(job: Job, series_key: str, now) -> tuple[int, int]:
    """Patient, study and series rows for the first instance of a series (upserts: others may race us)."""
    p, project, archive = job.read.parsed, job.project, job.archive
    patient_key = f"{archive.id}:{job.patient_id}"
    patient = await _upsert(Patient, patient_key, Patient(
        key=patient_key, project=project.id, archive=archive.id, patient_id=job.patient_id,
        patient_name=p.patient_name[:324], birth_date=p.patient_birth_date[:8], sex=p.patient_sex[:16],
        created_at=now))
    study_key = f"{project.id}:{p.study_instance_uid}"
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
