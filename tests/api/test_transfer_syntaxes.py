"""WADO-RS transfer syntax negotiation: as stored, transcoded or 406; colour frames as the metadata describes
them; undecodable frames as stored when the client takes that."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from portal.archive import ingest
from portal.dicom import frame_bytes, samples
from tests.helpers import creds, make_project

ELE = ExplicitVRLittleEndian


def parts_of(response) -> list[tuple[str, bytes]]:
    """(content type, body) of each part of a multipart/related answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    out = []
    for chunk in response.content.split(b"--" + boundary.encode())[1:-1]:
        head, body = chunk.split(b"\r\n\r\n", 1)
        ctype = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-type"))
        out.append((ctype, body[:-2]))
    return out


def accept(media: str, ts: str | None = None) -> dict:
    return {**creds("view"), "Accept": f'multipart/related; type="{media}"' + (f"; transfer-syntax={ts}" if ts else "")}


@pytest.fixture
async def stored(app, tmp_path):
    """{sample: (instance URL, local copy)} for a few samples stored in project p."""
    project = await make_project("p", {"view": "viewer"})
    out = {}
    for name in ("MR_small_jp2klossless.dcm", "JPEG-lossy.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                 "CT_small.dcm"):
        path = samples.restamp(samples.sample_path(name), tmp_path / name)
        assert (await ingest.ingest_file(path, project)).status == "stored"
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[name] = (f"/dicomweb/p/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                     f"{ds.SOPInstanceUID}", path)
    return out


async def test_instances_as_stored_transcoded_or_406(client, stored):
    url, path = stored["MR_small_jp2klossless.dcm"]
    stored_ts = pydicom.dcmread(path).file_meta.TransferSyntaxUID
    for headers in (accept("application/dicom"), accept("application/dicom", "*"),
                    accept("application/dicom", stored_ts)):
        r = await client.get(url, headers=headers)
        ((ctype, body),) = parts_of(r)
        assert r.status_code == 200 and f"transfer-syntax={stored_ts}" in ctype and body == path.read_bytes()

    r = await client.get(url, headers=accept("application/dicom", ELE))
    ((ctype, body),) = parts_of(r)
    assert r.status_code == 200 and f"transfer-syntax={ELE}" in ctype
    got = pydicom.dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == ELE
    assert np.array_equal(got.pixel_array, pydicom.dcmread(path).pixel_array)  # lossless: the very pixels

    r = await client.get(url, headers=accept("application/dicom", JPEGBaseline8Bit))
    assert r.status_code == 406 and r.json()["error"] == "not_acceptable"
    # An uncompressed instance cannot be sent compressed either, and the whole series follows the same rule.
    ct_url, _ = stored["CT_small.dcm"]
    assert (await client.get(ct_url, headers=accept("application/dicom", JPEGBaseline8Bit))).status_code == 406
    series_url = ct_url.rsplit("/instances/", 1)[0]
    r = await client.get(series_url, headers=accept("application/dicom", ELE))
    assert r.status_code == 200 and all(f"transfer-syntax={ELE}" in c for c, _ in parts_of(r))


async def test_frames_as_stored_with_transfer_syntax_star(client, stored):
    url, path = stored["MR_small_jp2klossless.dcm"]
    stored_ts = pydicom.dcmread(path).file_meta.TransferSyntaxUID
    r = await client.get(url + "/frames/1", headers=accept("application/octet-stream", "*"))
    ((ctype, body),) = parts_of(r)
    assert r.status_code == 200 and f"transfer-syntax={stored_ts}" in ctype
    assert body == frame_bytes(path, [1])[0]
    r = await client.get(url + "/frames/1", headers=accept("application/octet-stream"))  # default: ELE, decoded
    ((ctype, body),) = parts_of(r)
    assert f"transfer-syntax={ELE}" in ctype and body == pixel_array(str(path), index=0).astype("<u2").tobytes()


async def test_an_undecodable_frame_goes_as_stored_when_allowed(client, stored):
    url, path = stored["JPEG-lossy.dcm"]  # 12-bit JPEG Extended: no installed decoder reads it
    r = await client.get(url + "/frames/1", headers=accept("application/octet-stream"))
    assert r.status_code == 406 and "transfer-syntax=*" in r.json()["detail"]
    both = {**creds("view"), "Accept": 'multipart/related; type="application/octet-stream", '
                                       'multipart/related; type="image/jpeg"'}
    r = await client.get(url + "/frames/1", headers=both)
    ((ctype, body),) = parts_of(r)
    assert r.status_code == 200 and ctype.startswith("image/jpeg") and body == frame_bytes(path, [1])[0]
    r = await client.get(url + "/frames/1", headers=accept("application/octet-stream", "*"))
    assert r.status_code == 200 and parts_of(r)[0][1] == frame_bytes(path, [1])[0]


def _native_as_rgb(data: bytes, like: pydicom.Dataset) -> np.ndarray:
    """Read decoded frame bytes the way a viewer does: with the instance's own metadata, as native pixels."""
    ds = pydicom.Dataset()
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "PhotometricInterpretation"):
        setattr(ds, keyword, like.get(keyword))
    ds.PlanarConfiguration = 0
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ELE
    ds.PixelData = data
    return ds.pixel_array  # pydicom converts YBR_FULL(_422) native data to RGB


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
async def test_decoded_colour_frames_match_their_metadata(client, stored, name):
    url, path = stored[name]
    (meta,) = (await client.get(url + "/metadata", headers=creds("view"))).json()
    photometric = meta["00280004"]["Value"][0]
    assert photometric in ("YBR_FULL_422", "YBR_FULL")
    r = await client.get(url + "/frames/1", headers=accept("application/octet-stream"))
    ((_, body),) = parts_of(r)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    per_pixel = 2 if photometric == "YBR_FULL_422" else 3
    assert len(body) == ds.Rows * ds.Columns * per_pixel
    seen = _native_as_rgb(body, ds).astype(int)
    truth = pixel_array(str(path), index=0).astype(int)  # decoded to RGB by pydicom from the JPEG itself
    assert np.abs(seen - truth).max() <= 8  # chroma averaged over pixel pairs: never a green or doubled image
