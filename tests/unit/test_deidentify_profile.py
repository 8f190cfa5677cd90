"""De-identification walks the whole PS3.15 Annex E basic profile table (dicom-anonymizer's copy of the standard's
Table E.1-1): every attribute it names, set to a telling value, comes out removed, emptied, replaced or remapped
as the table says; then the options (retain UIDs, modified dates, clean descriptors) and burned-in annotation."""

import datetime as dt

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from portal.dicom import open_dataset, samples
from portal.exchange import deidentify
from portal.exchange.deidentify import BurnedInAnnotation, Deidentifier

SECRET = "IDENTSECRET"
# Set by the de-identifier itself afterwards: walked separately below.
SPECIAL = {"PatientID", "PatientName", "PatientIdentityRemoved", "DeidentificationMethod",
           "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified"}


def _value(vr: str):
    vr = vr.split(" or ")[0]
    return {"AE": SECRET, "AS": "042Y", "CS": SECRET, "DA": "20200317", "DS": "7", "DT": "20200317101010",
            "FD": 7.0, "FL": 7.0, "IS": "7", "LO": SECRET, "LT": SECRET, "OB": b"IDENTSEC", "OD": b"IDENTSEC",
            "OF": b"IDENTSEC", "OL": b"IDENTSEC", "OV": b"IDENTSEC", "OW": b"IDENTSEC", "PN": "Doe^Jane",
            "SH": SECRET, "SL": 7, "SS": 7, "ST": SECRET, "SV": 7, "TM": "101010", "UC": SECRET,
            "UI": "1.2.826.0.1.3680043.2.1125.77", "UL": 7, "UN": b"IDENTSEC", "UR": "http://ident.test/x",
            "US": 7, "UT": SECRET, "UV": 7, "AT": 0x00100010}[vr], vr


def _table():
    for tag, action in sorted(deidentify.PROFILE.items()):
        if tag >> 16 == 0x0002:
            continue  # file meta information: written fresh by write_file
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        keyword = keyword_for_tag(tag)
        if keyword in SPECIAL:
            continue
        yield Tag(tag), keyword, vr, action


def test_the_table_is_the_standards_whole_table():
    assert deidentify.TABLE_VERSION == "dicomfields_2026c"
    assert len(deidentify.PROFILE) + len(deidentify._RANGES) >= 650
    walked = list(_table())
    assert len(walked) >= 620  # all but the file meta group and names pydicom's dictionary does not know
    for keyword in ("AdmissionID", "ReasonForStudy", "IdentifyingComments", "DetectorID", "PlateID",
                    "AcquisitionComments", "ClinicalTrialSponsorName", "ClinicalTrialSubjectID"):
        assert deidentify.action_for(int(Tag(keyword))) is not None, keyword


@pytest.mark.parametrize("remap", [True, False])
def test_every_attribute_of_the_profile_table_gets_its_action(remap):
    ds = Dataset()
    for tag, keyword, vr, action in _table():
        if vr == "SQ":
            item = Dataset()
            item.PatientName = "Doe^Jane"
            item.StudyDate = "20200317"
            ds.add_new(tag, "SQ", [item])
        else:
            value, one_vr = _value(vr)
            ds.add_new(tag, one_vr, value)
    original = {int(e.tag): e.value for e in ds if e.VR != "SQ"}
    a = Deidentifier("secret", "p", remap_uids=remap)
    out = a.dataset(ds)
    wrong = []
    for tag, keyword, vr, action in _table():
        element = out.get(tag)
        if action == "X":
            ok = element is None
        elif vr == "SQ":
            ok = element is not None and (not element.value or all(
                not item.get("PatientName") and not item.get("StudyDate") for item in element.value))
        elif action == "Z":
            ok = element is not None and element.value in ("", None, b"", 0, "0", [])
        elif action == "D":
            ok = element is not None and element.value != original[int(tag)] and SECRET not in str(element.value)
        else:  # U
            ok = element is not None and (element.value == a.uid(original[int(tag)]) if remap
                                          else element.value == original[int(tag)])
            ok = ok and (not remap or str(element.value).startswith("2.25."))
        if not ok:
            wrong.append(f"{keyword} ({action}, {vr}): {element.value if element is not None else 'absent'!r}")
    assert not wrong, "\n".join(wrong)
    assert SECRET not in str(out) and "Doe^Jane" not in str(out)


def _sample() -> Dataset:
    ds = open_dataset(samples.sample_path("CT_small.dcm"), defer_size=None)
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = "MRN-4242", "Doe^Jane", "20200317", "101010"
    ds.SeriesDescription = "Chest for Doe MRN-4242"
    ds.PatientBirthDate = "19700101"
    return ds


def test_retain_longitudinal_shifts_every_date_of_one_patient_by_the_same_days():
    a = Deidentifier("secret", "p", shift_dates=True)
    one, two = a.dataset(_sample()), a.dataset(_sample())
    shift = a.date_shift("MRN-4242")
    assert dt.timedelta(days=-3650) <= shift <= dt.timedelta(days=-365)
    assert one.StudyDate == (dt.date(2020, 3, 17) + shift).strftime("%Y%m%d") == two.StudyDate
    assert one.StudyTime == "101010"  # times kept
    assert not one.PatientBirthDate
    assert one.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "113107" in [c.CodeValue for c in one.DeidentificationMethodCodeSequence]
    assert Deidentifier("secret", "p").dataset(_sample()).StudyDate == ""  # without the option: emptied


def test_clean_descriptors_keeps_descriptions_without_the_patients_identifiers():
    plain = Deidentifier("secret", "p").dataset(_sample())
    assert "SeriesDescription" not in plain
    cleaned = Deidentifier("secret", "p", clean_descriptors=True).dataset(_sample())
    assert cleaned.SeriesDescription.startswith("Chest for")
    assert "MRN-4242" not in cleaned.SeriesDescription and "Doe" not in cleaned.SeriesDescription
    assert "113105" in [c.CodeValue for c in cleaned.DeidentificationMethodCodeSequence]


def test_burned_in_annotation_is_refused(tmp_path):
    src = tmp_path / "marked.dcm"
    ds = _sample()
    ds.BurnedInAnnotation = "YES"
    ds.save_as(src)
    with pytest.raises(BurnedInAnnotation):
        Deidentifier("secret", "p").write_file(src, tmp_path / "out.dcm")
    ds.BurnedInAnnotation = "NO"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # a secondary capture marked free of burned-in text
    assert deidentify.burned_in_reason(ds) is None
    del ds.BurnedInAnnotation
    assert "screen capture" in deidentify.burned_in_reason(ds)
