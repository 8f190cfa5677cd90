"""An instance re-sent in another (lossless) transfer syntax is already stored; any other difference is a conflict."""

import pydicom
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from portal.archive import ingest
from portal.dicom import samples
from portal.dicom.equivalence import same_apart_from_encoding
from tests.helpers import make_project


def variant(src, dest, *, syntax=None, **changes):
    ds = pydicom.dcmread(src)
    for k, v in changes.items():
        setattr(ds, k, v)
    if syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    elif syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(dest, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return dest


def test_the_comparison(tmp_path):
    a = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    assert same_apart_from_encoding(a, variant(a, tmp_path / "rle.dcm", syntax=RLELossless))
    assert same_apart_from_encoding(a, variant(a, tmp_path / "ivr.dcm", syntax=ImplicitVRLittleEndian))
    assert not same_apart_from_encoding(a, variant(a, tmp_path / "name.dcm", syntax=RLELossless, PatientName="X^Y"))
    ds = pydicom.dcmread(a)
    arr = ds.pixel_array.copy()
    arr[0, 0] += 1
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "pixel.dcm", enforce_file_format=True)
    assert not same_apart_from_encoding(a, tmp_path / "pixel.dcm")


async def test_ingest_says_already_stored_for_another_encoding(app, tmp_path):
    chest = await make_project("chest")
    a = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    assert (await ingest.ingest_file(a, chest)).status == "stored"
    assert (await ingest.ingest_file(variant(a, tmp_path / "rle.dcm", syntax=RLELossless), chest)).status == \
        "already_stored"
    other = variant(a, tmp_path / "other.dcm", syntax=RLELossless, PatientName="OTHER^NAME")
    assert (await ingest.ingest_file(other, chest)).status == "conflict"
