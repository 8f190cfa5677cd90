"""Volumes for the tests, made with nibabel and pynrrd from real DICOM pixels (pydicom-data's MR frames)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file


def mr_pixels() -> np.ndarray:
    """emri_small's 10 MR frames as a volume indexed (i = column, j = row, k = frame)."""
    frames = dcmread(get_testdata_file("emri_small.dcm")).pixel_array  # (10, 64, 64) = (k, row, column)
    return np.ascontiguousarray(frames.transpose(2, 1, 0)).astype(np.int16)


def oblique_affine(degrees: float = 20.0, spacing=(0.8, 0.9, 3.0), origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    """A RAS affine rotated about two axes (oblique), with anisotropic voxels."""
    a, b = np.deg2rad(degrees), np.deg2rad(degrees / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    raw = img.to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)
    return path


def mgz(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(nib.MGHImage(data.astype(np.float32), affine).to_bytes(), mtime=0))
    return path


def nrrd_file(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """An NRRD in LPS space (what 3D Slicer writes) with the same geometry as the RAS `affine`."""
    import nrrd

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    path.parent.mkdir(parents=True, exist_ok=True)
    nrrd.write(str(path), data, {"space": "left-posterior-superior", "space directions": lps[:3, :3].T,
                                 "space origin": lps[:3, 3]})
    return path


def voxel_world_lps(affine: np.ndarray, i: float, j: float, k: float) -> np.ndarray:
    """nibabel's world position of a voxel, in DICOM's LPS."""
    return (np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine @ np.array([i, j, k, 1.0]))[:3]


def voxel_from_dicom(ds, i: float, j: float) -> np.ndarray:
    """Patient position of pixel (column i, row j) of a DICOM image, by PS3.3 C.7.6.2.1.1."""
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    return ipp + iop[:3] * col_spacing * i + iop[3:] * row_spacing * j
