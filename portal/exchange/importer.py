"""Import: validate the whole file first and report every problem with its row, changing nothing; then merge it
into the project in one transaction.

Merging never removes anything. New frames go through the one ingest path (from their file_location, relative
paths resolved against the import file's folder); frames already stored stay as they are; decisions merge on
(series, creator, created to the second), form submissions on (series, form version, creator, created), AI
results on (series, model, version, finished).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from piccolo.engine.postgres import PostgresEngine

from portal import audit, clock, db, projects, settings as settings_mod, storage as storage_mod
from portal.archive import ingest as ingest_mod
from portal.archive import volumes
from portal.dicom import DicomRejected, md5_of, read_instance
from portal.errors import Invalid
from portal.exchange import csvformat, exporter, jsonformat
from portal.exchange.records import MAX_PROBLEMS, Parsed, Problem, loads, second
from portal.forms.schema import check_definition
from portal.review.decisions import status_after
from portal.tables import (Archive, Decision, FormDefinition, FormSubmission, InferenceJob, Instance, Membership,
                           Project, Result, Series, User)

MAX_BYTES = 512 * 1024**2  # a bigger file is refused before it is read
BATCH = 200


class ImportRefused(Invalid):
    """The file was not imported; `problems` says what and where. Nothing was changed."""

    def __init__(self, problems: list[Problem], path: str = "", count: int = 0):
        shown = problems[:MAX_PROBLEMS]
        count = max(count, len(problems))
        more = f" (the first {MAX_PROBLEMS} are listed)" if count > len(shown) else ""
        first = shown[0]
        name = Path(path).name if path else "The file"
        super().__init__(f"{name} was not imported: {count} problem(s){more}; nothing was changed. "
                         f"First: {_where(first)}{first.problem}", "import_refused")
        self.problems = shown
        self.count = count

    def as_dict(self) -> dict:
        return {**super().as_dict(), "problems": [p.as_dict() for p in self.problems], "problem_count": self.count}


def _where(p: Problem) -> str:
    row = f"row {p.row}" if p.row.isdigit() else p.row
    return f"{row}{' (' + p.field + ')' if p.field else ''}: " if row or p.field else ""


@dataclass
class Plan:
    """A validated import: what will be added."""

    parsed: Parsed
    base: Path
    new_files: dict = field(default_factory=dict)  # resolved path -> archive name
    instances: dict = field(default_factory=dict)  # resolved path -> its ParsedInstance (new files)
    volumes: dict = field(default_factory=dict)  # resolved path -> its volumes.Converted, without bytes (new volumes)
    scan_series: dict = field(default_factory=dict)  # (experiment, scan) -> SeriesInstanceUID
    series_sets: dict = field(default_factory=dict)  # (experiment, scan) -> the series its frames are in
    frames: int = 0
    existing_frames: int = 0
    guard: "_Guard | None" = None
    scratch: Path | None = None  # local copies of s3:// frames from outside this install's store (removed after)


# Said for every file a confined import may not read, whether it exists or not: the message must not tell
# someone without access to the server's disk what is there.
NOT_ALLOWED = "File not found, or not in a folder this import may read"


class _Guard:
    """Which files an import may ingest.

    Never another project's stored files (the image store holds every project's images) nor files in a
    folder that only other projects export to. A confined import may besides only read under the import
    file's own folder and this project's export and import folders (set by an administrator)."""

    def __init__(self, allowed: list[Path] | None, folders: list[tuple[Path, bool]]):
        self.allowed, self.folders = allowed, folders

    @classmethod
    async def make(cls, project: Project, path: Path, confined: bool) -> "_Guard":
        def folders_of(p: Project) -> set[Path]:
            return {exporter.export_file(p)[0].parent, exporter.import_file_path(p).parent}

        own = folders_of(project) | {path.parent}
        folders = [(f, True) for f in own]
        for other in await Project.objects().where(Project.id != project.id):
            folders += [(f, False) for f in folders_of(other) - own]
        allowed = sorted(own) if confined else None
        return cls(allowed, folders)

    def refusal(self, real: Path, stored: bool, own_stored: bool) -> str:
        """Why `real` (resolved, symlinks followed; `stored`: a file of an image store on this disk) may not
        be read; "" when it may."""
        if stored:
            return "" if own_stored else "it is in the image store but not one of this project's stored files"
        # The deepest export/import folder holding the file decides: one shared with this project is fine.
        holders = [(len(f.parts), mine) for f, mine in self.folders if f in real.parents]
        deepest = max((n for n, _ in holders), default=0)
        if holders and not any(mine for n, mine in holders if n == deepest):
            return "it is in another project's export folder"
        if self.allowed is not None and not any(a in real.parents for a in self.allowed):
            return "it is outside the import file's folder and this project's export and import folders"
        return ""


def read(path: Path, project: Project) -> Parsed:
    """Parse the file (format detected from its content) into records; problems are collected, not raised."""
    conf = projects.settings_of(project)
    parsed = Parsed(format="")
    try:
        size = path.stat().st_size
    except OSError:
        parsed.problem("", "path", f"There is no file at {path}.")
        return parsed
    if not path.is_file():
        parsed.problem("", "path", f"{path} is not a file.")
        return parsed
    if size > MAX_BYTES:
        parsed.problem("", "", f"The file is {size / 1024**2:.0f} MB; imports are limited to "
                       f"{MAX_BYTES / 1024**2:.0f} MB. Split it into several files.")
        return parsed
    raw = path.read_bytes()
    head = raw[:8192]
    if b"\x00" in head:
        parsed.problem("", "", "This is not a CSV or JSON file (it contains binary data).")
        return parsed
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        parsed.problem("", "", f"This is not a CSV or JSON file: it is not UTF-8 text (byte {exc.start}).")
        return parsed
    artifacts = conf["artifacts"]
    if text.lstrip()[:1] in ("{", "["):
        parsed.format = "json"
        jsonformat.read(text, parsed, artifacts)
    else:
        parsed.format = "csv"
        first = text.lstrip().split("\n", 1)[0]
        if "," not in first:
            parsed.problem("1", "header", "This is not a CSV or JSON file: the first line has no commas and is not "
                           "JSON. A CSV starts with MIQA's header: " + ", ".join(csvformat.COLUMNS) + ".")
            return parsed
        csvformat.read(text, parsed, artifacts)
    return parsed


async def validate(path: str | Path, project: Project, on_progress=None, *, confined: bool = False) -> Plan:
    """Check everything the import needs; ImportRefused lists every problem. Reads, never writes.

    `confined` (an uploaded file, or a run started by someone who is not an administrator): frames may only
    name files in the import file's folder or the project's own export/import folders (see `_Guard`)."""
    path = Path(path).expanduser().resolve()
    parsed = await asyncio.to_thread(read, path, project)
    plan = Plan(parsed=parsed, base=path.parent)
    plan.guard = await _Guard.make(project, path, confined)
    if parsed.problems and not (parsed.frames or parsed.decisions):
        raise _refused(parsed, path)
    for name, rows in parsed.project_names.items():
        if name != project.name:
            for row in rows:
                parsed.problem(row, "project_name", f"This row is for project '{name[:64]}', not '{project.name}'.")
    conf = projects.settings_of(project)
    codes = [d["code"] for d in conf["decisions"]]
    for d in parsed.decisions:
        if d.code not in codes:
            parsed.problem(d.row, "decision", f"Unknown decision code '{d.code[:16]}'; this project's codes: "
                           f"{', '.join(codes)}.")
    try:
        await _resolve_frames(plan, project, conf, on_progress)
        await _check_scans(plan, project)
        await _check_forms(plan)
        if parsed.problems:
            raise _refused(parsed, path)
    except BaseException:
        if plan.scratch is not None:
            shutil.rmtree(plan.scratch, ignore_errors=True)
        raise
    return plan


def _refused(parsed: Parsed, path: Path) -> ImportRefused:
    exc = ImportRefused(parsed.problems, str(path), parsed.problem_count)
    exc.format = parsed.format
    return exc


def _s3_refusal(store, key: str | None, confined: bool) -> str:
    """Why an s3:// frame that is none of this project's stored files may not be read; "" when it may."""
    if store.kind != "s3":
        return "this install stores its files on local disk; name the file by a path the server can read"
    if key is not None:
        return "it is in the image store but not one of this project's stored files"
    return "an uploaded import names files in its own folders only" if confined else ""


def _fetch_s3(plan: Plan, store, uri: str, n: int) -> Path:
    """A local copy of `uri` (s3://BUCKET/KEY on this install's S3 endpoint, with its credentials)."""
    from urllib.parse import urlparse

    from portal.storage import s3 as s3_mod

    u = urlparse(uri)
    other = s3_mod.S3Store(f"s3://{u.netloc}?endpoint={store.endpoint}" if store.endpoint else f"s3://{u.netloc}")
    if plan.scratch is None:
        plan.scratch = Path(tempfile.mkdtemp(prefix="lightbox-import-s3-", dir=_scratch_root()))
    dest = plan.scratch / f"{n}.dcm"
    try:
        with open(dest, "wb") as out:
            for block in other.iter_bytes(u.path.lstrip("/"), 8 << 20):
                out.write(block)
    except FileNotFoundError as exc:
        raise OSError("no such object") from exc
    return dest


def _scratch_root() -> Path:
    root = settings_mod.current().data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


async def _resolve_frames(plan: Plan, project: Project, conf: dict, on_progress) -> None:
    """Find each frame's file; know its series (from the store, or by reading the file's header)."""
    parsed = plan.parsed
    key_on_disk = storage_mod.local_key_finder()
    store = ingest_mod.storage()
    rows = await Instance.select(Instance.file_key, Instance.sop_instance_uid, Instance.md5,
                                 Instance.series.series_instance_uid).where(Instance.project == project.id)
    by_key = {r["file_key"]: r for r in rows}
    by_sop = {r["sop_instance_uid"]: r for r in rows}
    seen_paths: dict[Path, str] = {}
    frame_at: dict[Path, object] = {}
    series_of_path: dict[Path, str] = {}
    total = len(parsed.frames)
    for n, frame in enumerate(parsed.frames, 1):
        if on_progress and n % 1000 == 0:
            await on_progress("checking files", n, total)
        if frame.file_location.startswith("s3://"):
            confined = plan.guard.allowed is not None
            # An object this install's store gave out (an export of an install on S3): known by its key.
            key = store.key_of_uri(frame.file_location) if store.kind == "s3" else None
            known = by_key.get(key) if key else None
            if known is None:
                why = _s3_refusal(store, key, confined)
                if why:
                    parsed.problem(frame.row, "file_location", f"{NOT_ALLOWED}: {frame.file_location}." if confined
                                   else f"{frame.file_location[:200]} may not be imported: {why}.")
                    continue
                # Another install's object on the same S3 endpoint (an administrator's import): read like a
                # file, from a local copy.
                try:
                    full = await asyncio.to_thread(_fetch_s3, plan, store, frame.file_location, n)
                except (OSError, Invalid) as exc:
                    parsed.problem(frame.row, "file_location", f"Cannot read {frame.file_location[:200]}: {exc}.")
                    continue
                seen_paths[full] = frame.row
                plan.new_files[full] = frame.archive
                frame.file_location = str(full)
                continue
            full = Path(frame.file_location)
            if full in seen_paths:
                parsed.problem(frame.row, "file_location", f"Duplicate row: the same file as row {seen_paths[full]}.")
                continue
            seen_paths[full] = frame.row
            plan.existing_frames += 1
            series_of_path[full] = known["series.series_instance_uid"]
            frame.file_location = str(full)
            continue
        location = Path(frame.file_location).expanduser()
        full = location if location.is_absolute() else plan.base / location
        try:
            full = full.resolve()  # symlinks followed: what is checked is what is read
        except (OSError, RuntimeError):
            full = Path(os.path.normpath(full))
        if full in seen_paths:
            parsed.problem(frame.row, "file_location", f"Duplicate row: the same file as row {seen_paths[full]}.")
            continue
        seen_paths[full] = frame.row
        frame_at[full] = frame
        known = own_stored = None
        confined = plan.guard.allowed is not None
        try:
            stored_key = key_on_disk(full)
            if stored_key is not None:
                known = own_stored = by_key.get(stored_key)
            if known is None and frame.sop_instance_uid and frame.md5:
                candidate = by_sop.get(frame.sop_instance_uid)
                known = candidate if candidate and candidate["md5"] == frame.md5 else None
            why = plan.guard.refusal(full, stored_key is not None, own_stored is not None)
            if why:
                parsed.problem(frame.row, "file_location", f"{NOT_ALLOWED}: {frame.file_location}." if confined
                               else f"{full} may not be imported: {why}.")
                continue
            if not full.is_file():
                parsed.problem(frame.row, "file_location", f"{NOT_ALLOWED}: {frame.file_location}." if confined
                               else f"File not found: {full}"
                               + ("" if location.is_absolute() else f" (relative to {plan.base})") + ".")
                continue
        except OSError as exc:
            parsed.problem(frame.row, "file_location", f"{NOT_ALLOWED}: {frame.file_location}." if confined
                           else f"Cannot read {full}: {exc.strerror}.")
            continue
        if known is not None:
            plan.existing_frames += 1
            series_of_path[full] = known["series.series_instance_uid"]
        else:
            plan.new_files[full] = frame.archive
        frame.file_location = str(full)
    if on_progress and total:
        await on_progress("checking files", total, total)
    # New files: read their headers (and MD5, for conflicts) in threads.
    done = 0
    new_total = len(plan.new_files)

    async def inspect_volume(p: Path):
        # A NIfTI/MGZ/NRRD volume: converted now to know its images (and refused now if it cannot be), again
        # when placed, so that the plan does not hold every volume's images in memory.
        conv = await asyncio.to_thread(volumes.prepare, project, volumes.scan_of_frame(frame_at[p]), p)
        if isinstance(conv, DicomRejected):
            return p, None, conv.detail
        first = conv.reads[0].parsed
        if all((by_sop.get(r.parsed.sop_instance_uid) or {}).get("md5") == r.md5 for r in conv.reads):
            return p, first, "same"
        if not first.patient_id.strip() and conf["missing_patient_id"] == "reject":
            return p, None, "it has no subject_id (PatientID) and this project rejects such files."
        plan.volumes[p] = conv.light()
        return p, first, ""

    async def inspect(p: Path):
        if volumes.volume_format(p.name):
            return await inspect_volume(p)
        try:
            parsed_instance = await asyncio.to_thread(read_instance, p)
        except DicomRejected as exc:
            return p, None, exc.detail
        except OSError as exc:
            return p, None, f"cannot read it: {exc.strerror}"
        existing = by_sop.get(parsed_instance.sop_instance_uid)
        if existing is not None:
            md5 = await asyncio.to_thread(md5_of, p)
            if md5 == existing["md5"]:
                return p, parsed_instance, "same"
            if not conf["allow_overwrite"]:
                return p, None, (f"SOP Instance UID {parsed_instance.sop_instance_uid} is already stored with "
                                 "other content (this project does not allow overwriting).")
        if not parsed_instance.patient_id.strip() and conf["missing_patient_id"] == "reject":
            # What ingest would refuse half-way through the import: said now, with every other problem.
            return p, None, "it has no PatientID and this project rejects such files."
        return p, parsed_instance, ""

    files = list(plan.new_files)
    new_sops: dict[str, Path] = {}
    for start in range(0, len(files), 16):
        for p, info, why in await asyncio.gather(*(inspect(p) for p in files[start:start + 16])):
            done += 1
            if info is None:
                parsed.problem(seen_paths[p], "file_location", f"{p}: {why}")
                plan.new_files.pop(p, None)
                plan.volumes.pop(p, None)
                continue
            if why != "same" and info.sop_instance_uid in new_sops:
                parsed.problem(seen_paths[p], "file_location", f"{p} has the SOP Instance UID of "
                               f"{new_sops[info.sop_instance_uid]} (row {seen_paths[new_sops[info.sop_instance_uid]]}).")
                continue
            new_sops.setdefault(info.sop_instance_uid, p)
            if why == "same":
                plan.new_files.pop(p, None)
                plan.existing_frames += 1
            else:
                plan.instances[p] = info
            series_of_path[p] = info.series_instance_uid
        if on_progress:
            await on_progress("reading new images", done, new_total)
    plan.frames = len(parsed.frames)
    # Scans → series.
    series_sets: dict[tuple, set] = {}
    for frame in parsed.frames:
        uid = series_of_path.get(Path(frame.file_location))
        if uid:
            series_sets.setdefault((frame.experiment, frame.scan), set()).add(uid)
    plan.series_sets = series_sets


async def _check_scans(plan: Plan, project: Project) -> None:
    """Decisions, submissions and AI results each need their scan to be exactly one DICOM series."""
    parsed = plan.parsed
    sets = plan.series_sets
    needed = {}
    for item in [*parsed.decisions, *parsed.submissions, *parsed.ai]:
        needed.setdefault((item.experiment, item.scan), item.row)
    known_uids = None
    for key, row in needed.items():
        uids = sets.get(key, set())
        if len(uids) == 1:
            plan.scan_series[key] = next(iter(uids))
        elif len(uids) > 1:
            parsed.problem(row, "scan_name", f"The frames of scan '{key[1]}' come from {len(uids)} DICOM series; "
                           "a decision belongs to one series.")
        else:
            if known_uids is None:
                known_uids = set(await Series.select(Series.series_instance_uid).where(
                    Series.project == project.id).output(as_list=True))
            if key[1] in known_uids:
                plan.scan_series[key] = key[1]
            elif not any(p.row == row for p in parsed.problems):
                parsed.problem(row, "scan_name", f"Scan '{key[1]}' has no frames in the file and no series with that "
                               "UID is in the project.")


async def _check_forms(plan: Plan) -> None:
    parsed = plan.parsed
    wanted = {(s.form, s.form_version): s.row for s in parsed.submissions}
    if not wanted:
        return
    stored = {}
    for chunk in db.chunks(sorted({n for n, _ in wanted})):
        stored.update({(r["name"], r["version"]): r for r in await FormDefinition.select().where(
            FormDefinition.name.is_in(chunk))})
    for (name, version), row in wanted.items():
        if (name, version) in stored:
            given = parsed.forms.get((name, version))
            if given and given["fields"] != (loads(stored[(name, version)]["fields"]) or []):
                parsed.problem(row, "form", f"Form '{name}' version {version} here differs from the one stored; "
                               "save it under another name or version.")
            continue
        given = parsed.forms.get((name, version))
        if given is None:
            parsed.problem(row, "form", f"Form '{name}' version {version} is neither in the file's \"forms\" nor "
                           "stored here.")
            continue
        try:
            check_definition({k: given[k] for k in ("name", "title", "description", "fields")})
        except Invalid as exc:
            parsed.problem(row, "form", f"Form '{name}' version {version} is not valid: {exc.detail}")


# New series met inside the import's transaction: their hooks (queueing AI) run once it commits, since a
# worker could not see the series before, and must not hear of series a rollback removes.
_DEFERRED: contextvars.ContextVar[list | None] = contextvars.ContextVar("exchange_deferred_hooks", default=None)


def _deferring(hook):
    def wrapper(project, series_id):
        pending = _DEFERRED.get()
        if pending is None:
            hook(project, series_id)
        else:
            pending.append(lambda: hook(project, series_id))

    wrapper.deferring = True
    return wrapper


def _defer_new_series_hooks() -> None:
    hooks = ingest_mod.new_series_hooks
    hooks[:] = [h if getattr(h, "deferring", False) else _deferring(h) for h in hooks]


async def apply(plan: Plan, project: Project, on_progress=None) -> dict:
    """Merge a validated plan: its new images are placed in the store first, then every row goes in one short
    transaction. All or nothing: when anything fails, the rows roll back and the images placed for it are
    removed again. Returns counts of what was added."""
    _defer_new_series_hooks()
    pending: list = []  # run once committed: new-series hooks, and deleting the files overwritten frames replace
    placed: dict[Path, tuple[str, int, str]] = {}  # path -> (file key, size, md5)
    owned: list[str] = []  # keys this import wrote (not there before): removed again on failure
    token = _DEFERRED.set(pending)
    try:
        await _place(plan, project, placed, owned, on_progress)
        counts = await _apply(plan, project, placed, on_progress)
    except BaseException:
        await _remove_unused(owned)
        raise
    finally:
        _DEFERRED.reset(token)
    for call in pending:  # committed: now workers can see these series, and the replaced files are unused
        call()
    return counts


async def _place(plan: Plan, project: Project, placed: dict, owned: list, on_progress=None) -> None:
    """Write each new image into the store (hash, temp file, fsync, rename), outside any transaction, so that
    other writers are not kept waiting while an import copies its files."""
    store = ingest_mod.storage()

    def place_volume(path: Path) -> None:
        planned = plan.volumes[path]
        conv = volumes.prepare(project, planned.scan, path)
        if isinstance(conv, DicomRejected) or conv.md5 != planned.md5:
            raise ImportRefused([Problem(_row_of(plan.parsed, path), "file_location",
                                         f"{path} changed while it was being imported; import again.")])
        slices = volumes.place_slices(project, conv)
        owned.extend(key for _, key, new in slices if new)
        volume_key = volumes._volume_file_key(project, conv)
        if not store.exists(volume_key):
            volumes.place_volume(project, conv)
            owned.append(volume_key)
        placed[path] = ("volume", conv.light(), [(r.parsed, key, r.size, r.md5) for r, key, _ in slices], volume_key)

    def place(path: Path) -> None:
        if path in plan.volumes:
            return place_volume(path)
        md5 = md5_of(path)
        # The key ingest gives it: content-addressed per project, so a conflicting file never overwrites.
        key = store.key_for(f"{project.id}/{plan.instances[path].sop_instance_uid}/{md5}")
        if store.exists(key):
            placed[path] = (key, store.size(key), md5)
            return
        stored = store.put(path, key)
        owned.append(key)
        placed[path] = (key, stored.size, md5)

    paths = list(plan.new_files)
    for start in range(0, len(paths), 8):
        await asyncio.gather(*(asyncio.to_thread(place, p) for p in paths[start:start + 8]))
        if on_progress:
            await on_progress("placing images", min(start + 8, len(paths)), len(paths))


async def _remove_unused(keys: list[str]) -> None:
    """Delete the files of `keys` that no instance row names (a failed import's; one that a concurrent
    ingest of the same content has since committed stays)."""
    if not keys:
        return
    used: set[str] = set()
    for chunk in db.chunks(sorted(set(keys))):
        used.update(await Instance.select(Instance.file_key).where(Instance.file_key.is_in(chunk)).output(
            as_list=True))
    store = ingest_mod.storage()
    for key in set(keys) - used:
        await asyncio.to_thread(store.delete, key)


async def _apply(plan: Plan, project: Project, placed: dict, on_progress=None) -> dict:
    parsed = plan.parsed
    counts = {"frames": plan.frames, "frames_added": 0, "frames_existing": plan.existing_frames,
              "decisions_added": 0, "decisions_existing": 0, "submissions_added": 0, "submissions_existing": 0,
              "ai_results_added": 0, "forms_added": 0}
    async with db.write_transaction():
        if isinstance(Project._meta.db, PostgresEngine):
            # Held until the commit: a second import into the project (a sync beside a manual one) waits here,
            # then reads the decisions this one added instead of adding them again.
            await Project.raw("SELECT pg_advisory_xact_lock({})", project.id)
        archives = {a.name: a for a in await Archive.objects().where(Archive.project == project.id)}
        total = len(plan.new_files)
        for n, (path, archive_name) in enumerate(plan.new_files.items(), 1):
            archive = archives.get(archive_name or projects.DEFAULT_ARCHIVE)
            if archive is None:
                archive = Archive(project=project.id, name=archive_name, created_at=clock.now())
                await archive.save()
                archives[archive_name] = archive
            if path in plan.volumes:
                counts["frames_added"] += await _apply_volume(project, archive, placed[path], path)
                continue
            key, size, md5 = placed[path]
            result = await ingest_mod.record_placed(project, archive, plan.instances[path], key, size, md5,
                                                    filename=path.name, after_commit=_DEFERRED.get())
            if not result.ok:
                raise ImportRefused([Problem(_row_of(parsed, path), "file_location",
                                             f"{path}: {result.status}: {result.reason}")])
            counts["frames_added"] += result.status == ingest_mod.STORED
            if on_progress and (n % 200 == 0 or n == total):
                await on_progress("adding images", n, total)
        series_ids = {r["series_instance_uid"]: r["id"] for r in await Series.select(
            Series.id, Series.series_instance_uid).where(Series.project == project.id)}
        users = {u["username"]: u["id"] for u in await User.select(User.id, User.username, User.is_admin)}
        admins = set(await User.select(User.username).where(User.is_admin == True).output(as_list=True))  # noqa: E712
        roles = {r["user.username"]: r["role"] for r in await Membership.select(
            Membership.user.username, Membership.role).where(Membership.project == project.id)}
        touched = await _decisions(plan, project, series_ids, users, admins, roles, counts)
        await _review_status(touched)
        await _submissions(plan, project, series_ids, users, counts)
        await _ai(plan, project, series_ids, counts)
    return counts


async def _apply_volume(project: Project, archive: Archive, placed: tuple, path: Path) -> int:
    """The rows of a placed volume's images, then the volume's own row; 1 when anything was new."""
    _, conv, slices, volume_key = placed
    added = False
    for parsed_instance, key, size, md5 in slices:
        result = await ingest_mod.record_placed(project, archive, parsed_instance, key, size, md5,
                                                filename=path.name, after_commit=_DEFERRED.get())
        if not result.ok:
            raise ImportRefused([Problem("", "file_location", f"{path}: {result.status}: {result.reason}")])
        added = added or result.status == ingest_mod.STORED
    added = await volumes.record_source(project, conv, volume_key, after_commit=_DEFERRED.get()) or added
    return int(added)


def _row_of(parsed: Parsed, path: Path) -> str:
    return next((f.row for f in parsed.frames if f.file_location == str(path)), "")


async def _insert(table, rows: list) -> None:
    for start in range(0, len(rows), BATCH):
        await table.insert(*rows[start:start + BATCH])


def _merge(items: list, stored: list[tuple], key, content) -> tuple[list, int]:
    """What to add: merged on `key` (series, creator, created to the second).

    A key already stored is there, whatever the file says about it now. Only when one key holds several
    different entries (two decisions by one person on one series within a second) are they told apart by
    `content` as well, so that such a pair survives every round trip; identical repeats (a CSV repeats a
    scan's decision on each of its frames) count once.
    """
    in_file: dict[tuple, dict] = {}
    for item in items:
        in_file.setdefault(key(item), {}).setdefault(content(item), item)
    by_key: dict[tuple, list] = {}
    for k, c in stored:
        by_key.setdefault(k, []).append(c)
    add, existing = [], 0
    for k, entries in in_file.items():
        there = by_key.get(k, [])
        if len(entries) == 1:
            if there:
                existing += 1
            else:
                add.append((k, next(iter(entries.values()))))
            continue
        for c, item in entries.items():
            if c in there:
                there.remove(c)
                existing += 1
            else:
                add.append((k, item))
    return add, existing


async def _decisions(plan, project, series_ids, users, admins, roles, counts) -> set[int]:
    items = plan.parsed.decisions
    if not items:
        return set()

    def key(d):
        return series_ids[plan.scan_series[(d.experiment, d.scan)]], d.creator, second(d.created)

    sids = sorted({key(d)[0] for d in items})
    stored = []
    for start in range(0, len(sids), 500):
        for r in await Decision.select(Decision.series, Decision.username, Decision.created_at, Decision.code,
                                       Decision.note).where(Decision.series.is_in(sids[start:start + 500])):
            stored.append(((r["series"], r["username"], second(r["created_at"])), (r["code"], r["note"])))
    add, counts["decisions_existing"] = _merge(items, stored, key, lambda d: (d.code, d.note))
    rows = []
    for k, d in add:
        role = d.role if d.role is not None else ("admin" if d.creator in admins else roles.get(d.creator, ""))
        rows.append(Decision(project=project.id, series=k[0], user=users.get(d.creator), username=d.creator[:150],
                             role=role, code=d.code, note=d.note, artifacts=d.artifacts, location=d.location or {},
                             created_at=k[2]))
    await _insert(Decision, rows)
    counts["decisions_added"] = len(rows)
    return {r.series for r in rows}


async def _review_status(series: set[int]) -> None:
    """A series' review status follows its latest decision, whatever order decisions arrived in."""
    ids = sorted(series)
    for start in range(0, len(ids), 500):
        latest: dict[int, dict] = {}
        for r in await Decision.select(Decision.series, Decision.code, Decision.role).where(
                Decision.series.is_in(ids[start:start + 500])).order_by(Decision.created_at).order_by(Decision.id):
            latest[r["series"]] = r
        by_status: dict[str, list[int]] = {}
        for sid, r in latest.items():
            by_status.setdefault(status_after(r["code"], r["role"]), []).append(sid)
        for status, sids in by_status.items():
            await Series.update({Series.review_status: status}).where(Series.id.is_in(sids))


async def _submissions(plan, project, series_ids, users, counts) -> None:
    subs = plan.parsed.submissions
    if not subs:
        return
    form_ids = {}
    for name, version in sorted({(s.form, s.form_version) for s in subs}):
        row = await FormDefinition.select(FormDefinition.id).where(
            FormDefinition.key == f"{name}:{version}").first()
        if row is None:
            given = plan.parsed.forms[(name, version)]
            definition = check_definition({k: given[k] for k in ("name", "title", "description", "fields")})
            new = FormDefinition(key=f"{name}:{version}", name=name, version=version, title=definition["title"],
                                 description=definition["description"], fields=definition["fields"],
                                 created_by="import", created_at=clock.now())
            await new.save()
            counts["forms_added"] += 1
            row = {"id": new.id}
        form_ids[(name, version)] = row["id"]

    def key(s):
        return (series_ids[plan.scan_series[(s.experiment, s.scan)]], form_ids[(s.form, s.form_version)], s.creator,
                second(s.created))

    def content(entry) -> str:
        return json.dumps(entry, sort_keys=True)

    sids = sorted({key(s)[0] for s in subs})
    stored = []
    for chunk in db.chunks(sids):  # a file may name more series than one query takes arguments
        stored += [((r["series"], r["form"], r["username"], second(r["created_at"])), content(loads(r["entry"])))
                   for r in await FormSubmission.select(
                       FormSubmission.series, FormSubmission.form, FormSubmission.username,
                       FormSubmission.created_at, FormSubmission.entry).where(FormSubmission.series.is_in(chunk))]
    add, counts["submissions_existing"] = _merge(subs, stored, key, lambda s: content(s.entry))
    rows = [FormSubmission(project=project.id, series=k[0], form=k[1], user=users.get(s.creator),
                           username=s.creator[:150], user_email=s.email[:254], entry=s.entry,
                           entry_formatted=s.entry_formatted, created_at=k[3]) for k, s in add]
    await _insert(FormSubmission, rows)
    counts["submissions_added"] = len(rows)


async def _ai(plan, project, series_ids, counts) -> None:
    items = plan.parsed.ai
    if not items:
        return
    sids = sorted({series_ids[plan.scan_series[(a.experiment, a.scan)]] for a in items})
    existing = set()
    for chunk in db.chunks(sids):
        existing |= {(j["series"], j["model_name"], j["model_version"], second(j["finished_at"] or j["queued_at"]))
                     for j in await InferenceJob.select(
                         InferenceJob.series, InferenceJob.model_name, InferenceJob.model_version,
                         InferenceJob.finished_at, InferenceJob.queued_at).where(InferenceJob.series.is_in(chunk))}
    for a in items:
        sid = series_ids[plan.scan_series[(a.experiment, a.scan)]]
        key = (sid, a.model_name, a.model_version, second(a.finished))
        if key in existing:
            continue
        existing.add(key)
        job = InferenceJob(project=project.id, series=sid, model_name=a.model_name, model_version=a.model_version,
                           state="done", attempts=1, queued_at=key[3], started_at=key[3], finished_at=key[3])
        await job.save()
        await _insert(Result, [Result(job=job.id, series=sid, name=r["name"], algorithm=r["algorithm"],
                                      value=r["value"], text=r["text"], type=r["type"], model_name=a.model_name,
                                      model_version=a.model_version, created_at=key[3]) for r in a.results])
        await Series.update({Series.ai_status: "done"}).where((Series.id == sid) & (Series.ai_status == ""))
        counts["ai_results_added"] += 1


async def import_file(path: str | Path, project: Project, *, by: User | None = None, username: str = "",
                      client: str = "", on_progress=None, confined: bool = False) -> dict:
    """Validate, then merge; returns counts. ImportRefused (nothing changed) when the file has problems."""
    if on_progress:
        await on_progress("reading the file", 0, 0)
    plan = await validate(path, project, on_progress, confined=confined)
    try:
        if on_progress:
            await on_progress("applying", 0, len(plan.new_files))
        counts = await apply(plan, project, on_progress)
    finally:
        if plan.scratch is not None:
            shutil.rmtree(plan.scratch, ignore_errors=True)
    counts["format"] = plan.parsed.format
    await audit.record("import", user=by, username=username, object=f"project:{project.name}",
                       detail={"path": str(path), **counts}, client=client)
    return counts


async def create_project_for(path: str | Path, name: str) -> Project:
    """A new project `name` for importing `path` into an empty install, with the review vocabulary a Lightbox
    JSON export carries (else the defaults)."""
    import json as json_mod

    from portal.review import vocabulary

    project = await projects.create(name)
    try:
        doc = json_mod.loads(Path(path).read_text(encoding="utf-8-sig"))
        conf = doc["projects"][name]["settings"]
        # A vocabulary from before the viewer's keys were reserved keeps its codes, without the clashing shortcut.
        entries = [{**e, "key": ""} if str(e.get("key", "") or "").strip().lower()[:1] in vocabulary.RESERVED_KEYS
                   else e for e in conf["decisions"]]
        changes = {"decisions": vocabulary.check_decisions(entries),
                   "artifacts": vocabulary.check_artifacts(conf["artifacts"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, Invalid):
        return project  # not a Lightbox JSON export: the import reports what is wrong with the file
    await projects.update_settings(project, changes)
    return await projects.get(name)


async def delete_project(project: Project) -> None:
    """Undo `create_project_for` when its import was refused: the install is left as it was."""
    await Project.delete().where(Project.id == project.id)
