"""What the portal's messages say: a flagged case, an AI alert, sign-up approval, the daily digest.

Plain functions from rows to (subject, text, html); no database, no delivery.
"""

from __future__ import annotations

from html import escape

from portal import clock, settings as settings_mod


def series_link(project: str, series_uid: str) -> str:
    return f"{settings_mod.current().base_url}/projects/{project}/series/{series_uid}"


def link(path: str) -> str:
    return f"{settings_mod.current().base_url}{path}"


def study_label(study) -> str:
    return study.description or study.accession_number or study.study_instance_uid


def series_label(series) -> str:
    number = "" if series.series_number is None else str(series.series_number)
    label = " ".join(p for p in (series.modality, number, series.description) if p)
    return label or series.series_instance_uid


def one_line(text: str, limit: int = 300) -> str:
    """A header-safe subject: DICOM descriptions may hold line breaks, and the outbox keeps 300 characters."""
    return " ".join((text or "").split())[:limit]


def flag_subject(project, study, series) -> str:
    return one_line(f"Regarding {project.name}, {study_label(study)}, {series_label(series)}")


def _identifiers(project, study, series) -> list[tuple[str, str]]:
    return [("Project", project.name),
            ("Study", f"{study_label(study)} {study.study_date or ''}".strip()),
            ("StudyInstanceUID", study.study_instance_uid),
            ("Series", series_label(series)),
            ("SeriesInstanceUID", series.series_instance_uid),
            ("Review status", series.review_status.replace("_", " "))]


def _history_lines(history: list[dict]) -> list[str]:
    if not history:
        return ["(no decisions yet)"]
    lines = []
    for h in history:
        line = f"{h['created']}  {h['creator']}"
        if h.get("role"):
            line += f" ({h['role'].replace('_', ' ')})"
        line += f": {h['decision']}"
        present = h.get("artifacts", {}).get("present") or []
        if present:
            line += f"; artifacts: {', '.join(present)}"
        if h.get("note"):
            line += f" — {h['note']}"
        lines.append(line)
    return lines


def flag(project, study, series, *, sender, note: str, history: list[dict], screenshot_cid: str = "") -> tuple[str, str]:
    """(text, html) of a flag-for-discussion message."""
    url = series_link(project.name, series.series_instance_uid)
    who = sender.username + (f" <{sender.email}>" if sender.email else "")
    ids = _identifiers(project, study, series)
    history_lines = _history_lines(history)
    text = "\n".join([
        f"{who} flagged a case for discussion in Lightbox.", "",
        "Note:", note or "(no note)", "",
        f"Open the series: {url}", "",
        *[f"{k}: {v}" for k, v in ids], "",
        "Decision history (newest first):", *[f"- {h}" for h in history_lines], "",
        f"Reply to this message to answer {sender.username}.",
    ]) + "\n"
    rows = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in ids)
    items = "".join(f"<li>{escape(h)}</li>" for h in history_lines)
    image = (f'<p><img src="cid:{screenshot_cid}" alt="Screenshot of the viewer" style="max-width:100%"></p>'
             if screenshot_cid else "")
    html = (f"<p>{escape(who)} flagged a case for discussion in Lightbox.</p>"
            f"<blockquote>{escape(note or '(no note)').replace(chr(10), '<br>')}</blockquote>"
            f'<p><a href="{escape(url)}">Open the series in Lightbox</a><br><small>{escape(url)}</small></p>'
            f"{image}<table>{rows}</table><h4>Decision history (newest first)</h4><ul>{items}</ul>"
            f"<p>Reply to this message to answer {escape(sender.username)}.</p>")
    return text, html


def study_date_label(study) -> str:
    """YYYY-MM-DD of the study (its DICOM date as stored when it is not a date)."""
    d = study.study_date or ""
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else (d or "no date")


def alert(project, study, series, alert_row, *, patient=None, acquired=None, recent: bool = True) -> tuple[str, str]:
    """(subject, text) of an AI alert: who and which study, what was found, a link to the series."""
    url = series_link(project.name, series.series_instance_uid)
    patient_id = getattr(patient, "patient_id", "") or "unknown"
    accession = study.accession_number or "no accession"
    subject = one_line(f"AI alert: {project.name}, patient {patient_id}, {accession}, {study_date_label(study)}, "
                       f"{study.description or series_label(series)}")
    text = "\n".join([
        alert_note(alert_row, recent=recent), "",
        f"Open the series: {url}", "",
        f"Patient ID: {patient_id}",
        f"Accession: {accession}",
        f"Study date: {study_date_label(study)}",
        f"Study description: {study.description or '(none)'}",
        f"Acquired: {clock.iso(acquired) or 'unknown'}",
        *[f"{k}: {v}" for k, v in _identifiers(project, study, series)], "",
        "You receive this as an alert recipient of the project. The alert is sent once per study and model version.",
    ]) + "\n"
    return subject, text


def alert_note(alert_row, *, recent: bool) -> str:
    """One line: the model, the score, and what to do; an old acquisition is not a call to repeat the scan."""
    value = "" if alert_row.value is None else f" = {alert_row.value:.2f}"
    found = f"{alert_row.model_name} {alert_row.model_version} found a critical result: {alert_row.output}{value}"
    if recent:
        return f"{found} ({alert_row.message})."
    return f"{found}. The series was acquired outside the project's alert window: review it when convenient."


def signup_request(user) -> tuple[str, str]:
    url = link("/admin/signups")
    return (f"Lightbox: {user.username} asks for an account",
            f"{user.username} <{user.email}> signed up for a Lightbox account on {clock.iso(user.created_at)}.\n\n"
            f"Approve or reject the request: {url}\n")


def signup_outcome(user, approved: bool) -> tuple[str, str]:
    if approved:
        return ("Your Lightbox account is approved",
                f"Hello {user.username},\n\nyour account has been approved. Sign in at {link('/login')}\n")
    return ("Your Lightbox account request",
            f"Hello {user.username},\n\nyour request for a Lightbox account was not approved. "
            "Ask your project manager if you think this is a mistake.\n")


def digest(user, items: list[dict]) -> tuple[str, str]:
    subject = f"Lightbox: {len(items)} notification{'s' if len(items) != 1 else ''} for {user.username}"
    lines = [f"Hello {user.username},", "", "What was addressed to you since the last digest:", ""]
    for n in items:
        lines += [f"- {clock.iso(n['created_at'])}  {n['title']}", f"  {link(n['link'])}" if n["link"] else ""]
        if n["text"]:
            lines.append("  " + n["text"].replace("\n", "\n  "))
    lines += ["", f"Change how you are notified: {link('/notifications')}"]
    return subject, "\n".join(lines) + "\n"
