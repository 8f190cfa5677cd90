"""Import/export tasks: run one export, import or sync; every minute, start the syncs that are due.

A run's serialising is CPU-heavy: under `lightbox serve` it runs in a child process (portal/tasks/offload.py),
so that the pages stay answered meanwhile."""

from __future__ import annotations

from huey import crontab

from portal.exchange import runs, sync
from portal.tasks import offload, runner
from portal.tasks.queue import huey


@huey.task()
def run_exchange(run_id: int) -> None:
    try:
        offload.call("portal.tasks.exchange:execute", run_id, runner.worker_id())
    except offload.OffloadFailed as exc:  # the child died under it: the run says so instead of hanging
        runner.run(runs.fail_running(run_id, str(exc)))


def execute(run_id: int, worker: str) -> None:
    """The run's work, in whichever process does it (`worker`: the consumer's process, for restart recovery)."""
    runner.run(runs.execute(run_id, worker=worker))


@huey.periodic_task(crontab(minute="*"))
def start_due_syncs() -> None:
    for run_id in runner.run(sync.start_due()):
        run_exchange(run_id)


def enqueue(run: dict) -> None:
    run_exchange(run["id"])
