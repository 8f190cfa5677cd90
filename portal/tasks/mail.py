"""Mail tasks: deliver one outbox message (retries with back-off), sweep pending mail and undelivered AI alerts
every minute (so mail survives an SMTP outage and a dead worker), and send the daily digest."""

from __future__ import annotations

import logging

from huey import crontab

from portal import notifications
from portal.mail import alerts, outbox
from portal.tasks import runner
from portal.tasks.queue import huey

log = logging.getLogger("lightbox.mail")


@huey.task()
def deliver(outbox_id: int) -> None:
    row = runner.run(outbox.claim(outbox_id))
    if row is None:
        return  # sent, failed for good, not yet due, or another worker has it
    try:
        transport, refused = outbox.send(row)  # blocking SMTP, here in the worker thread
    except Exception as exc:  # any failure is recorded with its reason and retried later
        delay = runner.run(outbox.mark_failed(outbox_id, f"{type(exc).__name__}: {exc}"))
        if delay is not None:
            deliver.schedule((outbox_id,), delay=delay)
        return
    if refused:
        log.warning("mail #%s sent, but the SMTP server refused %s", outbox_id, ", ".join(refused))
    runner.run(outbox.mark_sent(outbox_id, transport, refused))


@huey.periodic_task(crontab(minute="*"))
def sweep_outbox() -> None:
    try:
        runner.run(alerts.deliver_pending())
    except Exception:  # the outbox below must still be swept; the alerts are tried again next minute
        log.exception("delivering pending AI alerts failed")
    for outbox_id in runner.run(outbox.due()):
        deliver(outbox_id)


@huey.periodic_task(crontab(hour="7", minute="0"))
def daily_digest() -> None:
    sent = runner.run(notifications.send_digests())
    log.info("daily digest: %d message(s) queued", sent)


def _schedule(outbox_id: int) -> None:
    deliver(outbox_id)


outbox.enqueued_hooks.append(_schedule)
