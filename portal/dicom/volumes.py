"""NIfTI (.nii, .nii.gz), MGZ/MGH and NRRD volumes as DICOM series: one representation inside.

A volume is read with the format's own library (nibabel for NIfTI and MGZ/MGH, pynrrd for NRRD) and written
as one MR (or CT) image per slice with pydicom. Per-slice legacy images rather than an enhanced multi-frame
object (highdicom's strength): every part of Lightbox (stack and MPR viewer, WADO frames, the quality model,
C-STORE to old PACS) already reads them, and they need no functional-group walk.

Geometry comes from the affine. nibabel's world is RAS+, DICOM's patient space is LPS+, so the affine is
flipped in x and y; voxel (i, j, k) is pixel (column i, row j) of slice k, so ImageOrientationPatient is the
affine's first two columns, PixelSpacing their lengths, and each slice's ImagePositionPatient the world
position of voxel (0, 0, k): a voxel's patient position from DICOM equals nibabel's (flipped), oblique
affines included. Integer data within 16 bits is stored as is; anything else (float, wider integers) is
mapped linearly onto 16 bits with one RescaleSlope/RescaleIntercept for the whole volume, so a window means
the same on every slice. A 4D volume (fMRI, DWI) is one series: the slices of each time point carry
TemporalPositionIdentifier t+1 and instance numbers run on through the time points.

Every UID is derived from (project, experiment, scan) (the SOP UIDs also from the frame, slice and the
volume's MD5), and nothing time-dependent is written, so converting the same file twice gives the same
bytes (a re-import is *already stored*) and a changed file gives new instances (a new version).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from portal.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, DicomRejected

SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".nrrd")
# Fixed so that the bytes of a converted volume do not change with the pydicom version.
MAX_VOXELS = 512 * 1024 * 1024  # a bigger volume is refused before its data is read
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_format(name: str, head: bytes = b"") -> str:
    """"nifti", "mgh" or "nrrd" when `name` (or the first bytes) says the file is such a volume, else ""."""
    lower = name.lower()
    if lower.endswith((".nii.gz", ".nii")):
        return "nifti"
    if lower.endswith((".mgz", ".mgh")):
        return "mgh"
    if lower.endswith(".nrrd"):
        return "nrrd"
    if head[:4] == b"NRRD":
        return "nrrd"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"n+2\x00"):
        return "nifti"
    return ""


def is_volume_file(path: Path, name: str = "") -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(352)
    except OSError:
        return False
    return bool(volume_format(name or path.name, head))


@dataclass
class Volume:
    data: np.ndarray  # (i, j, k) or (i, j, k, t)
    affine: np.ndarray  # voxel (i, j, k, 1) -> RAS+ mm
    format: str
    md5: str


@dataclass
class Names:
    """MIQA's names of the scan the volume is, as they go into the DICOM header."""

    project: str
    experiment: str
    scan: str
    frame: int = 0
    scan_type: str = ""
    subject_id: str = ""
    session_id: str = ""
    modality: str = "MR"
    extra: dict = field(default_factory=dict)


def _reject(reason: str, suberror: str = "bad_volume") -> DicomRejected:
    return DicomRejected(reason, suberror)


def load(data: bytes, name: str) -> Volume:
    """Read volume bytes; DicomRejected (with a reason a person can act on) when it cannot be used."""
    fmt = volume_format(name, data[:352])
    md5 = hashlib.md5(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise _reject(f"{name} is a damaged or truncated gzip file ({exc}); send the complete file.",
                          "truncated") from None
    else:
        raw = data
    if not fmt:
        fmt = volume_format("", raw[:352])
    if fmt == "nrrd":
        vol, affine = _load_nrrd(raw, name)
    elif fmt in ("nifti", "mgh"):
        vol, affine = _load_nibabel(raw, name, fmt)
    else:
        raise _reject(f"{name} is not a NIfTI, MGZ or NRRD volume.", "not_volume")
    if vol.ndim == 2:
        vol = vol[:, :, None]
    while vol.ndim > 4 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    if vol.ndim > 4:
        raise _reject(f"{name} has {vol.ndim} dimensions; 3D and 4D volumes are supported.", "unsupported_shape")
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.size == 0:
        raise _reject(f"{name} holds no voxels.", "empty_volume")
    if vol.dtype.kind not in "iufb":
        raise _reject(f"{name} holds {vol.dtype} voxels (complex or RGB); only scalar integer or float volumes "
                      "can be shown as images.", "unsupported_datatype")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise _reject(f"{name} has no usable affine (voxel-to-world matrix); set its orientation "
                      "(qform or sform) and try again.", "no_affine")
    return Volume(data=vol, affine=affine, format=fmt, md5=md5)


def _load_nibabel(raw: bytes, name: str, fmt: str):
    import nibabel as nib

    try:
        if fmt == "mgh":
            img = nib.MGHImage.from_bytes(raw)
        else:
            try:
                img = nib.Nifti1Image.from_bytes(raw)
            except Exception:
                img = nib.Nifti2Image.from_bytes(raw)
    except Exception as exc:
        raise _reject(f"{name} is not a readable {'MGZ' if fmt == 'mgh' else 'NIfTI'} file: {exc}.",
                      "bad_volume") from None
    if fmt == "nifti":
        header = img.header
        if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
            raise _reject(f"{name} has no affine: neither its qform nor its sform is set, so where its voxels lie "
                          "in the patient is unknown. Set the orientation (e.g. with fslorient) and try again.",
                          "no_affine")
    if int(np.prod(img.shape)) > MAX_VOXELS:
        raise _reject(f"{name} has {int(np.prod(img.shape))} voxels; at most {MAX_VOXELS} are accepted.", "too_large")
    dtype = img.get_data_dtype()
    if dtype.kind == "c" or dtype.names:
        raise _reject(f"{name} holds {dtype} voxels (complex or RGB); only scalar integer or float volumes can be "
                      "shown as images.", "unsupported_datatype")
    try:
        vol = np.asanyarray(img.dataobj)  # scl_slope/scl_inter applied
    except Exception as exc:
        raise _reject(f"{name}: its voxel data cannot be read ({exc}); the file may be truncated.",
                      "truncated") from None
    return vol, img.affine


def _load_nrrd(raw: bytes, name: str):
    import nrrd

    try:
        header = nrrd.read_header(io.BytesIO(raw))
    except Exception as exc:
        raise _reject(f"{name} is not a readable NRRD file: {exc}.", "bad_volume") from None
    if "data file" in header or "datafile" in header:
        raise _reject(f"{name} is a detached NRRD header; send the .nrrd with its data attached.", "bad_volume")
    directions = header.get("space directions")
    if directions is None or "space origin" not in header:
        raise _reject(f"{name} has no affine: its header lacks 'space directions' or 'space origin'.", "no_affine")
    try:
        # The header reader leaves the stream at the data; read it from the same bytes.
        f = io.BytesIO(raw)
        nrrd.read_header(f)
        vol = nrrd.read_data(header, f, name)
    except Exception as exc:
        raise _reject(f"{name}: its voxel data cannot be read ({exc}); the file may be truncated.",
                      "truncated") from None
    rows = [np.asarray(d, dtype=float) if d is not None and not np.any(np.isnan(np.asarray(d, dtype=float)))
            else None for d in directions]
    spatial = [r for r in rows if r is not None]
    if len(spatial) != 3:
        raise _reject(f"{name} has {len(spatial)} spatial axes; a volume needs 3.", "unsupported_shape")
    axes = [i for i, r in enumerate(rows) if r is not None]
    others = [i for i, r in enumerate(rows) if r is None]
    vol = np.transpose(vol, axes + others)  # spatial axes first, a list (time, gradient) axis last
    affine = np.eye(4)
    affine[:3, :3] = np.stack(spatial, axis=1)
    affine[:3, 3] = np.asarray(header["space origin"], dtype=float)
    space = str(header.get("space", "left-posterior-superior")).lower()
    flip = {"left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1), "right-anterior-superior": (1, 1, 1),
            "ras": (1, 1, 1), "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1)}.get(space)
    if flip is None:
        raise _reject(f"{name} is in space '{space}'; patient spaces (RAS, LPS, LAS) are supported.", "no_affine")
    return vol, np.diag([*flip, 1.0]) @ affine  # to RAS+, as nibabel gives


def patient_affine(volume: Volume) -> np.ndarray:
    """Voxel (i, j, k, 1) -> DICOM patient coordinates (LPS+, mm)."""
    return _LPS @ volume.affine


_NAMESPACE = uuid.UUID("6b1f0c1e-5d2a-4c39-9a57-6c1e0d4a7b21")


def _uid(*parts) -> str:
    """A 2.25 UID (PS3.5 B.2) from a name-based UUID: the same parts give the same UID everywhere."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, "\x1f".join(map(str, parts))).int)


def study_uid(project: str, experiment: str) -> str:
    return _uid(project, experiment)


def series_uid(project: str, experiment: str, scan: str) -> str:
    return _uid(project, experiment, scan)


def sop_uid(project: str, experiment: str, scan: str, frame: int, number: int, md5: str) -> str:
    """The SOP Instance UID of image `number` (0-based, through the time points) of a volume with `md5`."""
    return _uid(project, experiment, scan, frame, number, md5)


def _ds(value) -> str:
    """A decimal string of at most 16 characters (DS)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.8g}" if abs(value) < 1e15 else f"{value:.6e}"
    return text if text != "-0" else "0"


def _to_stored(data: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """16-bit stored values and the (slope, intercept) that give the voxel values back; signed?"""
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind in "iu" or (data.dtype.kind == "f" and np.all(np.isfinite(data))
                                   and np.all(data == np.round(data))):
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 65535:
            return data.astype(np.uint16), 1.0, 0.0, False
        if lo >= -32768 and hi <= 32767:
            return data.astype(np.int16), 1.0, 0.0, True
    values = data.astype(np.float64)
    finite = np.isfinite(values)
    lo = float(values[finite].min()) if finite.any() else 0.0
    hi = float(values[finite].max()) if finite.any() else 0.0
    values[~finite] = lo  # NaN and infinities show as the lowest value
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((values - lo) / slope).clip(0, 65535).astype(np.uint16)
    return stored, slope, lo, False


def to_datasets(volume: Volume, names: Names) -> list[Dataset]:
    """The DICOM images of `volume`: one per slice (and per time point), geometry from the affine."""
    data = volume.data
    nt = data.shape[3] if data.ndim == 4 else 1
    nx, ny, nz = data.shape[:3]
    affine = patient_affine(volume)
    col_vec, row_vec, slice_vec = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    dx, dy, dz = (float(np.linalg.norm(v)) for v in (col_vec, row_vec, slice_vec))
    if abs(float(np.dot(col_vec, row_vec))) / (dx * dy) > 1e-3:
        raise _reject("The volume's affine shears the slice plane (its first two axes are not perpendicular); "
                      "DICOM images cannot carry that. Resample it to a rectangular grid first.", "sheared_affine")
    orientation = [*(col_vec / dx), *(row_vec / dy)]
    stored, slope, intercept, signed = _to_stored(data)
    ct = names.modality.upper() == "CT"
    sop_class = CTImageStorage if ct else MRImageStorage
    study = study_uid(names.project, names.experiment)
    series = series_uid(names.project, names.experiment, names.scan)
    frame_of_reference = _uid(names.project, names.experiment, "frame-of-reference")
    normal = np.cross(orientation[:3], orientation[3:])
    out = []
    for t in range(nt):
        for k in range(nz):
            plane = stored[:, :, k, t] if nt > 1 else stored[:, :, k]
            pixels = np.ascontiguousarray(plane.T)  # rows = j, columns = i
            position = affine @ np.array([0.0, 0.0, float(k), 1.0])
            number = t * nz + k + 1
            sop = sop_uid(names.project, names.experiment, names.scan, names.frame, number - 1, volume.md5)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = sop
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
            meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.ImageType = ["DERIVED", "PRIMARY"]
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop
            ds.Modality = "CT" if ct else "MR"
            ds.PatientID = names.subject_id[:64]
            ds.PatientName = ""
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.FrameOfReferenceUID = frame_of_reference
            ds.StudyDescription = names.experiment[:64]
            ds.StudyID = names.session_id[:16]
            ds.AccessionNumber = names.session_id[:16]
            ds.SeriesDescription = (names.scan_type or names.scan)[:64]
            ds.ProtocolName = names.scan[:64]
            ds.SeriesNumber = 1
            ds.InstanceNumber = number
            ds.AcquisitionNumber = t + 1
            if nt > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = nt
            ds.ImageComments = f"Converted from {volume.format.upper()} (frame {names.frame})"
            ds.ImagePositionPatient = [_ds(v) for v in position[:3]]
            ds.ImageOrientationPatient = [_ds(v) for v in orientation]
            ds.SliceLocation = _ds(float(np.dot(normal, position[:3])))
            ds.PixelSpacing = [_ds(dy), _ds(dx)]  # row spacing (between rows), column spacing
            ds.SliceThickness = _ds(dz)
            ds.SpacingBetweenSlices = _ds(dz)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(ny), int(nx)
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if signed else 0
            ds.RescaleSlope = _ds(slope)
            ds.RescaleIntercept = _ds(intercept)
            if not ct:
                ds.RescaleType = "US"
            lo, hi = float(stored.min()) * slope + intercept, float(stored.max()) * slope + intercept
            ds.WindowCenter = _ds((lo + hi) / 2)
            ds.WindowWidth = _ds(max(hi - lo, 1e-6))
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
            out.append(ds)
    return out


def to_dicom_bytes(volume: Volume, names: Names) -> list[bytes]:
    """`to_datasets`, each written as a Part-10 file (same input, same bytes)."""
    files = []
    for ds in to_datasets(volume, names):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    return files


def convert(data: bytes, name: str, names: Names) -> tuple[Volume, list[bytes]]:
    """Read volume bytes and write its DICOM files; DicomRejected says why a volume cannot be used."""
    volume = load(data, name)
    return volume, to_dicom_bytes(volume, names)
