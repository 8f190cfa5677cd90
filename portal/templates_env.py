"""Jinja filters for DICOM values: dates, times and person names the way people read them; and the one way the portal
writes a moment (`utc`)."""

from __future__ import annotations


def dicom_date(da: str | None) -> str:
    """YYYYMMDD → YYYY-MM-DD (other shapes unchanged)."""
    da = (da or "").strip()
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def dicom_time(tm: str | None) -> str:
    """HHMMSS.frac → HH:MM:SS."""
    tm = (tm or "").strip().split(".")[0]
    return f"{tm[:2]}:{tm[2:4]}:{tm[4:6]}" if len(tm) >= 6 and tm[:6].isdigit() else tm


def utc(moment) -> str:
    """A datetime or an ISO 8601 string → '2026-12-03 11:57:02 UTC', the one way pages write a moment ('' for None)."""
    import datetime as dt

    if moment in (None, ""):
        return ""
    if isinstance(moment, str):
        try:
            moment = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def person_name(pn: str | None) -> str:
    """DICOM PN (Family^Given^Middle) → 'Family, Given Middle'."""
    parts = [p for p in (pn or "").split("=")[0].split("^")]
    family, rest = (parts[0] if parts else ""), " ".join(p for p in parts[1:] if p)
    return f"{family}, {rest}" if family and rest else (family or rest)


def mail_name(address: str | None) -> str:
    """'senior <senior@x.org>' → 'senior': members are shown by name, their addresses stay with the admins."""
    from email.utils import parseaddr

    name, addr = parseaddr(address or "")
    return name or addr


def register(environment) -> None:
    environment.filters.update(dicom_date=dicom_date, dicom_time=dicom_time, person_name=person_name,
                               mail_name=mail_name, utc=utc)
