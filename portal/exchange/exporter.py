"""Export: a project's whole state to its export file, written atomically, with a timestamped backup copy.

Every frame's file_location points at a real file: the stable stored file (content-addressed, never
overwritten), or a copy under the export folder, so an import of the export loses no image, including
the ones uploaded through the browser. A de-identified export always copies (de-identified) files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from portal import audit, clock, db, projects, settings as settings_mod
from portal.archive import storage, volumes
from portal.dicom import md5_of, sanitize_filename
from portal.errors import Invalid
from portal.exchange import csvformat, jsonformat
from portal.exchange.deidentify import BurnedInAnnotation, Deidentifier
from portal.exchange.records import loads
from portal.inference import jobs as job_states
from portal.tables import (Archive, Decision, FormDefinition, FormSubmission, InferenceJob, Instance, Patient,
                           Project, Result, Series, Study, User)

FORMATS = ("json", "csv")


@dataclass
class ExportResult:
    path: str
    format: str
    md5: str
    backup: str
    frames: int
    scans: int
    decisions: int
    submissions: int
    deidentified: bool
    missing_files: int = 0
    incoming_backup: str = ""  # the file as the other side had changed it, kept before it was replaced
    withheld_burned_in: int = 0  # de-identified: instances left out for burned-in annotation (listed in the file)
    stored_key: str = ""  # the copy of the file in the store (portal/storage): what the run's download serves

    def as_dict(self) -> dict:
        return asdict(self)


def format_of(path: Path, default: str = "json") -> str:
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else default


def export_file(project: Project, fmt: str | None = None, to: str | Path | None = None) -> tuple[Path, str]:
    """Where an export goes, and in which format: `to`, else the project's export path, else the default."""
    conf = projects.settings_of(project)
    chosen = Path(to or conf["export_path"] or "")
    if fmt is not None and fmt not in FORMATS:
        raise Invalid(f"Unknown format '{fmt}'; choose json or csv.", "invalid_format")
    if not str(to or conf["export_path"] or ""):
        fmt = fmt or conf["export_format"]
        chosen = settings_mod.current().data_dir / "exports" / project.name / f"{project.name}.{fmt}"
    fmt = fmt or format_of(chosen, conf["export_format"])
    return chosen.expanduser().resolve(), fmt


def import_file_path(project: Project) -> Path:
    """The file scheduled syncs import: the project's import path, else its export file."""
    conf = projects.settings_of(project)
    if conf["import_path"]:
        return Path(conf["import_path"]).expanduser().resolve()
    return export_file(project)[0]


def scan_link(project: Project, series_uid: str) -> str:
    return f"{settings_mod.current().base_url}/projects/{project.name}/series/{series_uid}"


def _decision(row: dict, deid: Deidentifier | None) -> dict:
    artifacts = loads(row["artifacts"]) or {}
    return {"decision": row["code"], "creator": deid.user(row["username"]) if deid else row["username"],
            "role": row["role"], "note": "" if deid else row["note"], "created": clock.iso(row["created_at"]),
            "user_identified_artifacts": {k: artifacts[k] for k in sorted(artifacts)},
            "location": loads(row["location"]) or None}


async def snapshot(project: Project, *, images: str = "store", export_dir: Path | None = None,
                   deid: Deidentifier | None = None, images_folder: str = "images", on_progress=None) -> dict:
    """The project's state as the export document (the JSON file's content)."""
    store = storage()
    conf = projects.settings_of(project)
    archives = {a["id"]: a["name"] for a in await Archive.select(Archive.id, Archive.name).where(
        Archive.project == project.id)}
    patients = {p["id"]: p for p in await Patient.select(Patient.id, Patient.patient_id, Patient.archive).where(
        Patient.project == project.id)}
    studies = await Study.select().where(Study.project == project.id).order_by(Study.study_instance_uid)
    series_rows = await Series.select().where(Series.project == project.id).order_by(Series.series_instance_uid)
    instances = await Instance.select(
        Instance.series, Instance.sop_instance_uid, Instance.instance_number, Instance.file_key, Instance.md5,
        Instance.size).where(Instance.project == project.id)
    decisions = await Decision.select().where(Decision.project == project.id).order_by(
        Decision.created_at).order_by(Decision.id)
    submissions = await FormSubmission.select(
        FormSubmission.series, FormSubmission.username, FormSubmission.user_email, FormSubmission.entry,
        FormSubmission.entry_formatted, FormSubmission.created_at, FormSubmission.form,
        FormSubmission.form.name, FormSubmission.form.version).where(
        FormSubmission.project == project.id).order_by(FormSubmission.created_at).order_by(FormSubmission.id)
    ai_jobs = await InferenceJob.select().where(
        (InferenceJob.project == project.id) & (InferenceJob.state == job_states.DONE)).order_by(InferenceJob.id)
    results = []
    for chunk in db.chunks([j["id"] for j in ai_jobs]):  # a project may hold more jobs than one query's arguments
        results += await Result.select().where(Result.job.is_in(chunk)).order_by(Result.id)
    results.sort(key=lambda r: r["id"])
    form_ids = sorted({s["form"] for s in submissions})
    forms = []
    for chunk in db.chunks(form_ids):
        forms += await FormDefinition.select().where(FormDefinition.id.is_in(chunk))
    forms.sort(key=lambda f: (f["name"], f["version"]))

    by_series: dict[int, list] = {}
    for i in sorted(instances, key=lambda r: (r["instance_number"] is None, r["instance_number"] or 0,
                                              r["sop_instance_uid"])):
        by_series.setdefault(i["series"], []).append(i)
    decisions_of: dict[int, list] = {}
    for d in decisions:
        decisions_of.setdefault(d["series"], []).append(d)
    submissions_of: dict[int, list] = {}
    for s in submissions:
        submissions_of.setdefault(s["series"], []).append(s)
    results_of: dict[int, list] = {}
    for r in results:
        results_of.setdefault(r["job"], []).append(r)
    jobs_of: dict[int, list] = {}
    for j in ai_jobs:
        jobs_of.setdefault(j["series"], []).append(j)

    total = len(instances)
    done = 0
    present: set[str] | None = None  # an object store's keys, listed once (not a request per frame)
    missing: list[str] = []  # stored files gone from the disk: said loudly, since an import would refuse them
    withheld: list[dict] = []  # de-identified exports: instances with burned-in annotation, left out
    experiments: dict[str, dict] = {}
    study_by_id = {s["id"]: s for s in studies}
    # Series made from MIQA's volumes (NIfTI, MGZ, NRRD) go back under MIQA's names with MIQA's own files as
    # their frames (not in a de-identified export: its frames are the de-identified DICOM images).
    sources = {} if deid else await volumes.sources_of_project(project)
    experiment_of_study = {series["study"]: sources[series["id"]][0] for series in series_rows
                           if series["id"] in sources}
    study_key: dict[int, str] = {}
    for study in studies:
        patient = patients.get(study["patient"]) or {}
        pid = patient.get("patient_id", "")
        source = experiment_of_study.get(study["id"])
        study_key[study["id"]] = key = (source["experiment"] if source else
                                        deid.uid(study["study_instance_uid"]) if deid else study["study_instance_uid"])
        experiments[key] = {
            "notes": source["notes"] if source else "" if deid else study["description"],
            "subject_id": source["subject_id"] if source else deid.patient_id(pid) if deid else pid,
            "session_id": source["session_id"] if source else "" if deid else study["accession_number"],
            "archive": archives.get(patient.get("archive"), projects.DEFAULT_ARCHIVE),
            "scans": {},
        }
    for series in series_rows:
        study = study_by_id[series["study"]]
        study_uid = study_key[study["id"]]
        series_uid = deid.uid(series["series_instance_uid"]) if deid else series["series_instance_uid"]
        frames = {}
        volume_rows = sources.get(series["id"], [])
        for row in volume_rows:
            frames[str(row["frame_number"])] = await _volume_frame(row, store, images, export_dir, images_folder)
            done += row["slices"]
        for number, inst in enumerate([] if volume_rows else by_series.get(series["id"], [])):
            key = inst["file_key"]
            sop = deid.uid(inst["sop_instance_uid"]) if deid else inst["sop_instance_uid"]
            if deid is not None or images == "copy":
                rel = Path(images_folder) / study_uid / series_uid / f"{sop}.dcm"
                dest = export_dir / rel
                if deid is not None:
                    # Always written: a file already there may be from an export with other options.
                    try:
                        await asyncio.to_thread(_deidentified_copy, store, deid, key, dest)
                    except BurnedInAnnotation as exc:
                        # Text in the pixels cannot be de-identified by editing attributes: left out, listed.
                        dest.unlink(missing_ok=True)
                        withheld.append({"sop_instance_uid": sop, "series_instance_uid": series_uid,
                                         "reason": str(exc)})
                        continue
                    md5 = await asyncio.to_thread(md5_of, dest)
                else:
                    if not dest.exists() or dest.stat().st_size != inst["size"]:
                        await asyncio.to_thread(_copy, store, key, dest)
                    md5 = inst["md5"]
                location = rel.as_posix()
            else:
                # How the other side names the stored file: its path on the shared file system, or s3://…
                location, md5 = store.uri(key), inst["md5"]
                if store.kind == "local":
                    if not await asyncio.to_thread(store.exists, key):
                        missing.append(location)
                else:
                    if present is None:
                        present = await asyncio.to_thread(lambda: {k for k, _ in store.keys()})
                    if key not in present:
                        missing.append(location)
            frames[str(number)] = {"file_location": location, "sop_instance_uid": sop, "md5": md5}
            done += 1
            if on_progress and done % 200 == 0:
                await on_progress("writing frames", done, total)
        history = [_decision(d, deid) for d in decisions_of.get(series["id"], [])]
        if volume_rows:
            series_uid = volume_rows[0]["scan"]
        scan = {
            "type": volume_rows[0]["scan_type"] if volume_rows else series["modality"],
            "scan_link": "" if deid else (volume_rows[0]["scan_link"] if volume_rows and volume_rows[0]["scan_link"]
                                          else scan_link(project, series["series_instance_uid"])),
            "description": "" if deid else series["description"],
            "frames": frames,
            "last_decision": {k: v for k, v in history[-1].items() if k != "role"} if history else None,
            "decisions": history,
            "form_submissions": [{
                "form": s["form.name"], "form_version": s["form.version"],
                "creator": deid.user(s["username"]) if deid else s["username"],
                "email": "" if deid else s["user_email"], "created": clock.iso(s["created_at"]),
                "entry": loads(s["entry"]) or {}, "entry_formatted": s["entry_formatted"],
            } for s in submissions_of.get(series["id"], [])] if not deid else [],
            "ai_results": [{
                "model": {"name": j["model_name"], "version": j["model_version"]},
                "finished": clock.iso(j["finished_at"] or j["queued_at"]),
                "results": [{"name": r["name"], "algorithm": r["algorithm"], "value": r["value"], "text": r["text"],
                             "type": r["type"]} for r in results_of.get(j["id"], [])],
            } for j in jobs_of.get(series["id"], [])],
        }
        experiments[study_uid]["scans"][series_uid] = scan
    if on_progress and total:
        await on_progress("writing frames", total, total)
    document = {
        "format": jsonformat.FORMAT, "version": jsonformat.VERSION, "exported": clock.iso(clock.now()),
        "deidentified": bool(deid),
        "missing_files": missing,
        **({"withheld_burned_in": withheld} if deid else {}),
        "projects": {project.name: {
            # The review vocabulary, so that an empty install can take the decisions in (`import --create`).
            "settings": {"decisions": conf["decisions"], "artifacts": conf["artifacts"]},
            "forms": [] if deid else [{"name": f["name"], "version": f["version"], "title": f["title"],
                                       "description": f["description"], "fields": loads(f["fields"]) or []}
                                      for f in forms],
            "experiments": {k: experiments[k] for k in sorted(experiments)},
        }},
    }
    return document


async def _volume_frame(row: dict, store, images: str, export_dir: Path | None, images_folder: str) -> dict:
    """A volume's frame: its original file when it is still there as it was, a copy beside the export when
    the project copies images, else the stored copy (by the store's URI: a path or s3://)."""
    key = row["file_key"]
    if images == "copy":
        fallback = Path(key).name
        name = Path(row["file_location"]).name
        rel = Path(images_folder) / "volumes" / row["md5"] / (sanitize_filename(name) if name else fallback)
        dest = export_dir / rel
        if not dest.exists() or dest.stat().st_size != row["size"]:
            await asyncio.to_thread(_copy, store, key, dest)
        location = rel.as_posix()
    else:
        original = Path(row["file_location"])
        same = (original.is_absolute() and original.is_file() and original.stat().st_size == row["size"]
                and await asyncio.to_thread(md5_of, original) == row["md5"])
        location = str(original) if same else store.uri(key)
    return {"file_location": location, "md5": row["md5"]}


def _deidentified_copy(store, deid: Deidentifier, key: str, dest: Path) -> None:
    with store.local_copy(key) as src:
        deid.write_file(src, dest)


def _copy(store, key: str, dest: Path) -> None:
    """The stored file of `key` to `dest` beside the export (temp file, rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in store.iter_bytes(key, 8 << 20):
                out.write(block)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    """Temp file beside `path`, fsync, rename: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _series(folder: Path, path: Path, label: str = "") -> list[Path]:
    """The backups of `path` with `label` in `folder`, oldest first: exactly the names `backup` gives, so that
    pruning never touches another file's backups (`chest.ct.json`'s, when the file is `chest.json`) or the
    other series (incoming copies of what the other repository wrote are kept as a series of their own)."""
    name = re.compile(rf"{re.escape(path.stem)}\.\d{{8}}T\d{{12}}Z{re.escape('.' + label) if label else ''}"
                      rf"{re.escape(path.suffix)}")
    return sorted(p for p in folder.iterdir() if name.fullmatch(p.name) and p.is_file()) if folder.is_dir() else []


def backup(path: Path, keep: int, *, label: str = "") -> Path:
    """A timestamped copy of `path` in the `backups` folder beside it; only the newest `keep` remain."""
    folder = path.parent / "backups"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{path.stem}.{stamp}{'.' + label if label else ''}{path.suffix}"
    shutil.copy2(path, dest)
    mine = _series(folder, path, label)
    for old in mine[:max(len(mine) - max(int(keep), 1), 0)]:
        old.unlink(missing_ok=True)
    return dest


def keep_changes(path: Path, keep: int, accepted_md5: str = "") -> Path | None:
    """Before `path` is replaced: unless it is what Lightbox last wrote there (its newest backup is that
    copy) or what the caller already took care of (`accepted_md5`), someone else wrote to it since, so it is
    kept first as an `.incoming` backup. Returns that backup, or None."""
    if not path.is_file():
        return None
    current = md5_of(path)
    if current == accepted_md5:
        return None
    written = _series(path.parent / "backups", path)
    if written and md5_of(written[-1]) == current:
        return None
    return backup(path, keep, label="incoming")


def keep_in_store(project: Project, path: Path, text: str, keep: int) -> str:
    """A copy of the export file in the store (`exports/<project id>/<UTC stamp>-<name>`), the newest `keep`
    kept: the run's download reads it there, from any machine, after later exports replaced the file."""
    store = storage()
    folder = f"exports/{project.id}/"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    key = folder + f"{stamp}-{sanitize_filename(path.name)}"
    store.put_bytes(key, text.encode("utf-8"))
    mine = sorted(k for k, _ in store.keys(folder))
    for old in mine[:max(len(mine) - max(int(keep), 1), 0)]:
        store.delete(old)
    return key


async def export(project: Project, *, fmt: str | None = None, to: str | Path | None = None,
                 deidentify: bool = False, remap_uids: bool = False, shift_dates: bool = False,
                 clean_descriptors: bool = False, by: User | None = None, username: str = "",
                 client: str = "", on_progress=None, accepted_md5: str = "") -> ExportResult:
    """Write the project's state to its export file (or `to`), keep a backup, and audit it."""
    path, fmt = export_file(project, fmt, to)
    if deidentify and not to:
        path = path.parent / "deidentified" / f"{path.stem}-deidentified.{fmt}"
    if path.exists() and path.is_dir():
        raise Invalid(f"The export path {path} is a folder; give a file name ending .json or .csv.", "invalid_path")
    conf = projects.settings_of(project)
    deid = Deidentifier(settings_mod.current().secret_key, project.name, remap_uids=remap_uids,
                        shift_dates=shift_dates, clean_descriptors=clean_descriptors) if deidentify else None
    if on_progress:
        await on_progress("reading the project", 0, 0)
    # De-identified images never share a folder with the identified copies a copy-mode export puts in
    # `images/` beside its file: without `to` the whole export is in its own `deidentified/` folder already.
    images_folder = "deidentified/images" if deidentify and to else "images"
    document = await snapshot(project, images=conf["export_images"], export_dir=path.parent, deid=deid,
                              images_folder=images_folder, on_progress=on_progress)
    out = io.StringIO()
    if fmt == "csv":
        csvformat.write(document, out)
    else:
        jsonformat.write(document, out)
    text = out.getvalue()
    incoming = await asyncio.to_thread(keep_changes, path, conf["export_backups"], accepted_md5)
    await asyncio.to_thread(write_atomically, path, text)
    saved = await asyncio.to_thread(backup, path, conf["export_backups"])
    stored_key = await asyncio.to_thread(keep_in_store, project, path, text, conf["export_backups"])
    scans = [s for e in document["projects"][project.name]["experiments"].values() for s in e["scans"].values()]
    result = ExportResult(
        path=str(path), format=fmt, md5=await asyncio.to_thread(md5_of, path), backup=str(saved),
        frames=sum(len(s["frames"]) for s in scans), scans=len(scans),
        decisions=sum(len(s["decisions"]) for s in scans), submissions=sum(len(s["form_submissions"]) for s in scans),
        deidentified=deidentify, missing_files=len(document["missing_files"]),
        withheld_burned_in=len(document.get("withheld_burned_in", [])),
        incoming_backup=str(incoming) if incoming else "", stored_key=stored_key)
    await audit.record("export", user=by, username=username, object=f"project:{project.name}",
                       detail={k: v for k, v in result.as_dict().items() if k != "md5"}, client=client)
    return result
