"""Housekeeping tasks: queue liveness (used by tests and `/healthz` checks of workers)."""

from portal.tasks.queue import huey


@huey.task()
def ping(value: str) -> str:
    """Round-trips a value through a worker; proves a consumer is running."""
    return f"pong:{value}"
