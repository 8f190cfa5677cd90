"""A DICOM header as rows a person can read (the series page's tag browser)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

MAX_VALUE = 200  # characters of a value shown; long binary values are summarised


def tag_rows(path: str | Path) -> list[dict]:
    ds = pydicom.dcmread(path if hasattr(path, "read") else str(path), stop_before_pixels=True, force=True)
    rows: list[dict] = []
    if getattr(ds, "file_meta", None) is not None:
        _walk(ds.file_meta, rows, 0)
    _walk(ds, rows, 0)
    return rows


def _walk(ds: Dataset, rows: list[dict], depth: int) -> None:
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = elem.name if elem.tag.is_private is False else f"{elem.name} (private)"
        if elem.VR == "SQ":
            rows.append({"tag": tag, "vr": "SQ", "name": name, "value": f"{len(elem.value)} item(s)", "depth": depth})
            for n, item in enumerate(elem.value, 1):
                rows.append({"tag": "", "vr": "", "name": f"item {n}", "value": "", "depth": depth + 1})
                _walk(item, rows, depth + 2)
            continue
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "UN") or isinstance(elem.value, bytes):
            value = f"{len(elem.value or b'')} bytes"
        else:
            value = str(elem.value)
        if len(value) > MAX_VALUE:
            value = value[:MAX_VALUE] + "…"
        rows.append({"tag": tag, "vr": elem.VR, "name": name, "value": value, "depth": depth})
