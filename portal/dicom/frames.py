"""Raw frames for WADO-RS: native frames as stored bytes, encapsulated frames as their codestream."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames, get_frame

from portal.dicom import DicomRejected
from portal.dicom.parse import PIXEL_DATA_TAGS, number_of_frames, open_dataset, transfer_syntax_of


def frame_bytes(path: str | Path, frame_numbers: list[int]) -> list[bytes]:
    """The bytes of each requested frame (1-based numbers), in the order asked."""
    ds = open_dataset(path)
    n = number_of_frames(ds)
    if n == 0:
        raise DicomRejected("The file has no pixel data, so it has no frames.", "no_pixel_data")
    missing = [k for k in frame_numbers if not 1 <= k <= n]
    if missing:
        raise DicomRejected(
            f"Frame(s) {', '.join(map(str, missing))} do not exist; the file has {n} frame(s), numbered from 1.",
            "frame_not_found",
        )
    tsyntax = transfer_syntax_of(ds)
    tag = next(t for t in PIXEL_DATA_TAGS if t in ds)
    if tsyntax.is_deflated:
        # One deflate stream over the whole dataset: no offsets to seek to, so inflate it all.
        data = open_dataset(path, defer_size=None)[tag].value
        return [_native_frame_from_bytes(data, ds, k, tsyntax.is_little_endian) for k in frame_numbers]
    elem = ds.get_item(tag, keep_deferred=True)
    if not isinstance(elem, RawDataElement):  # not expected: nothing here reads the value
        raise DicomRejected("The pixel data cannot be located in the file.", "cannot_decode")
    with open(path, "rb") as f:
        if tsyntax.is_encapsulated:
            return _encapsulated(f, elem, ds, n, frame_numbers, tsyntax)
        return [_native_frame(f, elem, ds, k, tsyntax.is_little_endian) for k in frame_numbers]


def _frame_bits(ds: Dataset) -> int:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        samples = 2  # chroma is subsampled horizontally: two values per pixel on average
    return rows * columns * samples * int(ds.BitsAllocated)


def _native_frame(f: BinaryIO, elem: RawDataElement, ds: Dataset, number: int, little_endian: bool) -> bytes:
    bits = _frame_bits(ds)
    start_bit = (number - 1) * bits
    first, last = start_bit // 8, (start_bit + bits + 7) // 8
    if last > elem.length:
        raise DicomRejected(f"Frame {number} lies past the end of the pixel data (truncated).", "truncated")
    f.seek(elem.value_tell + first)
    data = f.read(last - first)
    if len(data) != last - first:
        raise DicomRejected(f"The file ends inside frame {number} (truncated).", "truncated")
    return _finish(data, ds, start_bit % 8, bits, little_endian)


def _native_frame_from_bytes(data: bytes, ds: Dataset, number: int, little_endian: bool) -> bytes:
    bits = _frame_bits(ds)
    start_bit = (number - 1) * bits
    first, last = start_bit // 8, (start_bit + bits + 7) // 8
    if last > len(data):
        raise DicomRejected(f"Frame {number} lies past the end of the pixel data (truncated).", "truncated")
    return _finish(data[first:last], ds, start_bit % 8, bits, little_endian)


def _finish(data: bytes, ds: Dataset, bit_offset: int, bits: int, little_endian: bool) -> bytes:
    allocated = int(ds.BitsAllocated)
    if allocated == 1 and (bit_offset or bits % 8):
        # 1-bit frames (segmentations) need not start on a byte: re-pack from the frame's first bit.
        unpacked = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return np.packbits(unpacked[bit_offset:bit_offset + bits], bitorder="little").tobytes()
    if not little_endian and allocated in (16, 32, 64):
        # Retired big-endian files: hand out little-endian words like every other native frame.
        return np.frombuffer(data, f">u{allocated // 8}").astype(f"<u{allocated // 8}").tobytes()
    return data


def _encapsulated(f: BinaryIO, elem: RawDataElement, ds: Dataset, n: int, numbers: list[int], tsyntax) -> list[bytes]:
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    endianness = "<" if tsyntax.is_little_endian else ">"
    try:
        f.seek(elem.value_tell)
        if len(set(numbers)) == 1:
            frame = get_frame(f, numbers[0] - 1, number_of_frames=n, extended_offsets=extended, endianness=endianness)
            return [frame] * len(numbers)
        # Several frames: walk the fragments once instead of once per frame.
        wanted, found = set(numbers), {}
        for index, frame in enumerate(
            generate_frames(f, number_of_frames=n, extended_offsets=extended, endianness=endianness), start=1
        ):
            if index in wanted:
                found[index] = frame
                if len(found) == len(wanted):
                    break
    except Exception as exc:  # pydicom raises ValueError and friends on damaged fragments
        raise DicomRejected(f"Cannot split the encapsulated pixel data into frames: {exc}", "cannot_decode") from exc
    absent = sorted(wanted - found.keys())
    if absent:
        raise DicomRejected(
            f"Frame(s) {', '.join(map(str, absent))} are missing from the encapsulated pixel data.", "frame_not_found"
        )
    return [found[k] for k in numbers]
