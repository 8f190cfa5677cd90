"""Parse a DICOM file into the identifiers and descriptive fields the archive keeps."""

from __future__ import annotations

import hashlib
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from portal.dicom import DicomRejected

# Elements larger than this stay on disk while parsing: pixel data is never loaded here.
DEFER_SIZE = "1 KB"

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
    b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
    b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}
_REQUIRED_UIDS = {
    "SOPInstanceUID": "SOP Instance UID",
    "SOPClassUID": "SOP Class UID",
    "StudyInstanceUID": "Study Instance UID",
    "SeriesInstanceUID": "Series Instance UID",
}


@dataclass(frozen=True)
class ParsedInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    institution_name: str = ""
    accession_number: str = ""
    study_id: str = ""
    series_number: int | None = None
    series_date: str = ""
    series_time: str = ""
    series_description: str = ""
    modality: str = ""
    body_part_examined: str = ""
    manufacturer: str = ""
    manufacturer_model_name: str = ""
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 0
    bits_allocated: int | None = None
    photometric_interpretation: str = ""
    has_pixel_data: bool = False


def read_instance(path: str | Path) -> ParsedInstance:
    """Parse `path` without loading its pixel data; reject what the archive cannot keep."""
    with open(path, "rb") as f:
        size = _size(f)
        ds = _dcmread(f, size, defer_size=DEFER_SIZE)
        _check_complete(ds, f, size)
    return _instance_from(ds)


# Files up to this size are read into memory once (parsed, hashed and written from the same bytes);
# bigger ones are parsed from disk with their pixel data left there, and hashed in chunks.
IN_MEMORY_MAX = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReadFile:
    """One file read once: what the archive keeps of it, its MD5 and size, and its bytes when small enough."""

    parsed: ParsedInstance
    md5: str
    size: int
    data: bytes | None


def read_once(path: str | Path | None = None, data: bytes | None = None, *, keep: bool = True) -> ReadFile:
    """Parse and hash a file (or bytes already in memory) in one read; DicomRejected if unfit. Without `keep`
    a file's bytes are let go once read (a spooled upload is renamed into place, never written from them)."""
    if data is None:
        with open(path, "rb") as f:
            size = _size(f)
            if size <= IN_MEMORY_MAX:
                data = f.read()
            else:  # a large multi-frame file: never all in memory
                ds = _dcmread(f, size, defer_size=DEFER_SIZE)
                _check_complete(ds, f, size)
                f.seek(0)
                md5 = hashlib.md5()
                while chunk := f.read(1 << 20):
                    md5.update(chunk)
                parsed = _instance_from(ds)
                return ReadFile(parsed, md5.hexdigest(), size, None)
    parsed = walk_header(data)
    if parsed is None:  # not the plain case: pydicom reads it (and words any refusal)
        f = io.BytesIO(data)
        ds = _dcmread(f, len(data), defer_size=DEFER_SIZE)
        _check_complete(ds, f, len(data))
        parsed = _instance_from(ds)
    return ReadFile(parsed, hashlib.md5(data).hexdigest(), len(data), data if keep or path is None else None)


def open_dataset(path: str | Path, *, defer_size: str | int | None = DEFER_SIZE,
                 stop_before_pixels: bool = False) -> Dataset:
    """Read `path` as a dataset (Part-10 or a bare dataset), or raise DicomRejected("not_dicom")."""
    # Deferred elements are re-read later from the file's name, which dcmread records.
    with open(path, "rb") as f:
        return _dcmread(f, _size(f), defer_size=defer_size, stop_before_pixels=stop_before_pixels)


def transfer_syntax_of(ds: Dataset) -> UID:
    """The dataset's transfer syntax: from its file meta, else from how it was encoded."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax:
        return UID(str(tsyntax).strip("\0 "))
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def has_pixel_data(ds: Dataset) -> bool:
    return any(tag in ds for tag in PIXEL_DATA_TAGS)


def number_of_frames(ds: Dataset) -> int:
    """Frames in the pixel data: NumberOfFrames when valid, else 1; 0 without pixel data."""
    pixels = has_pixel_data(ds)
    return _frame_count(pixels, _int(ds, "NumberOfFrames") if pixels else None)


def _frame_count(pixels: bool, number_of_frames: int | None) -> int:
    if not pixels:
        return 0
    return number_of_frames if number_of_frames and number_of_frames > 0 else 1


def valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def _size(f: BinaryIO) -> int:
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    return size


def _dcmread(f: BinaryIO, size: int, **kwargs) -> Dataset:
    head = f.read(132)
    f.seek(0)
    if size == 0:
        raise DicomRejected("The file is empty (0 bytes); send the DICOM file itself.", "not_dicom")
    if len(head) == 132 and head[128:132] == b"DICM":
        force = False
    elif _looks_like_dataset(head):
        # A bare dataset without preamble: pydicom guesses the encoding from the first element.
        force = True
    else:
        raise DicomRejected(
            "This is not a DICOM file: it has neither the DICM marker nor a DICOM dataset at its start.",
            "not_dicom",
        )
    try:
        return dcmread(f, force=force, **kwargs)
    except EOFError as exc:
        raise DicomRejected(f"The file ends in the middle of a DICOM element (truncated): {exc}", "truncated") from exc
    except InvalidDicomError as exc:
        raise DicomRejected(f"This is not a readable DICOM file: {exc}", "not_dicom") from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise DicomRejected(f"The DICOM file is damaged and cannot be read: {exc}", "corrupt") from exc


def _looks_like_dataset(head: bytes) -> bool:
    """True when the bytes start with a file meta (0002) or identifying (0008) element."""
    if len(head) < 8:
        return False
    for order in "<>":
        group, _elem = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _VRS:  # explicit VR
            return True
        if order == "<" and struct.unpack("<I", head[4:8])[0] < 0x10000:  # implicit VR, sane length
            return True
    return False


def _check_complete(ds: Dataset, f: BinaryIO, size: int) -> None:
    """Reject a file that ends before its last element does.

    pydicom skips deferred values with a seek (which may pass the end of the file) and stops
    quietly at a short read, so compare where it stopped and where the last element ends.
    """
    pos = f.tell()
    if pos != size:
        # Past the end: a skipped value (usually Pixel Data) is longer than what is left.
        # Before the end: pydicom met the end of the file inside an element and gave up.
        raise DicomRejected(
            "The file ends before its last element does (truncated); send the complete file.",
            "truncated",
        )
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "FileMetaInformationGroupLength" in meta:
        # pydicom reads the file meta eagerly (no offsets kept): its group length says where it ends.
        f.seek(128)
        start = 132 if f.read(4) == b"DICM" else 0
        group_length = meta.FileMetaInformationGroupLength
        if not isinstance(group_length, int) or start + 12 + group_length > size:
            raise DicomRejected(
                "The file ends inside its file meta information (truncated); send the complete file.",
                "truncated",
            )
    if transfer_syntax_of(ds).is_deflated:
        return  # offsets point into the inflated stream; zlib has already checked the file's end
    last = None
    for elem in _raw_elements(getattr(ds, "file_meta", None)) + _raw_elements(ds):
        tell = _tell(elem)
        if tell is None:
            continue
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH and tell + elem.length > size:
            raise DicomRejected(
                f"The file ends inside element {elem.tag} (truncated); send the complete file.",
                "truncated",
            )
        if last is None or tell > _tell(last):
            last = elem
    if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH:
        end = last.value_tell + last.length
        if end < size:
            # Fewer bytes than an element header remain: a cut header unless it is zero padding.
            f.seek(end)
            if f.read(size - end).strip(b"\0"):
                raise DicomRejected(
                    "The file ends in the middle of an element header (truncated); send the complete file.",
                    "truncated",
                )


def _raw_elements(ds: Dataset | None) -> list:
    if ds is None:
        return []
    return list(ds._dict.values())  # as get_item(tag, keep_deferred=True) gives them, without a call per tag


def _tell(elem) -> int | None:
    if isinstance(elem, RawDataElement):
        return elem.value_tell
    return getattr(elem, "file_tell", None)


def _instance_from(ds: Dataset) -> ParsedInstance:
    return _build(lambda kw: _text(ds, kw), lambda kw: _int(ds, kw), str(transfer_syntax_of(ds)), has_pixel_data(ds))


def _build(text, integer, transfer_syntax: str, pixels: bool) -> ParsedInstance:
    """The archive's fields from `text(keyword)` and `integer(keyword)` (a parsed dataset's or the header walk's);
    DicomRejected without the four identifying UIDs or with a malformed one."""
    uids = {kw: text(kw) for kw in _REQUIRED_UIDS}
    missing = [_REQUIRED_UIDS[kw] for kw, value in uids.items() if not value]
    if missing:
        raise DicomRejected(
            f"The file has no {', '.join(missing)}; every instance needs all four identifying UIDs.",
            "missing_uid",
        )
    bad = [f"{_REQUIRED_UIDS[kw]} {value!r}" for kw, value in uids.items() if not valid_uid(value)]
    if bad:
        raise DicomRejected(
            f"Invalid UID: {', '.join(bad)}; a UID is at most 64 characters of digits and dots.",
            "invalid_uid",
        )
    return ParsedInstance(
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        transfer_syntax_uid=transfer_syntax,
        patient_id=text("PatientID"),
        patient_name=text("PatientName"),
        patient_birth_date=_date(text("PatientBirthDate")),
        patient_sex=text("PatientSex"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        study_description=text("StudyDescription"),
        referring_physician_name=text("ReferringPhysicianName"),
        institution_name=text("InstitutionName"),
        accession_number=text("AccessionNumber"),
        study_id=text("StudyID"),
        series_number=integer("SeriesNumber"),
        series_date=text("SeriesDate"),
        series_time=text("SeriesTime"),
        series_description=text("SeriesDescription"),
        modality=text("Modality"),
        body_part_examined=text("BodyPartExamined"),
        manufacturer=text("Manufacturer"),
        manufacturer_model_name=text("ManufacturerModelName"),
        instance_number=integer("InstanceNumber"),
        rows=integer("Rows"),
        columns=integer("Columns"),
        number_of_frames=_frame_count(pixels, integer("NumberOfFrames") if pixels else None),
        bits_allocated=integer("BitsAllocated"),
        photometric_interpretation=text("PhotometricInterpretation"),
        has_pixel_data=pixels,
    )


def _converted_text(ds: Dataset, keyword: str) -> str:
    """The element as text through pydicom (decoded with the file's character set), "" when absent or
    unreadable."""
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value should not sink the whole instance
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).strip("\0 ")


# Reading an element through pydicom (keyword look-up, conversion, validation) was half the parsing time
# of an upload. The fields the archive keeps are short text or one integer, so they are read from the raw
# bytes when that is unambiguous: text in the default repertoire (which every character set DICOM allows
# shares, so no decoding can differ) and a 2-byte US; anything else goes through pydicom as before.
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UI"}
_TAGS: dict[str, tuple[int, str]] = {}  # keyword: (tag, the dictionary's VR, for implicit-VR files)
_DIGITS = re.compile(rb"[+-]?[0-9]+")


def _tag(keyword: str) -> tuple[int, str]:
    if (known := _TAGS.get(keyword)) is None:
        tag = tag_for_keyword(keyword)
        known = _TAGS[keyword] = (tag, dictionary_VR(tag))
    return known


def _text(ds: Dataset, keyword: str) -> str:
    """The element as text, "" when absent or unreadable: from the raw bytes where that gives the same as
    pydicom would (_converted_text): read but not yet converted, a text VR, default-repertoire bytes."""
    tag, vr = _tag(keyword)
    elem = ds._dict.get(tag)
    if elem is None:
        return ""
    raw = _raw_text(elem.value, elem.VR or vr) if type(elem) is RawDataElement else None
    return _converted_text(ds, keyword) if raw is None else raw  # converted, deferred, or a character set's


def _raw_text(value: bytes | None, vr: str) -> str | None:
    """A text element's raw bytes as pydicom would give them, None when only pydicom can say (not a text VR,
    deferred, or outside the default repertoire)."""
    if value is None or vr not in _TEXT_VRS or not value.isascii() or b"\x1b" in value:
        return None
    return value.decode("ascii").strip("\0 ")


def _int(ds: Dataset, keyword: str) -> int | None:
    """The element as an integer, None when absent or not one: from the raw bytes where that gives the same
    as pydicom would (an IS of digits, a 2-byte US), else _converted_int."""
    tag, vr = _tag(keyword)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    if type(elem) is RawDataElement and (n := _raw_int(elem.value, elem.VR or vr, elem.is_little_endian)) is not None:
        return n
    return _converted_int(ds, keyword)


def _raw_int(value: bytes | None, vr: str, little: bool = True) -> int | None:
    """An integer element's raw bytes as pydicom would give them (an IS of digits, a 2-byte US), else None."""
    if value is None:
        return None
    if vr == "US" and len(value) == 2:
        return int.from_bytes(value, "little" if little else "big")
    if vr == "IS" and _DIGITS.fullmatch(digits := value.strip(b" \0")):
        return int(digits)
    return None


def _converted_int(ds: Dataset, keyword: str) -> int | None:
    """The element as an integer through pydicom, None when absent or not one."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        return int(value)
    except Exception:
        return None


def _date(value: str) -> str:
    """YYYYMMDD, or "" for anything else (old files carry YYYY.MM.DD or junk)."""
    value = value.replace(".", "").replace("-", "")
    return value if len(value) == 8 and value.isdigit() else ""


# --- the header walk ---------------------------------------------------------------------------------------
# pydicom builds a Dataset of every element (a third of an upload's parsing and hashing time) where ingest keeps
# two dozen short fields. The common file, Part 10 in explicit or implicit VR little endian (native, JPEG, RLE…),
# is walked here element by element from the bytes, values skipped by their lengths. Anything else (no preamble,
# big endian, deflate, odd VRs, trailing bytes, a value outside the default repertoire, a cut file) makes the walk
# give up (None), and pydicom reads the file as before: the walk answers only where it gives what pydicom gives
# (tests/unit/dicom/test_parse.py compares both on every sample there is).

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TS_TAG = 0x00020010
_META_LENGTH_TAG = 0x00020000
_IMPLICIT_LE = "1.2.840.10008.1.2"
_PIXEL_TAG_SET = frozenset(PIXEL_DATA_TAGS)
_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<I").unpack_from
_tag_u16s = struct.Struct("<HH").unpack_from


class _GiveUp(Exception):
    """The walk cannot say what pydicom would: pydicom reads the file."""


def _walk_syntax(ts: str) -> bool | None:
    """Whether the dataset of transfer syntax `ts` is implicit VR (True), explicit VR little endian (False), or
    one the walk leaves to pydicom (None: big endian, deflated, unknown)."""
    if ts == _IMPLICIT_LE:
        return True
    if ts == "1.2.840.10008.1.2.1" or ts == "1.2.840.10008.1.2.5" or ts.startswith("1.2.840.10008.1.2.4."):
        return False
    return None


def _element(data: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """The element header at `pos`: (tag, VR bytes or None, value length, where the value starts)."""
    if pos + 8 > len(data):
        raise _GiveUp
    group, elem = _tag_u16s(data, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:  # items and delimiters have no VR in any syntax
        return tag, None, _u32(data, pos + 4)[0], pos + 8
    vr = data[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise _GiveUp
        return tag, vr, _u32(data, pos + 8)[0], pos + 12
    if vr not in _VRS:
        raise _GiveUp
    return tag, vr, _u16(data, pos + 6)[0], pos + 8


def _skip_undefined(data: bytes, pos: int, implicit: bool, depth: int = 0) -> int:
    """Past a sequence (or encapsulated pixel data) of undefined length whose items start at `pos`: the offset
    after its delimiter."""
    if depth > 16:
        raise _GiveUp
    while True:
        tag, _, length, pos = _element(data, pos, True)
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _GiveUp
        if length != _UNDEFINED_LENGTH:
            pos += length
            if pos > len(data):
                raise _GiveUp
            continue
        while True:  # an item of undefined length: its elements up to the item delimiter
            tag, vr, length, pos = _element(data, pos, implicit)
            if tag == _ITEM_END:
                break
            if length == _UNDEFINED_LENGTH:
                if vr not in (None, b"SQ"):
                    raise _GiveUp
                pos = _skip_undefined(data, pos, implicit, depth + 1)
            else:
                pos += length
                if pos > len(data):
                    raise _GiveUp


def walk_header(data: bytes) -> ParsedInstance | None:
    """The fields of a plain Part-10 file read straight from its bytes, as `_instance_from` would give them;
    None when pydicom must read it (see above). DicomRejected as from pydicom's reading (missing or bad UIDs)."""
    try:
        return _walk(data)
    except (_GiveUp, struct.error):
        return None


def _walk(data: bytes) -> ParsedInstance | None:
    size = len(data)
    if size < 144 or data[128:132] != b"DICM":
        return None
    # The file meta: explicit VR little endian whatever the dataset's syntax.
    pos, ts, meta_length = 132, None, None
    while pos + 8 <= size and _tag_u16s(data, pos)[0] == 0x0002:
        tag, vr, length, start = _element(data, pos, False)
        if length == _UNDEFINED_LENGTH:
            return None
        pos = start + length
        if tag == _TS_TAG:
            ts = _raw_text(data[start:pos], "UI")
        elif tag == _META_LENGTH_TAG and vr == b"UL" and length == 4:
            meta_length = _u32(data, start)[0]
    if ts is None or meta_length is None or pos > size or 144 + meta_length > size:
        return None
    implicit = _walk_syntax(ts)
    if implicit is None or pos + 8 > size:
        return None
    if implicit and data[pos + 4:pos + 6] in _VRS:  # declared implicit, written explicit: pydicom copes
        return None
    found: dict[int, tuple[bytes | None, int, int]] = {}  # every top-level element: tag: (VR, value's start, end)
    pixels = False
    while pos < size:
        tag, vr, length, start = _element(data, pos, implicit)
        if tag >> 16 == 0xFFFE:
            return None
        if length == _UNDEFINED_LENGTH:
            if not implicit and vr not in (b"SQ", b"OB", b"OW"):
                return None  # an undefined-length UN holds implicit VR inside: pydicom's business
            pos = _skip_undefined(data, start, implicit)
            found[tag] = (vr, -1, -1)
        else:
            pos = start + length
            if pos > size:
                return None  # cut: pydicom words it
            found[tag] = (vr, start, pos)
        if tag in _PIXEL_TAG_SET:
            pixels = True

    def field(keyword: str, raw, absent):
        """The element through `raw` (_raw_text, _raw_int), `absent` without it; only pydicom can say else."""
        tag, vr = _tag(keyword)
        got = found.get(tag)
        if got is None:
            return absent
        if got[1] < 0:  # a sequence where a value was expected
            raise _GiveUp
        out = raw(data[got[1]:got[2]], got[0].decode("ascii") if got[0] is not None else vr)
        if out is None:
            raise _GiveUp
        return out

    return _build(lambda kw: field(kw, _raw_text, ""), lambda kw: field(kw, _raw_int, None), ts, pixels)

