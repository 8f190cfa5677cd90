"""Import file reading without a database: dates, CSV headers and rows, JSON structure, de-identification."""

import datetime as dt

import pytest

from portal.dicom import open_dataset, samples
from portal.exchange import csvformat, jsonformat
from portal.exchange.deidentify import Deidentifier
from portal.exchange.records import Parsed, parse_time, second

ARTIFACTS = ["lesions", "ghosting_motion"]


def test_times_keep_seconds_and_zone():
    assert parse_time("2026-03-01T10:15:42+02:00") == dt.datetime(2026, 3, 1, 8, 15, 42, tzinfo=dt.timezone.utc)
    assert parse_time("2026-03-01T10:15:42Z").second == 42
    assert parse_time("2026-03-01 10:15:42").tzinfo is not None  # no zone given: UTC
    assert second("2026-03-01T10:15:42.987654Z").microsecond == 0
    for bad in ("", "yesterday", "2026-13-01T00:00:00Z", "01/03/2026"):
        with pytest.raises(ValueError):
            parse_time(bad)


def _csv(text: str) -> Parsed:
    parsed = Parsed(format="csv")
    csvformat.read(text, parsed, ARTIFACTS)
    return parsed


def test_miqa_minimal_header_and_spaces_are_accepted():
    parsed = _csv("project_name, experiment_name, scan_name, scan_type, frame_number, file_location\n"
                  "p,e,s,T1,0,a.dcm\np,e,s,T1,1,b.dcm\n")
    assert not parsed.problems and [f.frame_number for f in parsed.frames] == [0, 1]


def test_csv_rows_report_each_problem():
    header = ",".join(csvformat.COLUMNS)
    parsed = _csv(f"{header}\n"
                  "p,e,s,T1,x,a.dcm,,,,,,,,,,\n"
                  "p,e,s,T1,0,a.dcm,,,,,U,,,2026-01-01T00:00:00Z,,\n"
                  "p,e,s,T1,0,b.dcm,,,,,,,,,,\n"
                  "p,e,s2,T1,0,c.dcm,,,,,U,rev,,2026-01-01T00:00:00Z,nonsense;lesions,{bad\n"
                  "p,e,s3\n")
    got = {(p.row, p.field) for p in parsed.problems}
    assert got == {("2", "frame_number"), ("3", "last_decision_creator"), ("4", "frame_number"),
                   ("5", "identified_artifacts"), ("5", "location_of_interest"), ("6", "")}


def test_json_structure_problems_name_their_place():
    parsed = Parsed(format="json")
    jsonformat.read('{"projects": {"p": {"experiments": {"e": {"scans": {"s": {"frames": {"0": "a.dcm", "x": "b"},'
                    '"decisions": [{"decision": "U", "creator": "r", "created": "soon"}]}}}}}}}', parsed, ARTIFACTS)
    assert {(p.row, p.field) for p in parsed.problems} == {("e / s / frames.x", "frame_number"),
                                                          ("e / s / decisions[0]", "created")}
    parsed = Parsed(format="json")
    jsonformat.read('{"projects": {"p": {}, "p": {}}}', parsed, ARTIFACTS)
    assert any("Duplicate key 'p'" in p.problem for p in parsed.problems)


def test_deidentifier_is_consistent_and_keyed(tmp_path):
    a, b = Deidentifier("s", "p", remap_uids=True), Deidentifier("s", "p", remap_uids=True)
    assert a.patient_id("X") == b.patient_id("X") != a.patient_id("Y")
    assert a.uid("1.2.3") == b.uid("1.2.3") and a.uid("1.2.3").startswith("2.25.") and len(a.uid("1.2.3")) <= 64
    assert Deidentifier("other", "p").patient_id("X") != a.patient_id("X")
    assert Deidentifier("s", "p").uid("1.2.3") == "1.2.3"  # kept unless remapped
    src = samples.sample_path("CT_small.dcm")
    a.write_file(src, tmp_path / "out.dcm")
    ds, orig = open_dataset(tmp_path / "out.dcm", defer_size=None), open_dataset(src, defer_size=None)
    assert ds.PatientID == a.patient_id(orig.PatientID) and ds.SOPInstanceUID == a.uid(orig.SOPInstanceUID)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PatientIdentityRemoved == "YES" and "InstitutionName" not in ds and ds.PixelData == orig.PixelData
