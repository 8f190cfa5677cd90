"""Keeping a project in sync with another repository over DICOMweb: ask its QIDO-RS for studies (the project's
query, e.g. a modality and a window of days), retrieve the new ones with WADO-RS and store every instance
through the one ingest path. Each pull is a SyncRun of kind "dicomweb", listed in the sync history beside the
file-based imports and exports.

Project setting `dicomweb_sync`: {"node": NAME (a node with a DICOMweb URL), "query": {QIDO key: value},
"days": N (studies of the last N days; 0 = any date), "every_minutes": M (0 = only when asked),
"push_decisions": true (each pull also sends the decisions made since the last one back, as SR)}.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import httpx

from portal import audit, clock, projects, settings as settings_mod, uploads
from portal.archive import ingest_file
from portal.errors import Invalid
from portal.network import nodes
from portal.tables import Instance, Project, SyncRun, User

log = logging.getLogger("lightbox.dicomweb_pull")
KIND = "dicomweb"
TIMEOUT_S = 60
MAX_STUDY_BYTES = 8 * 1024**3


def config(project: Project) -> dict:
    conf = projects.settings_of(project).get("dicomweb_sync") or {}
    # The query as QIDO-RS takes it: text keys and values (what a run records and the pull sends).
    query = {str(k): str(v) for k, v in (conf.get("query") or {}).items()}
    return {"node": conf.get("node") or "", "query": query, "days": int(conf.get("days") or 0),
            "every_minutes": int(conf.get("every_minutes") or 0), "push_decisions": bool(conf.get("push_decisions"))}


async def create_run(project: Project, *, trigger: str, user: User | None = None) -> dict:
    conf = config(project)
    if not conf["node"]:
        raise Invalid("This project names no DICOMweb node to sync with (setting dicomweb_sync.node).",
                      "no_sync_node")
    node = await nodes.get(conf["node"])
    if not node.dicomweb_url:
        raise Invalid(f"The node '{node.name}' has no DICOMweb URL.", "node_without_dicomweb")
    row = SyncRun(project=project.id, kind=KIND, trigger=trigger, state="queued", path=node.dicomweb_url,
                  options={"node": node.name, "query": conf["query"], "days": conf["days"]},
                  username=user.username if user else "", queued_at=clock.now())
    await row.save()
    from portal.exchange import runs

    return runs.as_dict(await SyncRun.select().where(SyncRun.id == row.id).first(), project.name)


async def due() -> list[Project]:
    """Projects whose DICOMweb sync is scheduled and whose last pull started long enough ago."""
    out = []
    for project in await Project.objects():
        every = config(project)["every_minutes"]
        if not every or not config(project)["node"]:
            continue
        last = await SyncRun.select(SyncRun.queued_at, SyncRun.state).where(
            (SyncRun.project == project.id) & (SyncRun.kind == KIND)).order_by(SyncRun.id, ascending=False).first()
        if last is None or (last["state"] not in ("queued", "running")
                            and last["queued_at"] <= clock.now() - dt.timedelta(minutes=every)):
            out.append(project)
    return out


def _query(conf: dict) -> dict:
    query = dict(conf["query"])
    if conf["days"] > 0:
        query["StudyDate"] = (clock.now() - dt.timedelta(days=conf["days"])).strftime("%Y%m%d") + "-"
    query.setdefault("includefield", "NumberOfStudyRelatedInstances")
    return query


async def _local_count(project: Project, study_uid: str) -> int:
    return await Instance.count().where((Instance.project == project.id)
                                        & (Instance.series.study.study_instance_uid == study_uid))


async def execute(run_id: int) -> dict:
    """Pull what the run's query finds and is not here yet; the run records counts, or why it failed."""
    row = await SyncRun.select().where(SyncRun.id == run_id).first()
    if row is None or row["state"] != "queued":
        return {}
    project = await Project.objects().get(Project.id == row["project"])
    await SyncRun.update({SyncRun.state: "running", SyncRun.started_at: clock.now(), SyncRun.phase: "querying"}).where(
        SyncRun.id == run_id)
    counts: Counter = Counter()
    try:
        conf = config(project)
        node = await nodes.get(conf["node"])
        counts = await pull(project, node.dicomweb_url, _query(conf), run_id=run_id)
        if conf["push_decisions"]:
            last = await SyncRun.select(SyncRun.started_at).where(
                (SyncRun.project == project.id) & (SyncRun.kind == KIND) & (SyncRun.state == "done")).order_by(
                SyncRun.id, ascending=False).first()
            counts["decisions_pushed"] = await push_decisions(project, node.dicomweb_url,
                                                              last["started_at"] if last else None)
    except Exception as exc:
        message = f"DICOMweb sync failed: {getattr(exc, 'detail', None) or exc}"
        log.warning("project %s: %s", project.name, message)
        await SyncRun.update({SyncRun.state: "failed", SyncRun.finished_at: clock.now(), SyncRun.message: message,
                              SyncRun.summary: dict(counts)}).where(SyncRun.id == run_id)
        return {"state": "failed", "message": message}
    counts = {k: counts[k] for k in ("studies_found", "studies_new", "stored", "already_stored", "failed",
                                     "decisions_pushed")}
    message = (f"{counts['studies_new']} new study(ies) of {counts['studies_found']} found: "
               f"{counts['stored']} instance(s) stored, {counts['already_stored']} already here"
               + (f", {counts['failed']} not stored" if counts["failed"] else "")
               + (f"; {counts['decisions_pushed']} decision(s) sent back as SR" if counts["decisions_pushed"] else ""))
    await SyncRun.update({SyncRun.state: "done", SyncRun.finished_at: clock.now(), SyncRun.message: message,
                          SyncRun.summary: counts, SyncRun.phase: ""}).where(SyncRun.id == run_id)
    await audit.record("dicomweb_sync", username=row["username"], object=f"project:{project.name}",
                       detail={"run": run_id, **counts})
    return {"state": "done", "message": message, **counts}


async def pull(project: Project, url: str, query: dict, *, run_id: int | None = None) -> Counter:
    counts: Counter = Counter()
    tmp_root = settings_mod.current().data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        r = await http.get(f"{url}/studies", params=query, headers={"Accept": "application/dicom+json"})
        r.raise_for_status()
        studies = r.json() if r.content else []
        counts["studies_found"] = len(studies)
        for n, study in enumerate(studies, 1):
            uid = (study.get("0020000D", {}).get("Value") or [""])[0]
            remote = (study.get("00201208", {}).get("Value") or [None])[0]
            here = await _local_count(project, uid)
            if not uid or (here and (remote is None or here >= int(remote))):
                continue  # here already
            counts["studies_new"] += 1
            if run_id:
                await SyncRun.update({SyncRun.phase: "retrieving", SyncRun.done: n, SyncRun.total: len(studies)}).where(
                    SyncRun.id == run_id)
            folder = tempfile.mkdtemp(prefix="pull-", dir=tmp_root)
            try:
                async with http.stream("GET", f"{url}/studies/{uid}", headers={
                        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}) as resp:
                    resp.raise_for_status()
                    parts = await uploads.receive(resp.aiter_bytes(), resp.headers.get("content-type", ""),
                                                  Path(folder), max_total=MAX_STUDY_BYTES,
                                                  allowed=("multipart/related",))
                for part in parts:
                    if part.is_file:
                        result = await ingest_file(part.path, project, filename=f"{uid}.dcm")
                        counts[result.status if result.ok else "failed"] += 1
            finally:
                shutil.rmtree(Path(folder), ignore_errors=True)
    return counts


# --- decisions back to the repository, as SR --------------------------------------------------------------


async def push_decisions(project: Project, url: str, since) -> int:
    """STOW-RS a Comprehensive SR for each decision made since `since` (None: all) on a series of `project`:
    the decision, its note, the artifacts marked and who decided, referencing the series' instances."""
    import asyncio

    from portal.archive import storage
    from portal.tables import Decision

    where = Decision.project == project.id
    if since is not None:
        where = where & (Decision.created_at > since)
    rows = await Decision.select(Decision.all_columns(), Decision.series.series_instance_uid.as_alias("uid")).where(
        where).order_by(Decision.id)
    if not rows:
        return 0
    store = storage()
    files = []
    for row in rows:
        inst = await Instance.select(Instance.file_key).where(Instance.series == row["series"]).order_by(
            Instance.instance_number, Instance.id).first()
        if inst is None:
            continue
        files.append(await asyncio.to_thread(_decision_sr_of, store, inst["file_key"], row))
    from portal.network import send

    sent, failed, error = await asyncio.to_thread(send.stow, url, files, read=bytes)
    if failed:
        raise RuntimeError(f"pushing decisions: {error}")
    return sent


def _decision_sr_of(store, key: str, row: dict) -> bytes:
    with store.open(key) as f:
        return _decision_sr(f, row)


def _decision_sr(source_path, row: dict) -> bytes:
    import io
    import json

    import highdicom as hd
    from pydicom import dcmread
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    def code(value, meaning):
        return hd.sr.CodedConcept(value=value[:16], scheme_designator="99LIGHTBOX", meaning=meaning[:64])

    artifacts = row["artifacts"]
    artifacts = json.loads(artifacts) if isinstance(artifacts, str) else (artifacts or {})
    items = [hd.sr.TextContentItem(name=codes.DCM.Finding, value=f"quality decision: {row['code']}",
                                   relationship_type="CONTAINS"),
             hd.sr.TextContentItem(name=code("reviewer", "Reviewer"), value=row["username"] or "(unknown)",
                                   relationship_type="HAS OBS CONTEXT")]
    if row["note"]:
        items.append(hd.sr.TextContentItem(name=code("note", "Note"), value=row["note"][:1024],
                                           relationship_type="CONTAINS"))
    for name, mark in artifacts.items():
        state = {1: "present", 0: "absent"}.get(mark, "undecided")
        items.append(hd.sr.TextContentItem(name=code("artifact", "Artifact"), value=f"{name}: {state}",
                                           relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(name=code("qc-decision", "Quality control decision"))
    root.ContentSequence = items
    source = dcmread(source_path, stop_before_pixels=True)
    sr = hd.sr.ComprehensiveSR(evidence=[source], content=root, series_instance_uid=generate_uid(),
                               series_number=9910, sop_instance_uid=generate_uid(), instance_number=1,
                               manufacturer="Lightbox", is_complete=True,
                               series_description="Lightbox QC decision")
    out = io.BytesIO()
    sr.save_as(out, enforce_file_format=True)
    return out.getvalue()
