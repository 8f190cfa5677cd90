"""What an import file says, whatever its format: frames, decisions, form submissions and AI results,
each with the row (CSV line, or JSON path) it came from so that every problem can name its place."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

MAX_PROBLEMS = 500  # a report lists this many; the count says how many there were


@dataclass
class Problem:
    row: str
    field: str
    problem: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameIn:
    row: str
    experiment: str
    scan: str
    scan_type: str
    frame_number: int
    file_location: str
    sop_instance_uid: str = ""
    md5: str = ""
    archive: str = ""
    # MIQA's names around the frame: kept for volumes (NIfTI, MGZ, NRRD) that become series here
    notes: str = ""
    subject_id: str = ""
    session_id: str = ""
    scan_link: str = ""


@dataclass
class DecisionIn:
    row: str
    experiment: str
    scan: str
    code: str
    creator: str
    created: dt.datetime
    note: str = ""
    role: str | None = None  # None: not in the file (MIQA CSV); the creator's role in the project then
    artifacts: dict = field(default_factory=dict)
    location: dict = field(default_factory=dict)


@dataclass
class SubmissionIn:
    row: str
    experiment: str
    scan: str
    form: str
    form_version: int
    creator: str
    email: str
    created: dt.datetime
    entry: dict
    entry_formatted: str = ""


@dataclass
class AiIn:
    row: str
    experiment: str
    scan: str
    model_name: str
    model_version: str
    finished: dt.datetime
    results: list


@dataclass
class Parsed:
    format: str
    project_names: dict = field(default_factory=dict)  # name -> the rows naming it
    frames: list = field(default_factory=list)
    decisions: list = field(default_factory=list)
    submissions: list = field(default_factory=list)
    ai: list = field(default_factory=list)
    forms: dict = field(default_factory=dict)  # (name, version) -> definition
    problems: list = field(default_factory=list)  # the first MAX_PROBLEMS: a huge bad file must not fill memory
    problem_count: int = 0

    def problem(self, row: str, field_name: str, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(str(row), field_name, text))


def location(value, parsed: Parsed, row: str, field_name: str) -> dict:
    """A decision's location as decisions.clean_location keeps one ({x, y, z} numbers), or {} and a problem: an
    import stores what the API would have accepted, no other shape."""
    from portal.errors import Invalid
    from portal.review.decisions import clean_location

    try:
        return clean_location(value) or {}
    except Invalid as exc:
        parsed.problem(row, field_name, exc.detail)
        return {}


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 date and time; seconds and the time zone are kept (no zone means UTC)."""
    text = (text or "").strip()
    if not text:
        raise ValueError("no date and time given")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not an ISO 8601 date and time such as 2026-11-22T19:35:34Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def second(value) -> dt.datetime:
    """A stored or parsed time as UTC, to the second: what decisions merge on."""
    if isinstance(value, str):
        value = parse_time(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def loads(value):
    """JSON columns come back as text from SQLite."""
    return json.loads(value) if isinstance(value, str) else value
