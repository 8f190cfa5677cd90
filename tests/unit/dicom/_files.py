"""Small file builders shared by the DICOM unit tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread

from portal.dicom.samples import restamp, sample_path


def copy_sample(name: str, tmp_path: Path) -> Path:
    """A private copy of a sample, re-stamped with fresh UIDs."""
    return restamp(sample_path(name), tmp_path / name)


def cut(src: Path, dest: Path, length: int) -> Path:
    dest.write_bytes(src.read_bytes()[:length])
    return dest


def pixel_data_offset(path: Path) -> int:
    """Where the Pixel Data value starts in the file."""
    ds = dcmread(path, defer_size="1 KB")
    return ds.get_item(0x7FE00010, keep_deferred=True).value_tell


def png_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)
