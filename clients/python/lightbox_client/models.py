"""Typed results: one dataclass per thing the API returns; `raw` keeps the whole answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

ACTIVE_RUN_STATES = ("queued", "running")
ACTIVE_SEND_STATES = ("queued", "running", "retrying")


def parse_time(value: Optional[str]) -> Optional[dt.datetime]:
    """UTC ISO 8601 from the server ("2026-01-02T03:04:05Z") as an aware datetime."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_date(value: Optional[str]) -> Optional[dt.date]:
    """A DICOM date (YYYYMMDD)."""
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))


@dataclass
class Project:
    name: str
    description: str = ""
    role: Optional[str] = None
    archives: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, d: dict) -> "Project":
        return cls(name=d["name"], description=d.get("description") or "", role=d.get("role"),
                   archives=list(d.get("archives") or []), raw=d)


@dataclass
class Study:
    study_instance_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: Optional[dt.date] = None
    study_time: str = ""
    accession_number: str = ""
    description: str = ""
    modalities: List[str] = field(default_factory=list)
    series_count: Optional[int] = None
    instance_count: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Series:
    series_instance_uid: str
    study_instance_uid: str = ""
    modality: str = ""
    description: str = ""
    number: Optional[int] = None
    instance_count: Optional[int] = None
    body_part: str = ""
    manufacturer: str = ""
    series_date: Optional[dt.date] = None
    patient_id: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Decision:
    id: int
    series: str
    decision: str
    note: str = ""
    creator: str = ""
    role: str = ""
    created: Optional[dt.datetime] = None
    present: List[str] = field(default_factory=list)
    absent: List[str] = field(default_factory=list)
    location: Optional[Dict[str, float]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, d: dict) -> "Decision":
        artifacts = d.get("artifacts") or {}
        return cls(id=d["id"], series=d["series"], decision=d["decision"], note=d.get("note") or "",
                   creator=d.get("creator") or "", role=d.get("role") or "", created=parse_time(d.get("created")),
                   present=list(artifacts.get("present") or []), absent=list(artifacts.get("absent") or []),
                   location=d.get("location"), raw=d)


@dataclass
class Results:
    """AI results of a series (Qure-style). `success` is False while pending, or when no model applies."""

    uid: str
    success: bool
    message: str = ""
    triage_status: str = ""
    model_name: str = ""
    model_version: str = ""
    scores: Dict[str, float] = field(default_factory=dict)
    report: str = ""
    files: Dict[str, List[str]] = field(default_factory=dict)  # kind (heatmap, json, report, sr, …) → URLs
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, uid: str, d: dict) -> "Results":
        model, result = d.get("model") or {}, d.get("result") or {}
        return cls(uid=uid, success=bool(d.get("success")), message=d.get("message") or "",
                   triage_status=d.get("triage_status") or "", model_name=model.get("name") or "",
                   model_version=model.get("version") or "", scores=dict(result.get("scores") or {}),
                   report=result.get("report") or "", files=dict(result.get("files") or {}), raw=d)


@dataclass
class Run:
    """An export, import or sync run on the server."""

    id: int
    project: str
    kind: str
    state: str
    format: str = ""
    path: str = ""
    message: str = ""
    summary: Dict[str, Any] = field(default_factory=dict)
    problems: List[Dict[str, Any]] = field(default_factory=list)
    download_url: Optional[str] = None
    direct_url: Optional[str] = None  # S3 storage: a presigned URL of the file, for whoever started the export
    queued: Optional[dt.datetime] = None
    finished: Optional[dt.datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_RUN_STATES

    @property
    def status_url(self) -> str:
        return f"/api/v1/projects/{self.project}/runs/{self.id}"

    @classmethod
    def from_api(cls, d: dict) -> "Run":
        return cls(id=d["id"], project=d.get("project") or "", kind=d["kind"], state=d["state"],
                   format=d.get("format") or "", path=d.get("path") or "", message=d.get("message") or "",
                   summary=d.get("summary") or {}, problems=list(d.get("problems") or []),
                   download_url=d.get("download_url"), direct_url=d.get("direct_url"), queued=parse_time(d.get("queued")),
                   finished=parse_time(d.get("finished")), raw=d)


@dataclass
class SendJob:
    """Series on their way to a DICOM node."""

    id: int
    project: str
    node: str
    state: str
    series: List[str] = field(default_factory=list)
    total: int = 0
    sent: int = 0
    failed: int = 0
    error: str = ""
    status_url: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_SEND_STATES

    @classmethod
    def from_api(cls, d: dict) -> "SendJob":
        return cls(id=d["id"], project=d.get("project") or "", node=d.get("node") or "", state=d["state"],
                   series=list(d.get("series") or []), total=d.get("total") or 0, sent=d.get("sent") or 0,
                   failed=d.get("failed") or 0, error=d.get("error") or "", status_url=d.get("status_url") or "",
                   raw=d)


@dataclass
class UploadResult:
    """What an upload did: counts per status (stored, already_stored, conflict, rejected), the series it
    touched, and each file that was not stored with the server's reason."""

    files: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    series_instance_uids: List[str] = field(default_factory=list)
    failed: List[Dict[str, str]] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.counts.get("stored", 0)

    @property
    def already_stored(self) -> int:
        return self.counts.get("already_stored", 0)

    @property
    def rejected(self) -> int:
        return self.counts.get("rejected", 0)

    @property
    def conflict(self) -> int:
        return self.counts.get("conflict", 0)

    @property
    def ok(self) -> bool:
        return not self.failed
