"""Whether two files hold the same instance apart from its encoding (transfer syntax, file meta, padding).

Ingest asks this at its conflict decision point: a sender that re-sends a stored instance in another transfer
syntax (a lossless one: the same pixels) is told *already stored*, as Orthanc and most PACS answer, instead of
a conflict. Only reached when the bytes differ, so reading both files in full is affordable.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from portal.dicom.parse import PIXEL_DATA_TAGS

# What re-encoding changes by itself: compared through the decoded pixels instead.
_ENCODING_TAGS = {0x00280004, 0x00280006,  # PhotometricInterpretation (YBR_* ↔ RGB), PlanarConfiguration
                  0xFFFCFFFC}  # DataSetTrailingPadding


def same_apart_from_encoding(a: str | Path | bytes, b: str | Path | bytes) -> bool:
    """True when every attribute is equal and the pixel data decode to the same values (files or bytes)."""
    try:
        da, db = (dcmread(io.BytesIO(x) if isinstance(x, bytes | bytearray) else x) for x in (a, b))
        if not _same_elements(da, db):
            return False
        has_a = any(t in da for t in PIXEL_DATA_TAGS)
        if has_a != any(t in db for t in PIXEL_DATA_TAGS):
            return False
        if not has_a:
            return True
        return bool(np.array_equal(pixel_array(da), pixel_array(db)))  # colour as RGB on both sides
    except Exception:  # unreadable or undecodable: not provably the same, so the caller's rule applies
        return False


def _same_elements(a: Dataset, b: Dataset) -> bool:
    tags = {t for t in a.keys() | b.keys()
            if t not in _ENCODING_TAGS and t not in PIXEL_DATA_TAGS and t.element != 0 and t.group != 0x0002}
    for tag in tags:
        if tag not in a or tag not in b:
            if (a.get(tag) or b.get(tag)).value in (None, "", b"", []):
                continue  # an empty attribute equals an absent one
            return False
        ea, eb = a[tag], b[tag]
        if ea.VR == "SQ" or eb.VR == "SQ":
            if ea.VR != eb.VR or len(ea.value) != len(eb.value):
                return False
            if not all(_same_elements(x, y) for x, y in zip(ea.value, eb.value)):
                return False
        elif "UN" in (ea.VR, eb.VR) and ea.VR != eb.VR:
            continue  # a private attribute read without its VR (implicit VR): its value is not comparable
        elif ea.value != eb.value:
            return False
    return True
