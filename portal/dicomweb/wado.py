"""WADO-RS: the stored files of a study, series or instance, and their metadata, frames, bulk data and renderings.

Instances go out byte for byte as stored, each part naming its transfer syntax, unless the client asks for
another one: then transcoded to Explicit VR Little Endian, or 406. Frames go out as stored when the client
accepts that media type (or `transfer-syntax=*`), else decoded to native bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.pixels import pixel_array
from pydicom.uid import UID

from portal.archive import find_instance, find_series, find_study, storage
from portal.dicom import DicomRejected, frame_bytes, read_metadata, render_frame, to_dicom_json
from portal.dicom.dicomjson import BULK_PLACEHOLDER, metadata_json
from portal.dicom.parse import PIXEL_DATA_TAGS
from portal.dicom.render import frame_array
from portal.dicom.parse import open_dataset, transfer_syntax_of
from portal.dicom.transcode import to_explicit_little_endian
from portal.dicomweb.accept import (OCTET_STREAM, MediaRange, Offer, acceptable, choose, frame_offers,
                                    instance_offers, not_acceptable)
from portal.dicomweb.links import Links
from portal.dicomweb.multipart import Part
from portal.errors import Invalid, NotFound
from portal.tables import Instance, InstanceMetadata, Project

log = logging.getLogger("lightbox.dicomweb")

DICOM = "application/dicom"
RENDERED_OFFERS = [Offer("image/png"), Offer("image/jpeg")]  # PNG first: lossless, the default


@dataclass(frozen=True)
class Stored:
    """One stored instance, with what retrieval needs and no more."""

    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax_uid: str
    frames: int
    rows: int
    columns: int
    key: str  # the stored file's key (portal/storage)
    instance_id: int = 0

    def local(self):
        """A context manager yielding a local file with the instance's bytes (decoders read files)."""
        return storage().local_copy(self.key)


async def stored_instances(project: Project, study_uid: str, series_uid: str | None = None,
                           sop_uid: str | None = None) -> list[Stored]:
    """The instances of a study, a series of it, or one instance of that series; NotFound if any UID is not there."""
    # One query when everything is there (the common case); the look-ups below only say what is missing.
    where = (Instance.project == project.id) & (Instance.series.study.key == f"{project.id}:{study_uid}")
    if series_uid is not None:
        where &= Instance.series.key == f"{project.id}:{series_uid}"
        if sop_uid is not None:
            where &= Instance.key == f"{project.id}:{sop_uid}"
    rows = await Instance.select(
        Instance.id, Instance.sop_instance_uid, Instance.transfer_syntax_uid, Instance.frames, Instance.rows,
        Instance.columns, Instance.file_key, Instance.series.series_instance_uid.as_alias("series_uid"),
    ).where(where).order_by(Instance.series, Instance.instance_number, Instance.id)
    if not rows:
        study = await find_study(project, study_uid)
        if series_uid is not None:
            series = await find_series(project, series_uid, study)
            if sop_uid is not None:
                instance = await find_instance(project, sop_uid)
                if instance.series != series.id:
                    raise NotFound(f"No instance {sop_uid} in series {series_uid}.", "instance_not_found")
    return [Stored(study_uid, r["series_uid"], r["sop_instance_uid"], r["transfer_syntax_uid"], r["frames"],
                   r["rows"], r["columns"], r["file_key"], r["id"]) for r in rows]


def _chunks_of(key: str):
    store = storage()
    return lambda: store.iter_bytes(key, 8 << 20)


def instance_parts(items: list[Stored], accepted: list[MediaRange], links: Links) -> Iterator[Part]:
    """The Part-10 files as body parts: as stored when the client takes their transfer syntax (no
    transfer-syntax parameter, or `*`, takes any), else transcoded to Explicit VR Little Endian; 406 when
    neither is acceptable. An instance that cannot be decoded goes as stored if the client takes that too."""
    plans = []
    for i in items:
        offers = acceptable(accepted, instance_offers(i.transfer_syntax_uid))
        if not offers:
            raise not_acceptable(instance_offers(i.transfer_syntax_uid), "these instances")
        plans.append((i, offers))

    def each() -> Iterator[Part]:  # one transcoded instance in memory at a time
        for i, offers in plans:
            location = links.instance(i.study_uid, i.series_uid, i.sop_uid)
            for offer in offers:
                if not offer.decode:
                    yield Part(_part_type(offer), chunks=_chunks_of(i.key), location=location)
                    break
                try:
                    with i.local() as path:
                        data = to_explicit_little_endian(path)
                except DicomRejected as exc:
                    log.warning("WADO-RS: %s cannot be transcoded: %s", i.sop_uid, exc.detail)
                    continue
                yield Part(_part_type(offer), data, location=location)
                break
            else:
                log.warning("WADO-RS: %s left out: it cannot be decoded and the client refuses it as stored", i.sop_uid)

    return each()


async def metadata(items: list[Stored], links: Links) -> bytes:
    """DICOM JSON of each instance (bulk data, pixel data above all, as BulkDataURIs), as the JSON text.

    Kept per instance in lb_instance_metadata: an instance is read from its file once, the first time
    its metadata is asked for; after that the answer is put together from the kept text."""
    ids = [i.instance_id for i in items]
    kept: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        for r in await InstanceMetadata.select(InstanceMetadata.instance, InstanceMetadata.dicom_json).where(
                InstanceMetadata.instance.is_in(ids[start:start + 500])):
            kept[r["instance"]] = r["dicom_json"]
    missing = [i for i in items if i.instance_id not in kept]
    if missing:
        made = await asyncio.to_thread(lambda: {i.instance_id: metadata_json(_read_metadata(i)) for i in missing})
        kept.update(made)
        rows = [InstanceMetadata(instance=k, dicom_json=v) for k, v in made.items() if v]
        try:
            if rows:
                await InstanceMetadata.insert(*rows).on_conflict(target=InstanceMetadata.instance, action="DO NOTHING")
        except Exception:  # e.g. the instance was deleted meanwhile: the answer does not depend on keeping it
            log.debug("could not keep the metadata of %d instance(s)", len(rows), exc_info=True)
    out = []
    for i in items:
        text = kept.get(i.instance_id) or await asyncio.to_thread(
            lambda i=i: json.dumps(to_dicom_json(_read_metadata(i), lambda tag: BULK_PLACEHOLDER + tag),
                               separators=(",", ":")))
        # Only our own values follow "BulkDataURI": a dataset's text cannot be mistaken for the placeholder.
        out.append(text.replace(_BULK_KEY, f'"BulkDataURI":"{links.instance(i.study_uid, i.series_uid, i.sop_uid)}'
                                            "/bulkdata/"))
    return ("[" + ",".join(out) + "]").encode()


_BULK_KEY = f'"BulkDataURI":"{BULK_PLACEHOLDER}'


def _read_metadata(item: Stored):
    """The dataset for metadata, its large values read now (the local copy of an S3 object goes away)."""
    with item.local() as path:
        ds = read_metadata(path)
        if storage().kind != "local":
            ds = open_dataset(path, defer_size=None)
        return ds


def frame_numbers(text: str) -> list[int]:
    """'1,3,5' → [1, 3, 5]."""
    numbers = [n.strip() for n in text.split(",")]
    if not numbers or not all(n.isdigit() and int(n) >= 1 for n in numbers):
        raise Invalid(f"Frame numbers are a comma-separated list counted from 1, not {text!r}.", "invalid_frames")
    return [int(n) for n in numbers]


def frame_number(text: str) -> int:
    """One frame number, for a rendered frame."""
    numbers = frame_numbers(text)
    if len(numbers) != 1:
        raise Invalid(f"A rendered frame is one frame number, not {text!r}.", "invalid_frames")
    return numbers[0]


@contextmanager
def _frames_exist():
    """Frames a file does not have are not found (404), not bad input."""
    try:
        yield
    except DicomRejected as exc:
        if exc.suberror in ("frame_not_found", "no_pixel_data"):
            raise NotFound(exc.detail, exc.suberror) from exc
        raise


def frames(item: Stored, numbers: list[int], accepted: list[MediaRange]) -> tuple[str, list[Part]]:
    """(media type, one part per frame) in the first representation the client accepts; frames that cannot be
    decoded go as stored when the client also takes that, else 406 says how to ask for them."""
    offers = acceptable(accepted, frame_offers(item.transfer_syntax_uid))
    if not offers:
        raise not_acceptable(frame_offers(item.transfer_syntax_uid), "these frames")
    for n, offer in enumerate(offers):
        try:
            with _frames_exist():
                with item.local() as path:
                    data = [_decoded(path, k) for k in numbers] if offer.decode else frame_bytes(path, numbers)
        except DicomRejected as exc:
            if exc.suberror != "cannot_decode":
                raise
            if n + 1 < len(offers):
                continue
            raise not_acceptable(offers, "these frames", f"{exc.detail}. Ask with transfer-syntax=* (or the "
                                 f"stored {item.transfer_syntax_uid}) to receive them as stored.") from exc
        return offer.media_type, [Part(_part_type(offer), d) for d in data]
    raise AssertionError("unreachable")


def _part_type(offer: Offer) -> str:
    return f"{offer.media_type}; transfer-syntax={offer.transfer_syntax}"


def _decoded(path: Path, number: int) -> bytes:
    """Frame `number` decompressed to native little-endian bytes, in the photometric interpretation the
    instance's metadata names: YBR_FULL stays YCbCr and YBR_FULL_422 is laid out 4:2:2 (Y Y Cb Cr), as a
    viewer reading the metadata expects; other colour comes out as RGB."""
    ds = open_dataset(path, stop_before_pixels=True)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric in ("YBR_FULL", "YBR_FULL_422") and int(ds.get("SamplesPerPixel") or 1) == 3:
        tsyntax = transfer_syntax_of(ds)
        try:
            arr = pixel_array(str(path), index=number - 1, transfer_syntax_uid=tsyntax, as_rgb=False)
        except Exception as exc:
            raise DicomRejected(f"Cannot decode the pixel data ({tsyntax.name}): {exc}", "cannot_decode") from exc
        if photometric == "YBR_FULL_422" and UID(tsyntax).is_encapsulated:
            arr = _ybr_422(arr)
    else:
        arr = frame_array(path, number - 1)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _ybr_422(arr: np.ndarray) -> np.ndarray:
    """A full-resolution YCbCr frame (rows, columns, 3) as native YBR_FULL_422: per pair of pixels Y1 Y2 Cb Cr
    (PS3.3 C.7.6.3.1.2), the chroma of the pair averaged."""
    rows, cols, _ = arr.shape
    if cols % 2:
        return arr  # 4:2:2 needs an even width; leave it full (cannot happen for valid 422 data)
    pairs = arr.reshape(rows, cols // 2, 2, 3).astype(np.uint16)
    out = np.empty((rows, cols // 2, 4), dtype=arr.dtype)
    out[..., 0], out[..., 1] = pairs[:, :, 0, 0], pairs[:, :, 1, 0]
    out[..., 2] = (pairs[:, :, 0, 1] + pairs[:, :, 1, 1] + 1) // 2
    out[..., 3] = (pairs[:, :, 0, 2] + pairs[:, :, 1, 2] + 1) // 2
    return out


def bulkdata(item: Stored, tag: str, accepted: list[MediaRange]) -> tuple[str, Iterator[Part]]:
    """A top-level bulk value: pixel data as one part per frame, anything else as one octet-stream part."""
    if not re.fullmatch(r"[0-9A-Fa-f]{8}", tag):
        raise Invalid(f"A bulk data tag is 8 hex digits such as 7FE00010, not {tag!r}.", "invalid_tag")
    if int(tag, 16) in PIXEL_DATA_TAGS:
        if item.frames < 1:
            raise NotFound("This instance has no pixel data.", "no_pixel_data")
        offer = choose(accepted, frame_offers(item.transfer_syntax_uid), "the pixel data")

        def each_frame() -> Iterator[Part]:  # one frame in memory at a time
            with item.local() as path:
                for k in range(1, item.frames + 1):
                    data = _decoded(path, k) if offer.decode else frame_bytes(path, [k])[0]
                    yield Part(_part_type(offer), data)

        return offer.media_type, each_frame()
    offer = choose(accepted, [Offer(OCTET_STREAM)], "bulk data")
    with item.local() as path:
        elem = read_metadata(path).get(int(tag, 16))
        value = elem.value if elem is not None else None  # a deferred value is read while the file is there
    if not isinstance(value, bytes | bytearray):
        raise NotFound(f"This instance has no bulk data at {tag}.", "bulkdata_not_found")
    return offer.media_type, iter([Part(OCTET_STREAM, bytes(value))])


def rendered(item: Stored, frame: int, accepted: list[MediaRange], *, window: str | None = None,
             viewport: str | None = None) -> tuple[bytes, str]:
    """(image bytes, media type): frame `frame` (from 1) as PNG or JPEG, per Accept, window and viewport."""
    offer = choose(accepted, RENDERED_OFFERS, "a rendered image")
    center, width = parse_window(window)
    if item.frames and not 1 <= frame <= item.frames:
        raise NotFound(f"Frame {frame} does not exist; the instance has {item.frames} frame(s).", "frame_not_found")
    with _frames_exist(), item.local() as path:
        data = render_frame(path, frame - 1, window_center=center, window_width=width,
                            size=viewport_size(viewport, item.rows, item.columns),
                            fmt="png" if offer.media_type == "image/png" else "jpeg")
    return data, offer.media_type


def parse_window(window: str | None) -> tuple[float | None, float | None]:
    """`window=center,width,function` → (center, width); the file's own VOI LUT function applies."""
    if not window:
        return None, None
    parts = [p.strip() for p in window.split(",")]
    try:
        center, width = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        center = width = None
    function = parts[2].lower() if len(parts) > 2 else "linear"
    if center is None or width is None or width <= 0 or len(parts) > 3 or \
            function not in ("linear", "linear-exact", "sigmoid"):
        raise Invalid(f"window is center,width,function (width > 0; linear, linear-exact or sigmoid), "
                      f"not {window!r}.", "invalid_window")
    return center, width


def viewport_size(viewport: str | None, rows: int, columns: int) -> int | None:
    """The longest edge of the image fitted inside `viewport=width,height` (never enlarged)."""
    if not viewport:
        return None
    parts = [p.strip() for p in viewport.split(",")]
    if len(parts) not in (2, 6) or not all(p.isdigit() and int(p) > 0 for p in parts[:2]):
        raise Invalid(f"viewport is width,height in pixels, not {viewport!r}.", "invalid_viewport")
    vw, vh = int(parts[0]), int(parts[1])
    if not rows or not columns:
        return min(vw, vh)
    scale = min(vw / columns, vh / rows)
    return max(1, int(max(rows, columns) * scale))
