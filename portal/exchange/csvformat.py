"""MIQA's CSV: one row per frame, the columns in MIQA's order; the last decision of each scan on its rows."""

from __future__ import annotations

import csv
import io
import json

from portal.exchange import records
from portal.exchange.records import DecisionIn, FrameIn, Parsed, parse_time

COLUMNS = ("project_name", "experiment_name", "scan_name", "scan_type", "frame_number", "file_location",
           "experiment_notes", "subject_id", "session_id", "scan_link", "last_decision", "last_decision_creator",
           "last_decision_note", "last_decision_created", "identified_artifacts", "location_of_interest")
REQUIRED = COLUMNS[:6]  # MIQA's import needs these; the rest are what its export adds


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) in a reviewer's note).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value) -> str:
    """A cell a spreadsheet shows as text: a leading quote before a formula character (and before a quote that
    precedes one, so that `restore` gives back exactly what was written)."""
    text = "" if value is None else str(value)
    if text[:1] in _FORMULA or (text[:1] == "'" and text[1:2] in (*_FORMULA, "'")):
        return "'" + text
    return text


def restore(text: str) -> str:
    """The value `neutralise` was given (import reads back what export wrote)."""
    if text[:1] == "'" and (text[1:2] in _FORMULA or text[1:2] == "'"):
        return text[1:]
    return text


def write(document: dict, out) -> int:
    """Write the frames of an export document as CSV rows to text stream `out`; returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for project_name, project in document["projects"].items():
        for exp_name, exp in project["experiments"].items():
            for scan_name, scan in exp["scans"].items():
                last = scan.get("last_decision") or {}
                artifacts = last.get("user_identified_artifacts") or {}
                decision_cells = [
                    last.get("decision", ""), last.get("creator", ""), last.get("note", ""), last.get("created", ""),
                    ";".join(sorted(k for k, v in artifacts.items() if v == 1)),
                    json.dumps(last["location"], sort_keys=True) if last.get("location") else "",
                ]
                for number, frame in scan["frames"].items():
                    writer.writerow([neutralise(c) for c in (
                        project_name, exp_name, scan_name, scan.get("type", ""), number, frame["file_location"],
                        exp.get("notes", ""), exp.get("subject_id", ""), exp.get("session_id", ""),
                        scan.get("scan_link", ""), *decision_cells)])
                    n += 1
    return n


def read(text: str, parsed: Parsed, artifacts_known: list[str]) -> None:
    """Read CSV `text` into `parsed` (frames and decisions), noting every problem with its line."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        parsed.problem("1", "", "The file is empty: it needs a header row and one row per frame.")
        return
    except csv.Error as exc:
        parsed.problem("1", "", f"Not a readable CSV file: {exc}.")
        return
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in names]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if unknown or missing or repeated:
        what = []
        if missing:
            what.append("missing column(s) " + ", ".join(missing))
        if unknown:
            what.append("unknown column(s) " + ", ".join(repr(u[:40]) for u in unknown[:10]))
        if repeated:
            what.append("repeated column(s) " + ", ".join(repeated))
        parsed.problem("1", "header", "Wrong header: " + "; ".join(what) + ". The header must name MIQA's columns: "
                       + ", ".join(COLUMNS) + f" (the first {len(REQUIRED)} are required).")
        return
    seen_frames: dict[tuple, str] = {}
    try:
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                parsed.problem(line, "", f"The row has {len(cells)} cells; the header has {len(names)}.")
                continue
            _row(dict(zip(names, (restore(c.strip()) for c in cells))), str(line), parsed, artifacts_known,
                 seen_frames)
    except csv.Error as exc:
        parsed.problem(str(reader.line_num), "", f"Not a readable CSV row: {exc}.")


def _row(row: dict, line: str, parsed: Parsed, artifacts_known: list[str], seen: dict) -> None:
    project = row["project_name"]
    parsed.project_names.setdefault(project, []).append(line)
    ok = True
    for column in ("experiment_name", "scan_name", "file_location"):
        if not row[column]:
            parsed.problem(line, column, f"{column} is empty.")
            ok = False
    try:
        number = int(row["frame_number"])
        if number < 0:
            raise ValueError
    except ValueError:
        parsed.problem(line, "frame_number", f"frame_number '{row['frame_number'][:20]}' is not a whole number ≥ 0.")
        ok = False
    if not ok:
        return
    key = (row["experiment_name"], row["scan_name"], number)
    if key in seen:
        parsed.problem(line, "frame_number", f"Duplicate row: frame {number} of scan '{row['scan_name']}' in "
                       f"experiment '{row['experiment_name']}' is already on row {seen[key]}.")
        return
    seen[key] = line
    parsed.frames.append(FrameIn(line, row["experiment_name"], row["scan_name"], row.get("scan_type", ""), number,
                                 row["file_location"], notes=row.get("experiment_notes", ""),
                                 subject_id=row.get("subject_id", ""), session_id=row.get("session_id", ""),
                                 scan_link=row.get("scan_link", "")))
    code = row.get("last_decision", "")
    if not code:
        return
    creator = row.get("last_decision_creator", "")
    if not creator:
        parsed.problem(line, "last_decision_creator", "A decision needs its creator (last_decision_creator).")
    try:
        created = parse_time(row.get("last_decision_created", ""))
    except ValueError as exc:
        parsed.problem(line, "last_decision_created", f"Bad date: {exc}.")
        return
    artifacts = {}
    for name in filter(None, (a.strip() for a in row.get("identified_artifacts", "").split(";"))):
        if name not in artifacts_known:
            parsed.problem(line, "identified_artifacts", f"Unknown artifact '{name[:40]}'; this project's artifacts: "
                           + ", ".join(artifacts_known) + ".")
        artifacts[name] = 1
    location = {}
    if row.get("location_of_interest"):
        try:
            location = records.location(json.loads(row["location_of_interest"]), parsed, line, "location_of_interest")
        except ValueError:
            parsed.problem(line, "location_of_interest", 'location_of_interest must look like {"x": 1, "y": 2, "z": 3}.')
    if creator:
        parsed.decisions.append(DecisionIn(line, row["experiment_name"], row["scan_name"], code, creator, created,
                                           note=row.get("last_decision_note", ""), artifacts=artifacts,
                                           location=location))
