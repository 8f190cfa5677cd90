"""Sample DICOM files for tests, the demo and benchmarks, and re-stamping them with fresh UIDs."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from portal.dicom.parse import open_dataset, transfer_syntax_of

# One sample per transfer syntax, each checked to decode with render_frame.
# Bundled with pydicom unless marked (pydicom-data, the `test` extra).
SAMPLES_BY_SYNTAX: dict[str, str] = {
    "explicit_le": "CT_small.dcm",  # CT 128x128 int16
    "implicit_le": "MR_small_implicit.dcm",  # MR 64x64
    "explicit_be": "MR_small_bigendian.dcm",  # retired big endian
    "deflated": "image_dfl.dcm",  # OT 512x512 8-bit
    "rle": "MR_small_RLE.dcm",
    "jpeg_baseline": "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL colour 100x100
    "jpeg_extended": "JPGExtended.dcm",  # NM 1024x256 12-bit
    "jpeg_lossless": "JPGLosslessP14SV1_1s_1f_8b.dcm",  # pydicom-data; US 1024x768 8-bit, process 14 SV1
    "jpeg_ls": "MR_small_jpeg_ls_lossless.dcm",
    "jpeg2000": "MR_small_jp2klossless.dcm",  # lossless
    "jpeg2000_lossy": "JPEG2000.dcm",  # NM 1024x256
}

# Multi-frame samples (10 frames of 64x64 MR), same image in several syntaxes.
MULTIFRAME_BY_SYNTAX: dict[str, str] = {
    "explicit_le": "emri_small.dcm",
    "rle": "emri_small_RLE.dcm",
    "jpeg_ls": "emri_small_jpeg_ls_lossless.dcm",
    "jpeg2000": "emri_small_jpeg_2k_lossless.dcm",
}

# Full-size images from pydicom-data: UNCI = uncompressed, J2KR = JPEG 2000 lossless, J2KI = lossy.
CHEST_CR = "RG1_UNCI.dcm"  # CR chest 1955x1841, MONOCHROME1, 7 MB; also RG1_J2KR.dcm, RG1_J2KI.dcm
CT_SLICE = "693_UNCI.dcm"  # CT 512x512; also 693_J2KR.dcm, 693_J2KI.dcm
MR_SLICE = "MR2_UNCI.dcm"  # MR 1024x1024; also MR2_J2KR.dcm, MR2_J2KI.dcm


def sample_path(name: str) -> Path:
    """The local path of a pydicom or pydicom-data sample; never downloads."""
    found = get_testdata_file(name, download=False)
    if not found:
        raise FileNotFoundError(
            f"Sample {name!r} is not installed; pydicom bundles the small ones, "
            "the rest come with `pip install pydicom-data`."
        )
    return Path(found)


def restamp(src: str | Path, dest: str | Path, *, study_uid: str | None = None, series_uid: str | None = None,
            sop_uid: str | None = None, patient_id: str | None = None, instance_number: int | None = None,
            position_z: float | None = None) -> Path:
    """Write a copy of `src` to `dest` as a new instance: fresh UIDs unless given, optional new position."""
    ds = open_dataset(src, defer_size=None)
    tsyntax = transfer_syntax_of(ds)
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = sop_uid or generate_uid()
    if patient_id is not None:
        ds.PatientID = patient_id
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if position_z is not None:
        x, y = (list(ds.ImagePositionPatient)[:2] if "ImagePositionPatient" in ds else [0.0, 0.0])
        ds.ImagePositionPatient = [x, y, round(float(position_z), 6)]
        ds.SliceLocation = round(float(position_z), 6)
    # Bare datasets get a file meta so that the copy is a proper Part-10 file.
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.TransferSyntaxUID = tsyntax
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta = meta
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)
    return dest


def make_series(src: str | Path, dest_dir: str | Path, n: int, *, study_uid: str | None = None,
                patient_id: str | None = None) -> list[Path]:
    """An `n`-instance series from one sample: shared study and series UIDs, stepping positions."""
    ds = open_dataset(src, stop_before_pixels=True)
    spacing = float(ds.get("SliceThickness") or 0) or 1.0
    z0 = float(ds.ImagePositionPatient[2]) if "ImagePositionPatient" in ds else 0.0
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    dest_dir = Path(dest_dir)
    return [
        restamp(src, dest_dir / f"{i:04d}.dcm", study_uid=study_uid, series_uid=series_uid,
                patient_id=patient_id, instance_number=i, position_z=z0 + (i - 1) * spacing)
        for i in range(1, n + 1)
    ]


def labelled_series(root, n: int = 24) -> list[tuple[str, list, bool]]:
    """A synthetic label set for retraining: `n` two-slice series (CT and MR samples, shifted), every
    other pair with a bright square burned in that reviewers call unusable, a defect the built-in
    model was never taught. [(SeriesInstanceUID, files, bad)]; UIDs are fixed, so is the held-out split."""
    import numpy as np
    import pydicom

    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        src = sample_path("CT_small.dcm" if i % 2 else "MR_small.dcm")
        bad = i % 4 in (0, 3)
        uid = f"1.2.826.0.1.3680043.8.498.77.{i}"
        files = make_series(src, Path(root) / str(i), 2)
        for f in files:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array.astype(np.int32)
            h, w = arr.shape
            arr = np.roll(arr, (int(rng.integers(-h // 8, h // 8)), int(rng.integers(-w // 8, w // 8))), axis=(0, 1))
            if bad:
                s = h // 5
                r, c = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
                arr[r:r + s, c:c + s] = arr.max()
            ds.PixelData = arr.astype(ds.pixel_array.dtype).tobytes()
            ds.SeriesInstanceUID = uid
            ds.save_as(f)
        out.append((uid, files, bad))
    return out
