"""samples: every named sample exists; restamp and make_series give fresh, consistent UIDs."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread

from portal.dicom import read_instance
from portal.dicom.samples import (
    CHEST_CR,
    CT_SLICE,
    MR_SLICE,
    MULTIFRAME_BY_SYNTAX,
    SAMPLES_BY_SYNTAX,
    make_series,
    restamp,
    sample_path,
)


def test_every_named_sample_exists():
    names = {*SAMPLES_BY_SYNTAX.values(), *MULTIFRAME_BY_SYNTAX.values(), CHEST_CR, CT_SLICE, MR_SLICE}
    for name in names:
        assert sample_path(name).is_file()


def test_missing_sample():
    with pytest.raises(FileNotFoundError):
        sample_path("no_such_sample.dcm")


def test_restamp_gives_fresh_uids_and_keeps_pixels(tmp_path):
    src = sample_path("MR_small_RLE.dcm")
    dest = restamp(src, tmp_path / "copy.dcm", patient_id="P-7", instance_number=9, position_z=12.5)
    before, after = read_instance(src), read_instance(dest)
    assert after.sop_instance_uid != before.sop_instance_uid
    assert after.series_instance_uid != before.series_instance_uid
    assert after.study_instance_uid != before.study_instance_uid
    assert (after.patient_id, after.instance_number) == ("P-7", 9)
    assert after.transfer_syntax_uid == before.transfer_syntax_uid
    ds = dcmread(dest)
    assert float(ds.ImagePositionPatient[2]) == 12.5
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, dcmread(src).pixel_array)


def test_restamp_keeps_given_uids(tmp_path):
    dest = restamp(sample_path("CT_small.dcm"), tmp_path / "a.dcm", study_uid="1.2.3", series_uid="1.2.3.4",
                   sop_uid="1.2.3.4.5")
    p = read_instance(dest)
    assert (p.study_instance_uid, p.series_instance_uid, p.sop_instance_uid) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")


def test_restamp_makes_a_part10_file_from_a_bare_dataset(tmp_path):
    dest = restamp(sample_path("ExplVR_LitEndNoMeta.dcm"), tmp_path / "meta.dcm")
    assert dest.read_bytes()[128:132] == b"DICM"
    assert read_instance(dest).transfer_syntax_uid == "1.2.840.10008.1.2.1"


def test_make_series(tmp_path):
    paths = make_series(sample_path("CT_small.dcm"), tmp_path / "series", 5, study_uid="1.2.3", patient_id="P1")
    parsed = [read_instance(p) for p in paths]
    assert len({p.sop_instance_uid for p in parsed}) == 5
    assert {p.series_instance_uid for p in parsed} != {read_instance(sample_path("CT_small.dcm")).series_instance_uid}
    assert len({p.series_instance_uid for p in parsed}) == 1
    assert {p.study_instance_uid for p in parsed} == {"1.2.3"}
    assert {p.patient_id for p in parsed} == {"P1"}
    assert [p.instance_number for p in parsed] == [1, 2, 3, 4, 5]
    z = [float(dcmread(p).ImagePositionPatient[2]) for p in paths]
    assert z == sorted(z) and len(set(z)) == 5
