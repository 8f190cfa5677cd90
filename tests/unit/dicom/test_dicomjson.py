"""to_dicom_json and read_metadata: the PS3.18 JSON model with bulk data by reference."""

from __future__ import annotations

import json

from portal.dicom import read_metadata, to_dicom_json
from portal.dicom.samples import sample_path


def test_metadata_with_bulk_data_uri():
    ds = read_metadata(sample_path("CT_small.dcm"))
    # Pixel data was not read to answer a metadata request.
    assert ds.get_item(0x7FE00010, keep_deferred=True).value is None
    doc = to_dicom_json(ds, lambda tag: f"https://x.test/bulk/{tag}")
    assert doc["7FE00010"] == {"vr": "OW", "BulkDataURI": "https://x.test/bulk/7FE00010"}
    assert doc["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert doc["00080060"] == {"vr": "CS", "Value": ["CT"]}
    assert doc["00280010"] == {"vr": "US", "Value": [128]}
    assert not any(key.startswith("0002") for key in doc)
    json.dumps(doc)


def test_encapsulated_pixel_data_is_ob_and_bulk():
    doc = to_dicom_json(read_metadata(sample_path("MR_small_RLE.dcm")), lambda tag: f"bulk/{tag}")
    assert doc["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/7FE00010"}


def test_without_callback_bulk_data_is_left_out():
    doc = to_dicom_json(read_metadata(sample_path("JPEG2000.dcm")))  # its pixel data is small
    assert "7FE00010" not in doc
    assert doc["0020000D"]["vr"] == "UI"
    json.dumps(doc)


def test_sequences_nest():
    doc = to_dicom_json(read_metadata(sample_path("rtplan.dcm")), lambda tag: f"bulk/{tag}")
    sequences = [v for v in doc.values() if v["vr"] == "SQ" and v.get("Value")]
    assert sequences
    assert all(isinstance(item, dict) for seq in sequences for item in seq["Value"])
    json.dumps(doc)
