"""The inference job lifecycle: requested → queued → running → done | failed (with the reason) | retrying.

Plain async functions over the tables; the Huey tasks in portal/tasks/inference.py drive them and
run the model itself in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import json

from piccolo.engine.postgres import PostgresEngine

from portal import archive as arch, clock, db, projects
from portal.inference import alerting, models, routing
from portal.tables import AiAlert, Asset, InferenceJob, Project, Result, Series

QUEUED, RUNNING, RETRYING, DONE, FAILED, NOT_APPLICABLE = (
    "queued", "running", "retrying", "done", "failed", "not_applicable")
ACTIVE = (QUEUED, RUNNING, RETRYING)
MAX_ATTEMPTS = 3


async def _set_series(series_id: int, **changes) -> None:
    await Series.update({getattr(Series, k): v for k, v in changes.items()}).where(Series.id == series_id)


async def request(project: Project, series: Series, *, force: bool = False) -> tuple[dict, bool]:
    """The job for `series` under the project's routing: (job, created). An active job is reused; a
    finished one too unless `force` (a person asked again)."""
    conf = projects.settings_of(project)
    model_name = routing.route(conf["ai_routing"], modality=series.modality, body_part=series.body_part,
                               sop_class=series.sop_class_uid, description=series.description)
    version = ""
    if model_name:
        manifest = models.manifest_for(model_name, project.name)
        version = manifest["version"] if manifest else ""
    # Read-then-insert, made atomic: two workers (or two quiet-period checks) that decide at the same moment
    # must not both queue a job for the series. SQLite's IMMEDIATE transaction serialises them; PostgreSQL
    # takes a lock on the series for the transaction.
    async with db.write_transaction():
        if isinstance(Series._meta.db, PostgresEngine):
            await Series.raw("SELECT pg_advisory_xact_lock(1, {})", series.id)
        existing = await InferenceJob.select().where(InferenceJob.series == series.id).order_by(
            InferenceJob.id, ascending=False).first()
        # A finished job still stands unless a person asked again or instances arrived after it was queued.
        stale = bool(existing) and series.last_instance_at is not None and series.last_instance_at > existing["queued_at"]
        if existing and existing["model_name"] == (model_name or "") and (
                existing["state"] in ACTIVE or (not force and not stale and existing["model_version"] == version
                                                and existing["state"] in (DONE, NOT_APPLICABLE))):
            return existing, False
        now = clock.now()
        state = QUEUED if model_name else NOT_APPLICABLE
        job = InferenceJob(project=project.id, series=series.id, model_name=model_name or "", model_version=version,
                           state=state, queued_at=now,
                           error="" if model_name else "No routing rule of this project matches this series.")
        if model_name and not version:
            job.state, job.error = FAILED, f"Model '{model_name}' is not installed (see `lightbox model list`)."
        await job.save()
        await _set_series(series.id, ai_status=job.state)
        job_row = await InferenceJob.select().where(InferenceJob.id == job.id).first()
    return job_row, job.state == QUEUED


async def quiet_check(series_id: int) -> tuple[str, float | dict]:
    """("wait", seconds) while instances still arrive; ("job", job) once quiet; ("gone", 0) if deleted."""
    series = await Series.objects().get(Series.id == series_id)
    if series is None:
        return "gone", 0
    project = await Project.objects().get(Project.id == series.project)
    quiet = float(projects.settings_of(project)["ai_quiet_seconds"])
    idle = (clock.now() - series.last_instance_at).total_seconds()
    if idle < quiet:
        return "wait", max(quiet - idle, 0.5)
    job, created = await request(project, series)
    return ("job", job) if created else ("exists", job)


async def start(job_id: int, worker: str = "") -> dict | None:
    """Claim the job for `worker` (the process that runs it, see tasks/runner.py) and return what it needs:
    instance files and the model directory. None when it is not waiting to run: done, or claimed already
    (a second message for one job must not run it twice)."""
    job = await InferenceJob.objects().get(InferenceJob.id == job_id)
    if job is None or job.state not in (QUEUED, RETRYING):
        return None
    now = clock.now()
    claimed = await InferenceJob.update({
        InferenceJob.state: RUNNING, InferenceJob.attempts: job.attempts + 1, InferenceJob.started_at: now,
        InferenceJob.heartbeat_at: now, InferenceJob.worker: worker[:100]}).where(
        (InferenceJob.id == job_id) & (InferenceJob.state == job.state) & (InferenceJob.attempts == job.attempts)
    ).returning(InferenceJob.id)
    if not claimed:  # another worker claimed it between our read and our update
        return None
    series = await Series.objects().get(Series.id == job.series)
    await _set_series(series.id, ai_status=RUNNING)
    return {"job_id": job_id, "attempts": job.attempts + 1, "model_name": job.model_name,
            "model_version": job.model_version, "model_dir": models.model_dir(job.model_name, job.model_version),
            "keys": [i.file_key for i in await arch.instances_of(series)]}


async def fail(job_id: int, reason: str) -> bool:
    """Record a failed attempt; True when the job will be retried, False when it has failed for good."""
    job = await InferenceJob.objects().get(InferenceJob.id == job_id)
    if job is None:
        return False
    retry = job.attempts < MAX_ATTEMPTS
    await InferenceJob.update({InferenceJob.state: RETRYING if retry else FAILED, InferenceJob.error: reason[:2000],
                               InferenceJob.finished_at: None if retry else clock.now()}).where(
        InferenceJob.id == job_id)
    await _set_series(job.series, ai_status=RETRYING if retry else FAILED)
    return retry


async def finish(job_id: int, outcome: dict) -> None:
    """Store scores, assets (heatmap, JSON, report), the series' AI summary, and a critical alert once."""
    job = await InferenceJob.objects().get(InferenceJob.id == job_id)
    if job is None:
        return
    manifest = models.manifest_for(job.model_name, version=job.model_version) or {}
    now = clock.now()
    # Critical by the project's threshold for this model (else the model's own), not the worker's default.
    project = await Project.objects().get(Project.id == job.project)
    critical = alerting.is_critical(manifest, outcome["scores"], projects.settings_of(project)) if manifest else bool(
        outcome.get("critical"))
    types = {o["name"]: o.get("type", "float") for o in manifest.get("outputs", [])}
    await Result.delete().where(Result.job == job_id)  # a retried job replaces a partial earlier write
    for name, value in outcome["scores"].items():
        await Result.insert(Result(job=job_id, series=job.series, name=name, algorithm=job.model_name,
                                   value=float(value), type=types.get(name, "float"), model_name=job.model_name,
                                   model_version=job.model_version, created_at=now))
    store = arch.storage()
    payload = {"model": {"name": job.model_name, "version": job.model_version}, "scores": outcome["scores"],
               "per_instance": outcome.get("per_instance", []), "critical": critical,
               # Which frame the heatmap belongs to: the viewer overlays it there.
               "representative": {k: v for k, v in (outcome.get("representative") or {}).items() if k != "path"}}
    files = {"heatmap": ("image/png", outcome.get("heatmap_png") or b""),
             "json": ("application/json", json.dumps(payload, indent=2, default=str).encode()),
             "report": ("text/plain; charset=utf-8", (outcome.get("report") or "").encode())}
    for kind, (media, data) in files.items():
        if not data:
            continue
        key = f"ai/{job_id}/{kind}"
        await asyncio.to_thread(store.put_bytes, key, data)
        await Asset.insert(Asset(job=job_id, series=job.series, kind=kind, media_type=media, file_key=key,
                                 created_at=now))
    try:  # the SR, SC and PDF for the PACS; the scores stand even if these cannot be made
        from portal.inference import publish

        await publish.publish(job, outcome)
    except Exception:
        logging.getLogger("lightbox.inference").exception("job %s: could not make the DICOM results", job_id)
    headline = manifest.get("critical", {}).get("output", "quality")
    score = outcome["scores"].get(headline)
    summary = f"{job.model_name} {job.model_version}: {headline} {score:.2f}" if score is not None else ""
    if outcome.get("no_content"):  # every frame blank or constant: nothing to judge, and no alert
        summary = f"{job.model_name} {job.model_version}: no diagnostic content"
    if critical:
        summary += " — CRITICAL"
        series = await Series.objects().get(Series.id == job.series)
        # One alert per study and model version (see portal/inference/alerting.py); its mail or digest entry
        # is decided when it is delivered.
        await AiAlert.insert(AiAlert(
            key=alerting.alert_key(series.study, job.model_name, job.model_version), project=job.project,
            series=job.series, model_name=job.model_name, model_version=job.model_version, output=headline,
            value=score, message=manifest.get("critical", {}).get("meaning", "critical result"), created_at=now,
        )).on_conflict(target=AiAlert.key, action="DO NOTHING")
        from portal.mail import alerts  # mail the alert recipients, once per study and model version

        try:
            await alerts.deliver_pending()
        except Exception:  # the scores are stored either way; the periodic sweep tries undelivered alerts again
            logging.getLogger("lightbox.mail").exception("could not queue the AI alert of job %s", job_id)
    await InferenceJob.update({InferenceJob.state: DONE, InferenceJob.error: "", InferenceJob.finished_at: now}).where(
        InferenceJob.id == job_id)
    await _set_series(job.series, ai_status=DONE, ai_score=score, ai_summary=summary)


HEARTBEAT_S = 30  # while a job runs, its worker says so this often; STUCK_AFTER (tasks/inference.py) is far longer


async def heartbeat(job_id: int) -> None:
    await InferenceJob.update({InferenceJob.heartbeat_at: clock.now()}).where(InferenceJob.id == job_id)


async def beating(job_id: int, work):
    """Await `work` (the model running in a thread or a child process) with the job's heartbeat sent every
    HEARTBEAT_S meanwhile, so that a long job is never taken for a stuck one and run a second time."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
        if done:
            return task.result()
        try:
            await heartbeat(job_id)
        except Exception:  # a missed beat is not the job's failure; the next one may get through
            logging.getLogger("lightbox.inference").warning("heartbeat of job %s failed", job_id, exc_info=True)


async def _retry(rows: list[dict], reason: str) -> list[int]:
    for r in rows:
        await InferenceJob.update({InferenceJob.state: RETRYING, InferenceJob.error: reason}).where(
            (InferenceJob.id == r["id"]) & (InferenceJob.state == RUNNING))
        await _set_series(r["series"], ai_status=RETRYING)
    return [r["id"] for r in rows]


async def stuck(older_than: dt.timedelta) -> list[int]:
    """Jobs whose worker went quiet (killed mid-job): put back to retrying and returned for re-queueing."""
    cutoff = clock.now() - older_than
    rows = await InferenceJob.select(InferenceJob.id, InferenceJob.series).where(
        (InferenceJob.state == RUNNING) & (InferenceJob.heartbeat_at < cutoff))
    return await _retry(rows, "The worker stopped during the job; retrying.")


async def interrupted(is_dead) -> list[int]:
    """Running jobs whose worker process is known to be gone (`is_dead(worker)`: a crash or kill of this
    machine's previous run): put back to retrying at once, not after the stuck-job timeout."""
    rows = await InferenceJob.select(InferenceJob.id, InferenceJob.series, InferenceJob.worker).where(
        (InferenceJob.state == RUNNING) & (InferenceJob.worker != ""))
    return await _retry([r for r in rows if is_dead(r["worker"])],
                        "The worker stopped during the job (a restart); retrying.")


async def latest(series: Series) -> dict | None:
    """The newest job of a series with its results and assets."""
    job = await InferenceJob.select().where(InferenceJob.series == series.id).order_by(
        InferenceJob.id, ascending=False).first()
    if job is None:
        return None
    job["results"] = await Result.select().where(Result.job == job["id"]).order_by(Result.id)
    job["assets"] = {a["kind"]: a for a in await Asset.select().where(Asset.job == job["id"])}
    return job
