"""AI alerts by mail: a critical result mails the project's alert recipients (senior reviewers by default) once
per study and model version — the AiAlert row is claimed before its mail is queued. A series acquired longer ago
than the project's alert window goes to the recipients' daily digest instead (portal/inference/alerting.py)."""

from __future__ import annotations

import logging

from portal import clock, db, notifications, projects
from portal.errors import Invalid
from portal.mail import compose, outbox, recipients
from portal.inference import alerting
from portal.tables import AiAlert, Patient, Project, Series, Study

log = logging.getLogger("lightbox.mail")


async def alert_recipients(project: Project) -> list[dict]:
    """The project's `alert_recipients` setting (addresses or member usernames), else its senior reviewers."""
    configured = recipients.entries(projects.settings_of(project).get("alert_recipients"))
    if configured:
        out = []
        for entry in configured:  # one stale entry (a member who left) must not silence the others
            try:
                out += [r for r in await recipients.resolve(project, [entry]) if r not in out]
            except Invalid:
                log.warning("project %s: alert recipient %r is no longer allowed; skipped", project.name, entry)
        return out
    seniors = [m["username"] for m in await projects.members(project)
               if m["role"] == "senior_reviewer" and m["is_active"] and m["email"]]
    return await recipients.resolve(project, seniors)


async def deliver(alert_id: int) -> bool:
    """Queue the mail of one alert unless it was already delivered; True when this call queued it.
    The claim, the notifications and the outbox row commit together: a failure leaves the alert for the sweep."""
    async with db.write_transaction():
        queued = await _deliver(alert_id)
    if queued:
        outbox.schedule_delivery(queued)
    return queued is not None


async def _deliver(alert_id: int) -> int | None:
    """The claim and the messages; the outbox id to schedule (0: nothing to mail), None when already claimed."""
    claimed = await AiAlert.update({AiAlert.delivered_at: clock.now()}).where(
        (AiAlert.id == alert_id) & AiAlert.delivered_at.is_null()).returning(AiAlert.id)
    if not claimed:
        return None
    alert = await AiAlert.objects().get(AiAlert.id == alert_id)
    project = await Project.objects().get(Project.id == alert.project)
    series = await Series.objects().get(Series.id == alert.series)
    study = await Study.objects().get(Study.id == series.study)
    patient = await Patient.objects().get(Patient.id == study.patient)
    to = await alert_recipients(project)
    acquired = alerting.acquired_at(study, series)
    recent = alerting.is_recent(acquired, alert.created_at, alerting.window_hours(projects.settings_of(project)))
    subject, text = compose.alert(project, study, series, alert, patient=patient, acquired=acquired, recent=recent)
    link = f"/projects/{project.name}/series/{series.series_instance_uid}"
    usernames = [r["username"] for r in to if r["username"]]
    if not recent:  # too late to act while the patient is there: the daily digest, no mail now
        await notifications.notify(usernames, "alert", project_id=project.id, series_id=series.id, title=subject,
                                   text=compose.alert_note(alert, recent=False), link=link, digest=True)
        return 0
    immediate = await notifications.notify(usernames, "alert", project_id=project.id, series_id=series.id,
                                           title=subject, text=compose.alert_note(alert, recent=True), link=link)
    addresses = [r["address"] for r in to if r["username"] is None or r["username"] in immediate]
    if addresses:
        row = await outbox.enqueue("alert", addresses, subject, text, schedule=False,
                                   object=f"project:{project.name}/series:{series.series_instance_uid}")
        return row.id
    if not to:
        log.warning("AI alert %s in project %s has no recipients (no senior reviewer with an email)",
                    alert_id, project.name)
    return 0


async def deliver_pending() -> int:
    """Deliver every alert not yet mailed (the periodic sweep; also right after inference stores one)."""
    ids = await AiAlert.select(AiAlert.id).where(AiAlert.delivered_at.is_null()).order_by(AiAlert.id).output(
        as_list=True)
    return sum([await deliver(i) for i in ids])
