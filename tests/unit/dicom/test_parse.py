"""read_instance: samples in every syntax, character sets, and the files it must reject."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from portal.dicom import DicomRejected, ParsedInstance, read_instance
from portal.dicom.samples import MULTIFRAME_BY_SYNTAX, SAMPLES_BY_SYNTAX, restamp, sample_path
from portal.errors import Invalid

from ._files import cut, pixel_data_offset

# Truncated files make pydicom warn before we reject them.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("label", sorted(SAMPLES_BY_SYNTAX))
def test_parses_each_sample(label):
    parsed = read_instance(sample_path(SAMPLES_BY_SYNTAX[label]))
    assert isinstance(parsed, ParsedInstance)
    assert parsed.sop_instance_uid and parsed.study_instance_uid and parsed.series_instance_uid
    assert parsed.has_pixel_data and parsed.number_of_frames == 1
    assert parsed.rows and parsed.columns and parsed.bits_allocated
    assert parsed.transfer_syntax_uid.startswith("1.2.840.10008.1.2")


def test_fields_of_ct_small():
    p = read_instance(sample_path("CT_small.dcm"))
    assert p.transfer_syntax_uid == ExplicitVRLittleEndian
    assert p.modality == "CT"
    assert p.patient_name == "CompressedSamples^CT1"
    assert p.patient_id == "1CT1"
    assert (p.rows, p.columns, p.bits_allocated) == (128, 128, 16)
    assert p.photometric_interpretation == "MONOCHROME2"
    assert p.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert p.study_date == "20040119"
    assert p.manufacturer == "GE MEDICAL SYSTEMS"
    assert (p.series_number, p.patient_sex, p.institution_name) == (1, "O", "JFK IMAGING CENTER")
    assert p.instance_number == 1


def test_multiframe_counts_frames():
    assert read_instance(sample_path(MULTIFRAME_BY_SYNTAX["rle"])).number_of_frames == 10


def test_no_pixel_data_means_zero_frames():
    p = read_instance(sample_path("rtplan.dcm"))
    assert (p.has_pixel_data, p.number_of_frames, p.rows) == (False, 0, None)


def test_bare_dataset_without_preamble(tmp_path):
    # The same bytes without preamble, DICM and file meta: the encoding is guessed from the data.
    src = sample_path("CT_small.dcm")
    ds = dcmread(src)
    data = src.read_bytes()
    start = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(data[start:])
    p = read_instance(bare)
    assert p.sop_instance_uid == ds.SOPInstanceUID
    assert p.transfer_syntax_uid == ExplicitVRLittleEndian
    assert p.has_pixel_data


@pytest.mark.parametrize(
    "charset, name",
    [
        ("ISO_IR 100", "Buc^Jérôme"),
        ("ISO_IR 192", "Wang^XiaoDong=王^小東"),
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ],
)
def test_patient_name_decoded_with_declared_charset(tmp_path, charset, name):
    path = restamp(sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    ds = dcmread(path)
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.PatientName = name
    ds.save_as(path)
    if charset != "ISO_IR 192":  # really stored in the declared charset, not UTF-8
        assert name.encode("utf-8") not in path.read_bytes()
    assert read_instance(path).patient_name == name


def test_rejects_text_file(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("Patient notes, not an image.\n" * 20)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "not_dicom"
    assert isinstance(exc.value, Invalid)


def test_rejects_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "not_dicom"
    assert "empty" in exc.value.detail


def test_rejects_png_renamed(tmp_path):
    path = tmp_path / "image.dcm"
    Image.new("L", (64, 64), 128).save(path, "PNG")
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "not_dicom"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_rejects_file_cut_in_half(tmp_path, name):
    src = sample_path(name)
    path = cut(src, tmp_path / name, src.stat().st_size // 2)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "truncated"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm"])
def test_rejects_file_cut_inside_pixel_data(tmp_path, name):
    src = sample_path(name)
    path = cut(src, tmp_path / name, pixel_data_offset(src) + 100)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "truncated"


@pytest.mark.parametrize("length", [140, 301, 700, -3])
def test_rejects_file_cut_in_header_or_at_end(tmp_path, length):
    src = sample_path("MR_small_implicit.dcm")
    size = src.stat().st_size
    path = cut(src, tmp_path / "cut.dcm", length % size)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "truncated"


def test_rejects_pydicoms_own_truncated_sample():
    with pytest.raises(DicomRejected) as exc:
        read_instance(sample_path("MR_truncated.dcm"))
    assert exc.value.suberror == "truncated"


def test_rejects_missing_sop_instance_uid(tmp_path):
    path = tmp_path / "no_uid.dcm"
    ds = dcmread(sample_path("CT_small.dcm"))
    del ds.SOPInstanceUID
    del ds.SeriesInstanceUID
    ds.save_as(path)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "missing_uid"
    assert "SOP Instance UID" in exc.value.detail and "Series Instance UID" in exc.value.detail
    assert "Study Instance UID" not in exc.value.detail


@pytest.mark.parametrize("uid", ["1.2.abc", "1." + "2" * 70, "1..2"])
def test_rejects_malformed_uid(tmp_path, uid):
    path = restamp(sample_path("CT_small.dcm"), tmp_path / "bad.dcm", study_uid=uid)
    with pytest.raises(DicomRejected) as exc:
        read_instance(path)
    assert exc.value.suberror == "invalid_uid"


def _corpus() -> list:
    """Every sample file of pydicom and pydicom-data on this machine (many encodings; found by folder: asking
    pydicom for them all first tries to download its missing ones)."""
    import pydicom.data

    folders = [Path(pydicom.data.__file__).parent / "test_files", sample_path("693_UNCR.dcm").parent]
    return sorted({p for folder in folders for p in folder.rglob("*") if p.is_file()})


# What _instance_from reads (parse.py reads these from the raw bytes where it can).
_TEXT_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
                  "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyDescription",
                  "ReferringPhysicianName", "InstitutionName", "AccessionNumber", "StudyID", "SeriesDate",
                  "SeriesTime", "SeriesDescription", "Modality", "BodyPartExamined", "Manufacturer",
                  "ManufacturerModelName", "PhotometricInterpretation")
_INT_KEYWORDS = ("SeriesNumber", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames")


def test_raw_readers_give_what_pydicom_gives_on_every_sample():
    """The fast readers of the raw bytes agree with pydicom's conversion on every sample there is: other
    character sets, implicit and big-endian encodings, odd padding, multi-valued and damaged values."""
    from portal.dicom import parse

    compared = 0
    for path in _corpus():
        try:
            with open(path, "rb") as f:
                fast = parse._dcmread(f, parse._size(f), defer_size=parse.DEFER_SIZE)
            with open(path, "rb") as f:
                slow = parse._dcmread(f, parse._size(f), defer_size=parse.DEFER_SIZE)
        except DicomRejected:
            continue
        for kw in _TEXT_KEYWORDS:
            assert parse._text(fast, kw) == parse._converted_text(slow, kw), (path, kw)
        for kw in _INT_KEYWORDS:
            assert parse._int(fast, kw) == parse._converted_int(slow, kw), (path, kw)
        compared += 1
    assert compared > 100


def _by_pydicom(data: bytes):
    """What read_once gave before the header walk: pydicom's reading, or its refusal."""
    import io

    from portal.dicom import parse

    f = io.BytesIO(data)
    try:
        ds = parse._dcmread(f, len(data), defer_size=parse.DEFER_SIZE)
        parse._check_complete(ds, f, len(data))
        return parse._instance_from(ds)
    except DicomRejected as exc:
        return exc.suberror


def _by_walk(data: bytes):
    from portal.dicom import parse

    try:
        return parse.walk_header(data)
    except DicomRejected as exc:
        return exc.suberror


def test_header_walk_gives_what_pydicom_gives_on_every_sample():
    """Where the header walk answers, it answers as pydicom's reading does, on every sample there is and on
    copies cut short at several places (inside the file meta, the header, the pixel data, an element header)."""
    walked = compared = 0
    for path in _corpus():
        whole = path.read_bytes()
        for data in (whole, *(whole[:n] for n in {140, 200, len(whole) // 3, len(whole) // 2, len(whole) - 1,
                                                   len(whole) - 5} if 0 < n < len(whole))):
            fast = _by_walk(data)
            compared += 1
            if fast is None:
                continue
            assert fast == _by_pydicom(data), (path, len(data))
            walked += 1
    # the walk is the common path: it must answer for most real files (the rest go to pydicom)
    assert compared > 500 and walked > 100, (compared, walked)


def test_header_walk_reads_an_upload_as_pydicom_does():
    from portal.dicom import parse

    data = sample_path("693_UNCR.dcm").read_bytes()
    assert parse.walk_header(data) == _by_pydicom(data)
    assert parse.walk_header(data).rows == 512
    assert parse.walk_header(data[132:]) is None  # no preamble: pydicom's
