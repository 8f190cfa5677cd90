"""The one Huey instance: SqliteHuey in the data dir by default, RedisHuey when configured.

Task modules import `huey` from here; the consumer (embedded in `lightbox serve`, or
`lightbox worker`) imports this and every task module via `load_tasks()`.
"""

from __future__ import annotations

import logging

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer
from huey.storage import RedisStorage, SqliteStorage

from portal import settings as settings_mod
from portal.settings import Settings

log = logging.getLogger("lightbox.queue")


def _make(settings: Settings):
    if settings.queue_kind == "redis":
        return RedisHuey(settings.queue_name, url=settings.queue_url)
    return SqliteHuey("lightbox", filename=str(settings.queue_path), timeout=60)


huey = _make(settings_mod.current())


def configure(settings: Settings) -> None:
    """Point the queue at the storage `settings` name (the app factory and tests call this)."""
    if settings.queue_kind == "redis":
        huey.name = settings.queue_name
        huey.storage = RedisStorage(settings.queue_name, url=settings.queue_url)
    else:
        huey.storage = SqliteStorage("lightbox", filename=str(settings.queue_path), timeout=60)


def load_tasks() -> None:
    """Import every task module so the consumer knows every task."""
    import portal.tasks.inference  # noqa: F401
    import portal.tasks.exchange  # noqa: F401
    import portal.tasks.maintenance  # noqa: F401
    import portal.tasks.mail  # noqa: F401
    import portal.tasks.network  # noqa: F401


class EmbeddedConsumer(Consumer):
    """A consumer whose threads run inside `lightbox serve`; uvicorn owns the signals there.

    Each thread runs its tasks on an event loop of its own with its own database connections
    (tasks/runner.py), never on the loop that serves requests."""

    def _set_signal_handlers(self):
        pass

    def stop(self, graceful=False):
        super().stop(graceful=graceful)
        from portal.tasks import runner

        runner.close_finished()  # the stopped threads' loops and their database connections


def start_embedded(threads: int) -> Consumer | None:
    """The consumer of `lightbox serve`: model work in a child process (no torch in the web process), and
    the work a crash interrupted queued again while the server starts."""
    if threads <= 0:
        return None
    load_tasks()
    from portal.tasks import maintenance, offload

    offload.isolate()
    maintenance.recover_in_background()
    consumer = EmbeddedConsumer(huey, workers=threads, worker_type="thread", periodic=True)
    consumer.start()
    log.info("queue consumer started with %d thread(s) on %s", threads, type(huey.storage).__name__)
    return consumer


def stop_embedded(consumer: Consumer | None) -> None:
    if consumer is not None:
        # Graceful: in-flight tasks finish before the process exits.
        consumer.stop(graceful=True)
        from portal.tasks import offload

        offload.isolate(False)  # and the child processes of models, exports, imports and retraining end
