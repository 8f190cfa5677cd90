"""Housekeeping tasks: queue liveness (used by tests and `/healthz` checks of workers), and what a consumer does
when it starts: queue again the work a crash interrupted, then clear what the crash left on disk."""

from __future__ import annotations

import logging
import threading

from portal import cleanup, settings as settings_mod, storage
from portal.exchange import runs
from portal.inference import jobs
from portal.tasks import runner
from portal.tasks.queue import huey

log = logging.getLogger("lightbox.queue")


@huey.task()
def ping(value: str) -> str:
    """Round-trips a value through a worker; proves a consumer is running."""
    return f"pong:{value}"


def recover_at_start() -> dict:
    """Jobs and runs whose worker process died are queued again at once (not after the stuck-job timeout);
    then partial temp files, scratch folders and stored files without a row are removed. From a thread
    without an event loop (a consumer's start)."""
    from portal.tasks.exchange import run_exchange
    from portal.tasks.inference import run_job

    job_ids = runner.run(jobs.interrupted(runner.is_dead))
    for job_id in job_ids:
        run_job(job_id)
    run_ids = runner.run(runs.interrupted(runner.is_dead))
    for run_id in run_ids:
        run_exchange(run_id)
    store = storage.current()
    scratch = cleanup.sweep_scratch(settings_mod.current().data_dir, store)
    orphans = runner.run(cleanup.sweep_store(store))
    summary = {"jobs": len(job_ids), "runs": len(run_ids), "scratch": scratch, "orphans": orphans}
    if any(summary.values()):
        log.info("after a restart: %(jobs)d job(s) and %(runs)d run(s) queued again, %(scratch)d temp file(s) "
                 "and folder(s) and %(orphans)d stored file(s) without a row removed", summary)
    return summary


def recover_in_background() -> threading.Thread:
    """`recover_at_start` in a thread of its own, so that serving does not wait for the file sweep."""

    def go():
        try:
            recover_at_start()
        except Exception:  # never stops the server; the next start tries again
            log.exception("recovery at start-up failed")
        finally:
            runner.close_own()

    thread = threading.Thread(target=go, name="lightbox-recovery", daemon=True)
    thread.start()
    return thread
