"""CSV export cells that a spreadsheet would run as formulas are neutralised, and import reads them back exactly."""

import csv
import io

from portal.exchange import csvformat
from portal.exchange.records import Parsed

NOTES = ["=HYPERLINK(\"http://evil.test\",\"click\")", "+1+1", "-2+3", "@SUM(A1:A2)", "'=already quoted",
         "''=two quotes", "plain note", "it's fine", "\tTAB=1"]


def _document(note: str) -> dict:
    scan = {"type": "T1", "frames": {"0": {"file_location": "=a.dcm"}},
            "last_decision": {"decision": "U", "creator": "rev", "note": note, "created": "2026-01-01T00:00:00Z",
                              "user_identified_artifacts": {}, "location": None}}
    return {"projects": {"p": {"experiments": {"e": {"notes": note, "subject_id": "", "session_id": "",
                                                     "scans": {"s": scan}}}}}}


def test_formula_cells_are_neutralised_and_round_trip():
    for note in NOTES:
        out = io.StringIO()
        assert csvformat.write(_document(note), out) == 1
        header, row = list(csv.reader(io.StringIO(out.getvalue())))
        cells = dict(zip(header, row))
        for cell in (cells["experiment_notes"], cells["last_decision_note"], cells["file_location"]):
            assert cell[:1] not in ("=", "+", "-", "@", "\t"), cell
        parsed = Parsed(format="csv")
        csvformat.read(out.getvalue(), parsed, [])
        assert not parsed.problems, parsed.problems
        assert parsed.decisions[0].note == note
        assert parsed.frames[0].file_location == "=a.dcm"
