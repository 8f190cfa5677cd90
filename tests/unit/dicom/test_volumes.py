"""Volumes as DICOM (issue 18): geometry from the affine for NIfTI, MGZ and NRRD, oblique included; 16-bit
rescale for float data; 4D as temporal positions; the same file gives the same bytes; bad volumes refused."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from pydicom import dcmread

from portal.dicom import DicomRejected
from portal.dicom import volumes as V
from tests import volume_samples as vs

NAMES = V.Names(project="p", experiment="exp-1", scan="t1_mprage", scan_type="T1", subject_id="S-7",
                session_id="SES-3")


def _convert(path):
    volume, files = V.convert(path.read_bytes(), path.name, NAMES)
    return volume, [dcmread(io.BytesIO(b)) for b in files]


@pytest.mark.parametrize("kind", ["nii.gz", "nii", "mgz", "nrrd"])
@pytest.mark.parametrize("affine", [np.diag([0.9, 0.8, 3.0, 1.0]), vs.oblique_affine()], ids=["axial", "oblique"])
def test_a_voxels_patient_position_from_dicom_equals_nibabels(tmp_path, kind, affine):
    data = vs.mr_pixels()
    path = tmp_path / f"v.{kind}"
    {"nii.gz": vs.nifti, "nii": vs.nifti, "mgz": vs.mgz, "nrrd": vs.nrrd_file}[kind](path, data, affine)
    _, images = _convert(path)
    assert len(images) == data.shape[2]
    for k, (i, j) in [(0, (0, 0)), (3, (5, 7)), (9, (63, 40))]:
        ds = images[k]
        assert ds.InstanceNumber == k + 1
        np.testing.assert_allclose(vs.voxel_from_dicom(ds, i, j), vs.voxel_world_lps(affine, i, j, k), atol=1e-4)
        value = ds.pixel_array[j, i] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert value == pytest.approx(float(data[i, j, k]), abs=1e-3)
    assert float(images[0].SliceThickness) == pytest.approx(np.linalg.norm(affine[:3, 2]))
    normal = np.cross(np.array(images[0].ImageOrientationPatient[:3], float),
                      np.array(images[0].ImageOrientationPatient[3:], float))
    assert np.linalg.norm(normal) == pytest.approx(1.0)


def test_names_and_uids_follow_miqa_and_repeat_exactly(tmp_path):
    path = vs.nifti(tmp_path / "a.nii.gz", vs.mr_pixels(), vs.oblique_affine())
    first = V.convert(path.read_bytes(), path.name, NAMES)[1]
    assert V.convert(path.read_bytes(), path.name, NAMES)[1] == first  # same file, same bytes
    ds = dcmread(io.BytesIO(first[0]))
    assert (ds.PatientID, ds.StudyDescription, ds.SeriesDescription, ds.ProtocolName) == (
        "S-7", "exp-1", "T1", "t1_mprage")
    assert ds.StudyID == ds.AccessionNumber == "SES-3"
    assert ds.SeriesInstanceUID == V.series_uid("p", "exp-1", "t1_mprage")
    assert ds.StudyInstanceUID == V.study_uid("p", "exp-1")
    assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    changed = vs.mr_pixels()
    changed[0, 0, 0] += 1
    other = V.convert(vs.nifti(tmp_path / "b.nii.gz", changed, vs.oblique_affine()).read_bytes(), "b.nii.gz",
                      NAMES)[1]
    ds2 = dcmread(io.BytesIO(other[0]))
    assert ds2.SeriesInstanceUID == ds.SeriesInstanceUID and ds2.SOPInstanceUID != ds.SOPInstanceUID


def test_float_data_is_rescaled_onto_16_bits(tmp_path):
    data = vs.mr_pixels().astype(np.float32) / 7.3 - 12.5
    _, images = _convert(vs.nifti(tmp_path / "f.nii", data, np.eye(4)))
    ds = images[4]
    assert ds.BitsAllocated == 16 and float(ds.RescaleSlope) != 1.0
    got = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    step = (data.max() - data.min()) / 65535
    np.testing.assert_allclose(got, data[:, :, 4].T, atol=step)


def test_4d_is_one_series_with_temporal_positions(tmp_path):
    data = np.stack([vs.mr_pixels()[:, :, :4] + t for t in range(3)], axis=-1)
    _, images = _convert(vs.nifti(tmp_path / "bold.nii.gz", data, vs.oblique_affine()))
    assert len(images) == 12 and len({d.SeriesInstanceUID for d in images}) == 1
    assert [d.TemporalPositionIdentifier for d in images] == [1] * 4 + [2] * 4 + [3] * 4
    assert [d.InstanceNumber for d in images] == list(range(1, 13))
    assert images[0].ImagePositionPatient == images[4].ImagePositionPatient
    assert images[5].pixel_array[2, 3] == data[3, 2, 1, 1]


def test_bad_volumes_are_refused_with_their_reason(tmp_path):
    import nibabel as nib

    good = vs.nifti(tmp_path / "g.nii.gz", vs.mr_pixels(), np.eye(4)).read_bytes()
    with pytest.raises(DicomRejected) as exc:
        V.convert(good[: len(good) // 2], "cut.nii.gz", NAMES)
    assert exc.value.suberror == "truncated"
    raw = gzip.decompress(good)
    with pytest.raises(DicomRejected) as exc:
        V.convert(raw[: len(raw) - 1000], "cut.nii", NAMES)
    assert exc.value.suberror == "truncated"
    img = nib.Nifti1Image(vs.mr_pixels(), None)  # neither qform nor sform set
    assert int(img.header["qform_code"]) == int(img.header["sform_code"]) == 0
    with pytest.raises(DicomRejected) as exc:
        V.convert(img.to_bytes(), "noaffine.nii", NAMES)
    assert exc.value.suberror == "no_affine"
    cplx = nib.Nifti1Image(vs.mr_pixels().astype(np.complex64), np.eye(4))
    with pytest.raises(DicomRejected) as exc:
        V.convert(cplx.to_bytes(), "complex.nii", NAMES)
    assert exc.value.suberror == "unsupported_datatype"
    with pytest.raises(DicomRejected) as exc:
        V.convert(b"not a volume at all", "x.nii", NAMES)
    assert "NIfTI" in exc.value.detail
