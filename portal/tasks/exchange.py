"""Import/export tasks: run one export, import or sync; every minute, start the syncs that are due."""

from __future__ import annotations

from huey import crontab

from portal.exchange import runs, sync
from portal.tasks import runner
from portal.tasks.queue import huey


@huey.task()
def run_exchange(run_id: int) -> None:
    runner.run(runs.execute(run_id, worker=runner.worker_id()))


@huey.periodic_task(crontab(minute="*"))
def start_due_syncs() -> None:
    for run_id in runner.run(sync.start_due()):
        run_exchange(run_id)


def enqueue(run: dict) -> None:
    run_exchange(run["id"])
