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


def test_imported_locations_and_answers_have_the_shapes_the_api_gives():
    """A decision's location is {x, y, z} numbers and answers are typed as forms.validation cleans them, as the
    API (and its OpenAPI document) says; anything else is a problem of the file, not stored."""
    scan = ('{"projects": {"p": {"experiments": {"e": {"scans": {"s": {"frames": {"0": "a.dcm"}, "decisions": ['
            '{"decision": "U", "creator": "r", "created": "2026-01-01T00:00:00Z", "location": {"i": 4}},'
            '{"decision": "U", "creator": "r", "created": "2026-01-02T00:00:00Z", "location": {"x": 1, "y": 2, "z": 3}}'
            '], "form_submissions": [{"form": "f", "form_version": 1, "created": "2026-01-01T00:00:00Z",'
            '"entry": {"a": {"nested": 1}}}]}}}}}}}')
    parsed = Parsed(format="json")
    jsonformat.read(scan, parsed, ARTIFACTS)
    assert {(p.row, p.field) for p in parsed.problems} == {("e / s / decisions[0]", "location"),
                                                          ("e / s / form_submissions[0]", "entry")}
    assert parsed.decisions[1].location == {"x": 1.0, "y": 2.0, "z": 3.0} and not parsed.submissions
    header = ",".join(csvformat.COLUMNS)
    parsed = _csv(f'{header}\np,e,s,T1,0,a.dcm,,,,,U,rev,,2026-01-01T00:00:00Z,,"{{""x"": ""left"", ""y"": 0}}"\n')
    assert [(p.row, p.field) for p in parsed.problems] == [("2", "location_of_interest")]


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


def test_pruning_backups_keeps_other_files_and_the_incoming_series(tmp_path):
    from portal.exchange.exporter import backup

    for name in ("chest.json", "chest.ct.json"):
        (tmp_path / name).write_text(name)
    mine = [backup(tmp_path / "chest.json", 1) for _ in range(3)]
    theirs = backup(tmp_path / "chest.ct.json", 1)  # `chest.ct.<stamp>.json` also matches `chest.*.json`
    incoming = backup(tmp_path / "chest.json", 1, label="incoming")
    again = backup(tmp_path / "chest.json", 1)
    left = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert left == sorted([theirs.name, incoming.name, again.name]) and not any(p.exists() for p in mine)
    assert backup(tmp_path / "chest.ct.json", 1).exists() and not theirs.exists() and again.exists()


def test_deidentification_reaches_into_sequences_and_goes_by_vr(tmp_path):
    from pydicom.dataset import Dataset

    src = samples.sample_path("CT_small.dcm")
    ds = open_dataset(src, defer_size=None)
    source = Dataset()
    source.PatientName, source.PatientID, source.ReferencedSOPInstanceUID = "Doe^Jane", "MRN-77", "1.2.3.4.5"
    source.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    source.add_new(0x00291010, "LO", "private in a sequence")
    ds.add_new(0x00291000, "LO", "private block")  # registers a private creator
    ds.ReferencedSeriesSequence = [source]  # kept by the profile, its items cleaned
    ds.SourceImageSequence = [Dataset()]  # X/Z/U* in the profile: removed
    modified = Dataset()
    modified.PatientName = "Doe^Jane"
    original = Dataset()
    original.ModifiedAttributesSequence = [modified]
    ds.OriginalAttributesSequence = [original]
    ds.PerformedProcedureStepEndDate, ds.ReferringPhysicianTelephoneNumbers = "20250101", "555-0100"
    ds.ScheduledPerformingPhysicianName, ds.InstanceCreatorUID = "Who^Dr", "1.2.3.99"
    ds.OperatorsName, ds.AcquisitionDateTime, ds.DateOfLastCalibration = "Op^One", "20250101101010", "20240101"
    klass = ds.SOPClassUID
    a = Deidentifier("s", "p", remap_uids=True)
    out = a.dataset(ds)
    for keyword in ("OriginalAttributesSequence", "PerformedProcedureStepEndDate", "ReferringPhysicianTelephoneNumbers",
                    "ScheduledPerformingPhysicianName", "OperatorsName", "AcquisitionDateTime"):
        assert keyword not in out or not out[keyword].value, keyword
    assert "SourceImageSequence" not in out
    item = out.ReferencedSeriesSequence[0]
    assert not item.PatientName and item.PatientID == a.patient_id("MRN-77")
    assert item.ReferencedSOPInstanceUID == a.uid("1.2.3.4.5")
    assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and out.SOPClassUID == klass  # classes kept
    assert out.InstanceCreatorUID == a.uid("1.2.3.99") and "DateOfLastCalibration" not in out  # X in the table
    assert not any(e.tag.is_private for e in out.iterall())
    assert "Doe^Jane" not in str(out) and "MRN-77" not in str(out)


def test_problems_are_capped_while_collected_and_counted():
    from portal.exchange.importer import ImportRefused
    from portal.exchange.records import MAX_PROBLEMS

    parsed = Parsed(format="csv")
    for n in range(MAX_PROBLEMS + 100):
        parsed.problem(str(n + 2), "file_location", "File not found.")
    assert len(parsed.problems) == MAX_PROBLEMS and parsed.problem_count == MAX_PROBLEMS + 100
    refused = ImportRefused(parsed.problems, "f.csv", parsed.problem_count)
    assert refused.count == MAX_PROBLEMS + 100 and f"the first {MAX_PROBLEMS} are listed" in refused.detail
