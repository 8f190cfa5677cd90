"""Sending tasks: one attempt of a send job per run; a failed attempt schedules the next."""

from __future__ import annotations

import logging

from huey import crontab

from portal.network import dicomweb_pull, send
from portal.tasks import runner
from portal.tasks.queue import huey

log = logging.getLogger("lightbox.send")


@huey.task()
def run_send(job_id: int) -> None:
    work = runner.run(send.start(job_id))
    if work is None:
        return
    try:
        sent, failed, error = send.transfer(work)  # network I/O in this worker thread
    except Exception as exc:  # recorded with its reason and retried; the worker carries on
        log.warning("send job %s failed (attempt %s): %s", job_id, work.attempts, exc)
        sent, failed, error = 0, len(work.files), f"{type(exc).__name__}: {exc}"
    delay = runner.run(send.record(work, sent, failed, error))
    if delay is not None:
        run_send.schedule((job_id,), delay=delay)


def enqueue(job: dict) -> None:
    run_send(job["id"])


@huey.task()
def run_pull(run_id: int) -> None:
    runner.run(dicomweb_pull.execute(run_id))


@huey.periodic_task(crontab(minute="*"))
def start_due_pulls() -> None:
    for project in runner.run(dicomweb_pull.due()):
        run = runner.run(dicomweb_pull.create_run(project, trigger="schedule"))
        run_pull(run["id"])
