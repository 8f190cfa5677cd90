"""Building DICOM JSON attributes (PS3.18 F.2) from plain values."""

from __future__ import annotations

from pydicom.datadict import dictionary_VR, tag_for_keyword


def element(keyword: str, value) -> tuple[str, dict]:
    """One DICOM JSON attribute: ("0020000D", {"vr": "UI", "Value": [...]}); no Value when empty."""
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    if value is None or value == "":
        return f"{tag:08X}", {"vr": vr}
    if vr == "PN":
        values = [{"Alphabetic": str(value)}]
    elif vr in ("IS", "US", "UL", "SL", "SS"):
        values = [int(value)]
    elif keyword == "ModalitiesInStudy":
        values = [m for m in str(value).split("\\") if m]
    else:
        values = [str(value)]
    return f"{tag:08X}", {"vr": vr, "Value": values}


def sequence(keyword: str, items: list[dict]) -> tuple[str, dict]:
    key, value = element(keyword, None)
    return key, {**value, "Value": items}
