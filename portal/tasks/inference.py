"""Inference tasks: score a series once it has been quiet, run a job (the model in a child process under
`lightbox serve`, portal/tasks/offload.py; in the worker thread in `lightbox worker`), recover jobs whose worker
died."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

from huey import crontab

from portal import projects, storage as storage_mod
from portal.archive import ingest
from portal.inference import jobs, retrain as retraining
from portal.tasks import offload, runner
from portal.tasks.queue import huey

log = logging.getLogger("lightbox.inference")
RETRY_DELAY_S = 5
STUCK_AFTER = dt.timedelta(minutes=5)


@huey.task()
def check_quiet(series_id: int) -> None:
    """Queue the series' job once no instance has arrived for the project's quiet period."""
    what, value = runner.run(jobs.quiet_check(series_id))
    if what == "wait":
        check_quiet.schedule((series_id,), delay=value)
    elif what == "job":
        run_job(value["id"])


@huey.task()
def run_job(job_id: int) -> None:
    ctx = runner.run(jobs.start(job_id, runner.worker_id()))
    if ctx is None:
        return
    # The model reads files: local copies of the series' stored files (the files themselves on local disk),
    # kept until its results (the DICOM SR/SC drawn from the representative image) are stored.
    with contextlib.ExitStack() as copies:
        try:
            if not ctx["model_dir"]:
                raise RuntimeError(f"Model '{ctx['model_name']}' is not installed.")
            paths = [str(p) for p in copies.enter_context(storage_mod.local_copies(ctx["keys"]))]
            # In the model's child process under `lightbox serve` (torch stays out of the web process);
            # heartbeats meanwhile.
            outcome = runner.run(jobs.beating(job_id, offload.run("portal.tasks.inference:score", paths,
                                                                  ctx["model_dir"], lane="model")))
        except Exception as exc:  # any failure is recorded with its reason; the portal carries on
            reason = str(exc) if isinstance(exc, offload.OffloadFailed) else f"{type(exc).__name__}: {exc}"
            log.warning("inference job %s failed (attempt %s): %s", job_id, ctx["attempts"], reason)
            if runner.run(jobs.fail(job_id, reason)):
                run_job.schedule((job_id,), delay=RETRY_DELAY_S)
            return
        runner.run(jobs.finish(job_id, outcome))


def score(paths: list[str], model_dir: str) -> dict:
    """The model's outcome for a series' files, in whichever process scores (torch is imported here only)."""
    from portal.ai.infer import score_series

    return score_series(paths, model_dir)


@huey.periodic_task(crontab(minute="*"))
def recover_stuck_jobs() -> None:
    for job_id in runner.run(jobs.stuck(STUCK_AFTER)):
        run_job(job_id)


def run_retrain(run_id: int, echo=None) -> dict | None:
    """Fine-tune on the run's labels (torch: in a child process under `lightbox serve`, else in this
    thread); the outcome recorded either way. `echo` also gets the progress messages (the CLI prints them)."""
    ctx = runner.run(retraining.start(run_id))
    if ctx is None:
        return None
    try:
        comparison = offload.call("portal.tasks.inference:finetune_run", run_id, ctx, echo)
    except Exception as exc:  # NotEnoughLabels, a broken model...: the reason is shown on the AI page
        kind, detail = (exc.kind, exc.detail) if isinstance(exc, offload.OffloadFailed) else (type(exc).__name__, str(exc))
        log.warning("retraining run %s failed: %s: %s", run_id, kind, detail)
        runner.run(retraining.fail(run_id, detail if kind == "NotEnoughLabels" else f"{kind}: {detail}"))
        return None
    return runner.run(retraining.finish(run_id, comparison))


def finetune_run(run_id: int, ctx: dict, echo=None) -> dict:
    """The fine-tuning itself, in whichever process does it; its progress messages go to the run's row."""
    from portal.ai.finetune import finetune

    with contextlib.ExitStack() as copies:  # the examples' files as local files (on S3: temporary downloads)
        examples = [{**e, "paths": [str(p) for p in copies.enter_context(storage_mod.local_copies(e["keys"]))]}
                    for e in ctx["examples"]]
        return finetune(examples, ctx["base_dir"], ctx["out_dir"], version=ctx["version"], project=ctx["project"],
                        progress=lambda msg: (echo and echo(msg), runner.run(retraining.note_progress(run_id, msg))))


@huey.task()
def retrain(run_id: int) -> None:
    run_retrain(run_id)


@huey.periodic_task(crontab(minute="*/10"))
def fail_stuck_retraining() -> None:
    runner.run(retraining.fail_stuck())


def _on_new_series(project, series_id: int) -> None:
    quiet = float(projects.settings_of(project)["ai_quiet_seconds"])
    check_quiet.schedule((series_id,), delay=quiet)


ingest.new_series_hooks.append(_on_new_series)
