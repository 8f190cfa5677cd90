"""Transcoding a stored instance for a client that asks for Explicit VR Little Endian (WADO-RS, WADO-URI)."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from portal.dicom import DicomRejected


def to_explicit_little_endian(path: str | Path) -> bytes:
    """The Part-10 file re-encoded in Explicit VR Little Endian: compressed pixel data decoded (YCbCr colour
    as RGB, its Photometric Interpretation saying so), big-endian pixel data byte-swapped."""
    ds = dcmread(path)
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        if tsyntax.is_encapsulated:
            ds.decompress(as_rgb=True)  # sets the transfer syntax, PhotometricInterpretation and lengths
        elif tsyntax == ExplicitVRBigEndian:
            arr = pixel_array(ds) if "PixelData" in ds else None
            # pydicom will not re-encode a dataset read as big endian: copy its (decoded) elements over.
            copy = Dataset()
            for elem in ds:
                copy.add(elem)
            copy.file_meta = ds.file_meta
            if arr is not None:
                copy.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
                copy["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
            ds = copy
    except Exception as exc:  # decoders raise many types; all mean the same to the caller
        raise DicomRejected(f"Cannot decode the pixel data ({tsyntax.name}): {exc}", "cannot_decode") from exc
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()
