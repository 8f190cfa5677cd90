"""Retraining from reviewers: gather a project's labels, run a fine-tuning, keep the better model.

A run: requested (a manager's button, `lightbox model train --project`) → running (a worker
fine-tunes with portal/ai/finetune.py) → done (registered or not, with the comparison) | failed
(with the reason). The labels are each series' latest decision and artifact marks; only the
decision codes and artifacts that map onto the model's outputs count.
"""

from __future__ import annotations

import datetime as dt
import json

from portal import archive as arch, clock
from portal.errors import Conflict, NotFound
from portal.inference import models
from portal.tables import Decision, Project, RetrainRun, Series, User

MODEL = "lightbox-quality"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ACTIVE = (QUEUED, RUNNING)
STUCK_AFTER = dt.timedelta(hours=2)

# Decision codes that say the series is usable (quality 1) or not (quality 0); "Q?" says neither.
GOOD_CODES, BAD_CODES = {"U", "UE"}, {"UN"}
# A project's artifact names (MIQA's list) → the model's outputs; the outputs' own names count too.
ARTIFACT_OUTPUTS = {"ghosting_motion": "motion", "inhomogeneity": "bias_field", "swap_wraparound": "wraparound",
                    "truncation_artifact": "gibbs", "noise": "noise", "spike": "spike", "motion": "motion",
                    "bias_field": "bias_field", "wraparound": "wraparound", "gibbs": "gibbs"}


def labels_of(code: str, artifacts: dict | str | None) -> dict[str, int]:
    """Model labels from one decision: {"quality": 1 | 0, output: 1 | 0} (undecided marks are left out)."""
    if isinstance(artifacts, str):
        artifacts = json.loads(artifacts or "{}")
    labels = {}
    if code in GOOD_CODES:
        labels["quality"] = 1
    elif code in BAD_CODES:
        labels["quality"] = 0
    for name, mark in (artifacts or {}).items():
        output = ARTIFACT_OUTPUTS.get(name)
        if output and mark in (0, 1):
            labels[output] = int(mark)
    return labels


async def _latest_decisions(project: Project) -> dict[int, dict]:
    """Each decided series' latest decision: {series id: {code, artifacts}}."""
    latest: dict[int, dict] = {}
    for d in await Decision.select(Decision.series, Decision.code, Decision.artifacts).where(
            Decision.project == project.id).order_by(Decision.created_at).order_by(Decision.id):
        latest[d["series"]] = d
    return latest


async def examples(project: Project) -> list[dict]:
    """[{key, keys, labels}] for every series of the project whose latest decision gives a label (`keys`: its
    stored files; the worker makes local copies of them as `paths`)."""
    out = []
    for series_id, d in (await _latest_decisions(project)).items():
        labels = labels_of(d["code"], d["artifacts"])
        if not labels:
            continue
        series = await Series.objects().get(Series.id == series_id)
        keys = [i.file_key for i in await arch.instances_of(series)]
        if keys:
            out.append({"key": series.series_instance_uid, "keys": keys, "labels": labels})
    return out


async def label_counts(project: Project) -> dict[str, int]:
    """How many series carry a label per output (for the AI page), without touching files.

    The project's "label" tallies count the series by their latest decision's code and artifacts (kept by
    triggers at every decision), so the page reads a handful of rows however many decisions there are.
    """
    from portal.review.progress import tallies

    counts: dict[str, int] = {}
    for key, n in (await tallies(project, "label")).items():
        code, artifacts = key.split("|", 1)
        for name in labels_of(code, artifacts):
            counts[name] = counts.get(name, 0) + n
    return counts


async def request(project: Project, by: User | None = None) -> dict:
    """A new queued run for the project; Conflict while another one is queued or running."""
    if await RetrainRun.exists().where((RetrainRun.project == project.id) & RetrainRun.state.is_in(list(ACTIVE))):
        raise Conflict("A retraining of this project is already queued or running.", "retrain_running")
    base = models.manifest_for(MODEL, project.name)
    if base is None:
        raise NotFound(f"Model '{MODEL}' is not installed (see `lightbox model list`).", "model_not_found")
    run = RetrainRun(project=project.id, model_name=MODEL, base_version=base["version"], state=QUEUED,
                     requested_by=by.username if by else "", created_at=clock.now(), comparison={})
    await run.save()
    return await get(run.id)


async def get(run_id: int) -> dict:
    run = await RetrainRun.select().where(RetrainRun.id == run_id).first()
    if run is None:
        raise NotFound("No such retraining run.", "retrain_not_found")
    if isinstance(run["comparison"], str):
        run["comparison"] = json.loads(run["comparison"] or "{}")
    return run


async def runs(project: Project, limit: int = 20) -> list[dict]:
    rows = await RetrainRun.select().where(RetrainRun.project == project.id).order_by(
        RetrainRun.id, ascending=False).limit(limit)
    for r in rows:
        if isinstance(r["comparison"], str):
            r["comparison"] = json.loads(r["comparison"] or "{}")
    return rows


async def start(run_id: int) -> dict | None:
    """Mark the run running; what the worker needs: labelled examples, the base model and where to write."""
    run = await get(run_id)
    if run["state"] != QUEUED:
        return None
    project = await Project.objects().get(Project.id == run["project"])
    base_dir = models.model_dir(run["model_name"], run["base_version"])
    version = models.next_version(run["model_name"])
    await RetrainRun.update({RetrainRun.state: RUNNING, RetrainRun.started_at: clock.now(),
                             RetrainRun.new_version: version}).where(RetrainRun.id == run_id)
    from portal import settings as settings_mod

    out_dir = settings_mod.current().data_dir / "models" / run["model_name"] / version
    return {"run_id": run_id, "project": project.name, "base_dir": base_dir, "out_dir": str(out_dir),
            "version": version, "examples": await examples(project)}


async def note_progress(run_id: int, message: str) -> None:
    await RetrainRun.update({RetrainRun.progress: message[:200]}).where(RetrainRun.id == run_id)


async def finish(run_id: int, comparison: dict) -> dict:
    await RetrainRun.update({RetrainRun.state: DONE, RetrainRun.comparison: comparison,
                             RetrainRun.registered: bool(comparison.get("better")),
                             RetrainRun.progress: "", RetrainRun.finished_at: clock.now()}).where(RetrainRun.id == run_id)
    return await get(run_id)


async def fail(run_id: int, reason: str) -> None:
    await RetrainRun.update({RetrainRun.state: FAILED, RetrainRun.error: reason[:2000], RetrainRun.progress: "",
                             RetrainRun.finished_at: clock.now()}).where(RetrainRun.id == run_id)


async def fail_stuck() -> int:
    """Runs whose worker died (running for hours): failed with the reason, so a manager can start another."""
    cutoff = clock.now() - STUCK_AFTER
    stuck = await RetrainRun.select(RetrainRun.id).where((RetrainRun.state == RUNNING) & (RetrainRun.started_at < cutoff))
    for r in stuck:
        await fail(r["id"], "The worker stopped during the retraining; start it again.")
    return len(stuck)
