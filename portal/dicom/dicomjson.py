"""The DICOM JSON model (PS3.18 F.2) of a dataset, with bulk data given by reference."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from portal.dicom.parse import PIXEL_DATA_TAGS, open_dataset, transfer_syntax_of

# Binary values above this many bytes are bulk data: a BulkDataURI, never inline base64.
BULK_DATA_THRESHOLD = 1024
# Values above this size stay on disk when reading for metadata (pixel data above all).
METADATA_DEFER_SIZE = "4 KB"

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_OMIT = "\0omit"


def read_metadata(path: str | Path) -> Dataset:
    """The dataset of `path` for metadata, large values (pixel data above all) left unread on disk."""
    return open_dataset(path, defer_size=METADATA_DEFER_SIZE)


# Stored metadata names bulk data by this placeholder; the answer replaces it with the request's own URL.
BULK_PLACEHOLDER = "lightbox-bulk:"


def metadata_json(ds: Dataset) -> str:
    """`ds` as DICOM JSON text for keeping: bulk data as `"BulkDataURI": "lightbox-bulk:<tag>"`."""
    try:
        return json.dumps(to_dicom_json(ds, lambda tag: BULK_PLACEHOLDER + tag), separators=(",", ":"))
    except Exception:  # an odd dataset: /metadata will read the file instead
        return ""


def to_dicom_json(ds: Dataset, bulk_data_uri: Callable[[str], str] | None = None) -> dict:
    """`ds` as a DICOM JSON object.

    Top-level binary values over BULK_DATA_THRESHOLD become {"vr", "BulkDataURI": bulk_data_uri(tag)}
    where tag is e.g. "7FE00010", or are left out when there is no callback. Large binary values
    inside sequences are left out: a tag alone cannot address them.
    """
    out: dict[str, dict] = {}
    for tag in ds.keys():
        if tag.element == 0:  # group lengths are not part of the JSON model
            continue
        key = f"{tag:08X}"
        raw = ds.get_item(tag, keep_deferred=True)
        deferred = isinstance(raw, RawDataElement) and raw.value is None and raw.length
        # Pixel data is always bulk, however small: viewers fetch it (or its frames) by URI.
        # Other deferred binary values stay on disk and are referred to without reading them.
        if tag in PIXEL_DATA_TAGS or (deferred and _deferred_vr(raw, ds) in _BINARY_VRS):
            if bulk_data_uri is not None:
                out[key] = {"vr": _deferred_vr(raw, ds), "BulkDataURI": bulk_data_uri(key)}
            continue
        try:
            elem = ds[tag]
            if elem.VR == "SQ":
                # A tag alone cannot address a value inside a sequence: nested bulk values are dropped.
                value = elem.to_json_dict(lambda _e: _OMIT, BULK_DATA_THRESHOLD)
            else:
                value = elem.to_json_dict(
                    lambda _e, key=key: bulk_data_uri(key) if bulk_data_uri is not None else _OMIT,
                    BULK_DATA_THRESHOLD,
                )
        except Exception:  # one malformed element should not cost the whole answer
            continue
        if value.get("BulkDataURI") == _OMIT:
            continue
        out[key] = _drop_omitted(value)
    return out


def _deferred_vr(raw: RawDataElement, ds: Dataset) -> str:
    """The VR of an element not yet read; implicit-VR files leave it to the dictionary."""
    vr = getattr(raw, "VR", None)
    if not vr:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return "UN"
    if " or " in vr:  # e.g. "OB or OW" for Pixel Data: OB when encapsulated or 8-bit
        wide = int(ds.get("BitsAllocated") or 8) > 8 and not transfer_syntax_of(ds).is_encapsulated
        return "OW" if "OW" in vr and wide else "OB"
    return vr


def _drop_omitted(value: dict) -> dict:
    if value.get("vr") == "SQ":
        items = []
        for item in value.get("Value", []):
            items.append({k: _drop_omitted(v) for k, v in item.items() if v.get("BulkDataURI") != _OMIT})
        value = {**value, "Value": items}
    return value
