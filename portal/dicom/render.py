"""Render one frame of a DICOM file to an 8-bit PNG or JPEG: modality LUT, VOI window, colour."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from portal.dicom import DicomRejected
from portal.dicom.parse import number_of_frames, open_dataset, transfer_syntax_of

FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}


def render_frame(path: str | Path, frame: int = 0, *, window_center: float | None = None,
                 window_width: float | None = None, size: int | None = None, fmt: str = "png",
                 invert: bool = False, auto_window: bool = False) -> bytes:
    """Frame `frame` (0-based) of `path` as image bytes; `size` is the longest edge of a smaller copy.
    `auto_window`: the 1st-99th percentile of the pixels instead of the header's window (as the viewer does for
    projection images)."""
    if fmt.lower() not in FORMATS:
        raise DicomRejected(f"Cannot render as {fmt!r}; choose png or jpeg.", "unsupported_format")
    ds = open_dataset(path)
    arr = frame_array(path, frame, ds=ds)
    if size:
        arr = _shrink(arr, size)
    if auto_window and arr.ndim == 2 and window_center is None:
        values = _modality(arr, ds, frame)
        lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
        window_center, window_width = (lo + hi) / 2, max(hi - lo, 1.0)
    image = to_image(arr, ds, frame, window_center=window_center, window_width=window_width, invert=invert)
    return _encode(image, size, fmt)


def _shrink(arr: np.ndarray, size: int) -> np.ndarray:
    """Average k×k blocks first when a small copy of a big frame is wanted: windowing a 2k radiograph costs ~1 s,
    its block means a few ms (the viewer's first pixels wait on this). Keeps at least `size` pixels a side."""
    k = max(arr.shape[0], arr.shape[1]) // size
    if k < 2:
        return arr
    h, w = arr.shape[0] // k * k, arr.shape[1] // k * k
    blocks = arr[:h, :w].reshape(h // k, k, w // k, k, *arr.shape[2:])
    return blocks.mean(axis=(1, 3)).round().astype(arr.dtype)


def thumbnail(path: str | Path, size: int = 128) -> bytes:
    """A PNG of the middle frame, at most `size` pixels on its longest edge."""
    ds = open_dataset(path)
    frame = max(number_of_frames(ds), 1) // 2
    arr = frame_array(path, frame, ds=ds)
    return _encode(to_image(arr, ds, frame), size, "png")


def frame_array(path: str | Path, frame: int = 0, *, ds: Dataset | None = None) -> np.ndarray:
    """The decoded stored values of one frame (0-based); colour data comes back as RGB."""
    ds = ds if ds is not None else open_dataset(path)
    n = number_of_frames(ds)
    if n == 0:
        raise DicomRejected("The file has no pixel data to show.", "no_pixel_data")
    if not 0 <= frame < n:
        raise DicomRejected(f"Frame {frame + 1} does not exist; the file has {n} frame(s).", "frame_not_found")
    tsyntax = transfer_syntax_of(ds)
    try:
        if tsyntax == DeflatedExplicitVRLittleEndian:
            # The whole dataset is one deflate stream: there is no pixel data offset to seek to.
            return pixel_array(open_dataset(path, defer_size=None), index=frame)
        # From the path, pydicom reads and decodes only the frame asked for.
        return pixel_array(str(path), index=frame, transfer_syntax_uid=tsyntax)
    except Exception as exc:  # decoders raise many types; all mean the same to the caller
        raise DicomRejected(
            f"Cannot decode the pixel data ({tsyntax.name}, {tsyntax}): {exc}", "cannot_decode",
        ) from exc


def to_image(arr: np.ndarray, ds: Dataset, frame: int = 0, *, window_center: float | None = None,
             window_width: float | None = None, invert: bool = False) -> Image.Image:
    """An 8-bit greyscale or RGB image of a decoded frame."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        rgb = arr if arr.dtype == np.uint8 else (arr >> 8).astype(np.uint8)  # 16-bit LUT entries
    elif arr.ndim == 3:
        # Colour frames arrive as RGB (pydicom converts YBR); scale deep colour to 8 bits.
        rgb = arr if arr.dtype == np.uint8 else _scale(arr, int(ds.get("BitsStored") or 8))
    else:
        grey = _window(arr, ds, frame, window_center, window_width)
        if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1
            grey = 255 - grey
        if invert:
            grey = 255 - grey
        return Image.fromarray(grey)
    if invert:
        rgb = 255 - rgb
    return Image.fromarray(np.ascontiguousarray(rgb))


def _window(arr: np.ndarray, ds: Dataset, frame: int, center: float | None, width: float | None) -> np.ndarray:
    values = _modality(arr, ds, frame)
    function = str(_frame_value(ds, frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").upper()
    if center is None or width is None:
        center = _first(_frame_value(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
        width = _first(_frame_value(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
        if (center is None or width is None) and "VOILUTSequence" in ds:
            # A VOI LUT table instead of a window: apply it, then stretch its output.
            values = apply_voi_lut(apply_modality_lut(arr, ds), ds, prefer_lut=True).astype(np.float32)
            center = width = None
    if center is None or width is None or width <= 0:
        lo, hi = float(values.min()), float(values.max())
        center, width, function = (lo + hi) / 2 + 0.5, max(hi - lo, 0) + 1, "LINEAR"
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        out = (values - center) / width + 0.5
    else:  # LINEAR, PS3.3 C.11.2.1.2
        out = (values - (center - 0.5)) / max(width - 1.0, 1e-3) + 0.5
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _modality(arr: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Stored values to modality units (e.g. Hounsfield): LUT table, else rescale slope/intercept."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds).astype(np.float32)
    slope = _first(_frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    values = arr.astype(np.float32)  # ample for display, half the memory of float64
    if slope is not None and slope != 0:
        values *= slope
    if intercept:
        values += intercept
    return values


def _frame_value(ds: Dataset, frame: int, group_keyword: str, keyword: str):
    """An attribute from the frame's functional groups (enhanced objects), else from the top level."""
    for container, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        try:
            item = ds[container][index]
            value = item[group_keyword][0].get(keyword)
        except (KeyError, IndexError, TypeError):
            continue
        if value is not None and value != "":
            return value
    value = ds.get(keyword)
    return None if value == "" else value


def _first(value) -> float | None:
    """The first number of a possibly multi-valued element."""
    if value is None:
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__getitem__"):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _scale(arr: np.ndarray, bits: int) -> np.ndarray:
    top = float((1 << max(bits, 1)) - 1)
    return (np.clip(arr.astype(np.float64) / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _encode(image: Image.Image, size: int | None, fmt: str) -> bytes:
    if size:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)  # shrinks only, keeps aspect
    out = io.BytesIO()
    kind = FORMATS[fmt.lower()]
    # PNG level 3: a tenth larger than the default 6 and four times faster on a chest radiograph.
    image.save(out, kind, **({"quality": 90} if kind == "JPEG" else {"compress_level": 3}))
    return out.getvalue()
