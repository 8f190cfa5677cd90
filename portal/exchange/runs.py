"""Runs of exports, imports and syncs: created when asked for, executed by a task (or the CLI), kept as history."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import shutil
import time
from pathlib import Path

from piccolo.engine.sqlite import SQLiteEngine

from portal import clock, db, projects, storage as storage_mod
from portal.dicom import md5_of
from portal.errors import Conflict, LightboxError, NotFound, PermissionDenied
from portal.exchange import exporter as export_mod, importer, sync
from portal.exchange.records import loads
from portal.tables import Project, SyncRun, User

log = logging.getLogger("lightbox.exchange")
KINDS = ("export", "import", "sync")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ACTIVE = (QUEUED, RUNNING)
# A run still queued or running after this long lost its worker (a restart): it is marked failed, so that
# the project's schedule carries on.
STALE = dt.timedelta(hours=2)


MERGING = ("import", "sync")  # runs that write to the project: one at a time


async def create(project: Project, kind: str, *, trigger: str, user: User | None = None, fmt: str = "",
                 path: str = "", options: dict | None = None) -> dict:
    assert kind in KINDS
    if kind in MERGING:
        await refuse_if_merging(project)
    run = SyncRun(project=project.id, kind=kind, trigger=trigger, state=QUEUED, format=fmt or "", path=str(path or ""),
                  options=options or {}, username=user.username if user else "", queued_at=clock.now())
    await run.save()
    return await get(project, run.id)


def as_dict(row: dict, project_name: str = "", viewer: str = "") -> dict:
    """The run as the API answers it; `viewer` (a username) gets `direct_url` when it is their export."""
    if row["state"] == RUNNING and row["id"] in LIVE:
        row = {**row, **dict(zip(("phase", "done", "total"), LIVE[row["id"]]))}
    return {
        "id": row["id"], "project": project_name, "kind": row["kind"], "trigger": row["trigger"],
        "state": row["state"], "format": row["format"], "path": row["path"], "options": loads(row["options"]) or {},
        "username": row["username"], "phase": row["phase"], "done": row["done"], "total": row["total"],
        "summary": loads(row["summary"]) or {}, "problems": loads(row["problems"]) or [], "message": row["message"],
        "queued": clock.iso(row["queued_at"]), "started": clock.iso(row["started_at"]),
        "finished": clock.iso(row["finished_at"]), "active": row["state"] in ACTIVE,
        "download_url": download_url(project_name, row),
        **(direct_url(row) if viewer and viewer == row["username"] else {}),
    }


# --- the file of a finished export, for the person who started it ---------------------------------------


def download_url(project_name: str, row: dict) -> str | None:
    """Where the person who started a finished export downloads its file (the API; the portal has its own)."""
    if row["kind"] != "export" or row["state"] != DONE or not project_name:
        return None
    return f"/api/v1/projects/{project_name}/runs/{row['id']}/file"


def direct_url(row: dict) -> dict:
    """`{"direct_url": …}` for a finished export whose copy is in an S3 store: a presigned URL (an hour) that
    a client fetches straight from the store; nothing on local disk. Only for the person who started the run
    (`as_dict`'s viewer), as the download_url: whoever holds the URL has the file."""
    if row["kind"] != "export" or row["state"] != DONE:
        return {}
    key = (loads(row["summary"]) or {}).get("stored_key")
    store = storage_mod.current()
    if not key or store.kind == "local":
        return {}
    return {"direct_url": store.presigned_url(key)}


async def export_download(project: Project, run_id: int, user: User) -> tuple[object, str, str]:
    """(store, key, name to save it as) of a finished export, for the user who started it: the copy the run
    kept in the store (portal/storage), exactly what it wrote, even after later exports replaced the export
    path. Runs from before that copy existed fall back to their backup copy, then to the export path while
    its MD5 is still the run's (both served through a local store of their folder)."""
    run = await get(project, run_id)
    if run["kind"] != "export" or run["state"] != DONE:
        raise NotFound(f"Run {run_id} of '{project.name}' is not a finished export; there is no file to download.",
                       "file_not_found")
    if not run["username"] or run["username"] != user.username:
        raise PermissionDenied("Only the person who started this export may download its file; start an export "
                               "of your own.", "not_your_export")
    s = run["summary"]
    name = Path(s.get("path") or run["path"]).name
    store = storage_mod.current()
    if s.get("stored_key") and await asyncio.to_thread(store.exists, s["stored_key"]):
        return store, s["stored_key"], name
    for candidate, check in ((s.get("backup"), False), (s.get("path") or run["path"], True)):
        path = Path(candidate) if candidate else None
        if path is not None and path.is_file() and (not check or await asyncio.to_thread(md5_of, path) == s.get("md5")):
            return storage_mod.open_store(str(path.parent)), path.name, name
    raise NotFound(f"The file of export {run_id} is no longer kept (a newer export replaced it and its backup was "
                   "pruned); export again.", "file_not_found")


async def get(project: Project, run_id: int, viewer: str = "") -> dict:
    row = await SyncRun.select().where((SyncRun.id == run_id) & (SyncRun.project == project.id)).first()
    if row is None:
        raise NotFound(f"Project '{project.name}' has no import/export run {run_id}.", "run_not_found")
    return as_dict(row, project.name, viewer)


async def history(project: Project, limit: int = 100, viewer: str = "") -> list[dict]:
    rows = await SyncRun.select().where(SyncRun.project == project.id).order_by(SyncRun.id, ascending=False).limit(limit)
    return [as_dict(r, project.name, viewer) for r in rows]


# Progress of the runs executing in this process: what an import's transaction cannot show yet on SQLite.
LIVE: dict[int, tuple[str, int, int]] = {}


class Progress:
    """Writes a run's phase and counts, at most twice a second; `also` (the CLI's bar) sees every update.

    Inside an import's transaction the row is written on a connection of its own (PostgreSQL), so others
    see it before the commit; SQLite has one writer, the transaction, so there the progress is kept in
    this process (`LIVE`), which is the web process when the queue runs embedded in `lightbox serve`."""

    def __init__(self, run_id: int, also=None):
        self.run_id, self.also, self._last = run_id, also, 0.0

    async def __call__(self, phase: str, done: int, total: int) -> None:
        if self.also:
            self.also(phase, done, total)
        LIVE[self.run_id] = (phase[:32], done, total)
        now = time.monotonic()
        if now - self._last < 0.5 and done < total:
            return
        self._last = now
        engine = SyncRun._meta.db
        in_transaction = engine.current_transaction.get() is not None
        if in_transaction and isinstance(engine, SQLiteEngine):
            return
        token = engine.current_transaction.set(None) if in_transaction else None
        try:
            await SyncRun.update({SyncRun.phase: phase[:32], SyncRun.done: done, SyncRun.total: total}).where(
                SyncRun.id == self.run_id)
        finally:
            if token is not None:
                engine.current_transaction.reset(token)


async def refuse_if_merging(project: Project) -> None:
    """Two imports into one project at once could each add what the other adds: one waits for the other."""
    busy = await SyncRun.select(SyncRun.kind, SyncRun.state).where(
        (SyncRun.project == project.id) & SyncRun.kind.is_in(list(MERGING)) & SyncRun.state.is_in(list(ACTIVE))).first()
    if busy:
        raise Conflict(f"An {busy['kind']} of project '{project.name}' is {busy['state']}; start this one when it "
                       "has finished (see the sync history).", "import_running")


async def _overtaken(run: SyncRun) -> dict | None:
    """Another import or sync of the project that started running before `run` and has not finished."""
    mine = await SyncRun.select(SyncRun.started_at).where(SyncRun.id == run.id).first()
    for other in await SyncRun.select(SyncRun.id, SyncRun.kind, SyncRun.started_at).where(
            (SyncRun.project == run.project) & (SyncRun.id != run.id) & SyncRun.kind.is_in(list(MERGING))
            & (SyncRun.state == RUNNING)):
        if (other["started_at"], other["id"]) < (mine["started_at"], run.id):
            return other
    return None


async def execute(run_id: int, *, also=None, worker: str = "") -> dict:
    """Do the run's work; it ends done (with a summary) or failed (with a message and, for a refused import,
    every problem). Never raises for the work's own failures. `worker` names the process (restart recovery)."""
    row = await SyncRun.objects().get(SyncRun.id == run_id)
    if row is None or row.state != QUEUED:
        return {}
    project = await Project.objects().get(Project.id == row.project)
    claimed = await SyncRun.update({SyncRun.state: RUNNING, SyncRun.started_at: clock.now(),
                                    SyncRun.worker: worker[:100]}).where(
        (SyncRun.id == run_id) & (SyncRun.state == QUEUED)).returning(SyncRun.id)
    if not claimed:  # a second message for the run: another worker has it
        return {}
    progress = Progress(run_id, also)
    options = loads(row.options) or {}
    who = {"username": row.username}
    changes: dict = {}
    try:
        if row.kind in MERGING and (other := await _overtaken(row)):
            raise Conflict(f"Not started: {other['kind']} run {other['id']} of this project is running; imports "
                           "into one project run one at a time. Start it again when that one has finished.",
                           "import_running")
        if row.kind == "export":
            result = await export_mod.export(project, fmt=row.format or None, to=row.path or None,
                                             deidentify=bool(options.get("deidentify")),
                                             remap_uids=bool(options.get("remap_uids")),
                                             shift_dates=bool(options.get("shift_dates")),
                                             clean_descriptors=bool(options.get("clean_descriptors")),
                                             on_progress=progress, **who)
            changes = {SyncRun.summary: result.as_dict(), SyncRun.path: result.path, SyncRun.format: result.format}
        elif row.kind == "import":
            path = row.path or str(export_mod.import_file_path(project))
            counts = await importer.import_file(path, project, on_progress=progress,
                                                confined=await _confined(row, options), **who)
            changes = {SyncRun.summary: counts, SyncRun.path: path, SyncRun.format: counts.get("format", "")}
        else:
            summary = await sync.cycle(project, on_progress=progress, **who)
            changes = {SyncRun.summary: summary, SyncRun.path: summary["path"], SyncRun.format: summary["format"]}
        changes.update({SyncRun.state: DONE, SyncRun.message: _message(row.kind, changes[SyncRun.summary])})
    except importer.ImportRefused as exc:
        changes = {SyncRun.state: FAILED, SyncRun.message: exc.detail, SyncRun.format: getattr(exc, "format", ""),
                   SyncRun.problems: [p.as_dict() for p in exc.problems],
                   SyncRun.summary: {"problem_count": exc.count, **getattr(exc, "summary", {})}}
    except LightboxError as exc:
        changes = {SyncRun.state: FAILED, SyncRun.message: exc.detail}
    except Exception as exc:  # recorded for the history page; the worker carries on
        log.exception("%s run %s failed", row.kind, run_id)
        changes = {SyncRun.state: FAILED, SyncRun.message: f"{type(exc).__name__}: {exc}"}
    changes[SyncRun.finished_at] = clock.now()
    changes[SyncRun.phase] = ""
    await SyncRun.update(changes).where(SyncRun.id == run_id)
    LIVE.pop(run_id, None)
    if options.get("upload"):
        _remove_upload(row.path)
    return await get(project, run_id)


def _uploads() -> Path:
    from portal import settings as settings_mod

    return (settings_mod.current().data_dir / "imports").resolve()


async def _confined(row: SyncRun, options: dict) -> bool:
    """Whether the import may only read files in its own and the project's folders: an uploaded file, or a
    run started by someone who is not an administrator (the CLI is run by whoever runs the server)."""
    if options.get("upload") or (row.path and _uploads() in Path(row.path).resolve().parents):
        return True
    if row.trigger == "cli":
        return False
    runner = await User.objects().get(User.username == row.username) if row.username else None
    return not (runner is not None and runner.is_admin)


def _remove_upload(path: str) -> None:
    """A file uploaded for one import is not kept once that import has run: only the folder made for it
    (data/imports/<uuid>/), never anything else under data/imports."""
    folder = Path(path).resolve().parent if path else None
    if folder is not None and folder.parent == _uploads() and re.fullmatch(r"[0-9a-f]{32}", folder.name):
        shutil.rmtree(folder, ignore_errors=True)


async def fail_stale(now: dt.datetime | None = None) -> int:
    """Mark runs whose worker went away (queued or running for longer than STALE) as failed."""
    cutoff = (now or clock.now()) - STALE
    stale = await SyncRun.select(SyncRun.id).where(SyncRun.state.is_in(list(ACTIVE)) & (SyncRun.queued_at < cutoff))
    for chunk in db.chunks([r["id"] for r in stale]):
        await SyncRun.update({SyncRun.state: FAILED, SyncRun.finished_at: clock.now(), SyncRun.phase: "",
                              SyncRun.message: "The run stopped without finishing (its worker was stopped); "
                                               "nothing was changed by an unfinished import."}).where(
            SyncRun.id.is_in(chunk))
    return len(stale)


async def interrupted(is_dead) -> list[int]:
    """Runs whose worker process is known to be gone (`is_dead(worker)`: this machine's previous run crashed or
    was killed). A queued run's is queued again at once (an unfinished import changed nothing), returned for
    the caller to enqueue; one started from the command line is marked failed (nobody waits for it now)."""
    rows = await SyncRun.select(SyncRun.id, SyncRun.trigger, SyncRun.worker).where(
        (SyncRun.state == RUNNING) & (SyncRun.worker != ""))
    again = []
    for r in rows:
        if not is_dead(r["worker"]):
            continue
        LIVE.pop(r["id"], None)
        if r["trigger"] == "cli":
            await SyncRun.update({SyncRun.state: FAILED, SyncRun.finished_at: clock.now(), SyncRun.phase: "",
                                  SyncRun.message: "The command stopped without finishing; nothing was changed by an "
                                                   "unfinished import."}).where(SyncRun.id == r["id"])
            continue
        await SyncRun.update({SyncRun.state: QUEUED, SyncRun.started_at: None, SyncRun.phase: "", SyncRun.done: 0,
                              SyncRun.total: 0, SyncRun.worker: ""}).where(
            (SyncRun.id == r["id"]) & (SyncRun.state == RUNNING))
        again.append(r["id"])
    return again


async def fail_running(run_id: int, reason: str) -> None:
    """A running run whose process died under it (its child process, say): failed, with the reason."""
    await SyncRun.update({SyncRun.state: FAILED, SyncRun.finished_at: clock.now(), SyncRun.phase: "",
                          SyncRun.message: reason[:500]}).where((SyncRun.id == run_id) & (SyncRun.state == RUNNING))
    LIVE.pop(run_id, None)


def _message(kind: str, s: dict) -> str:
    if kind == "export":
        return (f"Exported {s['frames']} frame(s) in {s['scans']} scan(s), {s['decisions']} decision(s) and "
                f"{s['submissions']} form submission(s) to {Path(s['path']).name}."
                + (f" Warning: {s['missing_files']} stored file(s) are missing from the disk (listed in the "
                   "export's missing_files)." if s.get("missing_files") else "")
                + (f" The file had been changed since Lightbox last wrote it; that version was kept as "
                   f"{Path(s['incoming_backup']).name} in its backups folder (not imported)."
                   if s.get("incoming_backup") else ""))
    imported = s.get("import") if kind == "sync" else s
    text = (f"{imported['frames_added']} new frame(s), {imported['decisions_added']} new decision(s), "
            f"{imported['submissions_added']} new form submission(s); {imported['frames_existing']} frame(s) "
            f"were already here.") if imported else ""
    if kind == "sync":
        incoming = s.get("incoming")
        return ((f"Imported changes from the repository: {incoming['frames_added']} new frame(s), "
                 f"{incoming['decisions_added']} new decision(s). " if incoming else "No changes from the repository. ")
                + f"Exported {s['export']['frames']} frame(s); re-import check: {text}")
    return "Imported: " + text


async def has_active(project: Project) -> bool:
    return await SyncRun.exists().where((SyncRun.project == project.id) & SyncRun.state.is_in(list(ACTIVE)))


async def last_export_md5(project: Project, path: str) -> str:
    """The MD5 of the file the newest finished export or sync of `project` wrote at `path` ("" if none)."""
    rows = await SyncRun.select(SyncRun.kind, SyncRun.summary, SyncRun.path).where(
        (SyncRun.project == project.id) & (SyncRun.state == DONE) & SyncRun.kind.is_in(["export", "sync"])).order_by(
        SyncRun.id, ascending=False).limit(20)
    for r in rows:
        s = loads(r["summary"]) or {}
        s = s.get("export", s) if r["kind"] == "sync" else s
        if s.get("path") == path and not s.get("deidentified"):
            return s.get("md5", "")
    return ""


def schedule_of(project: Project) -> int:
    return int(projects.settings_of(project)["sync_every_minutes"] or 0)
