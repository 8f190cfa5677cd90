"""DICOM domain: parse, store, render, frames, zip and DICOM JSON; plain Python, no HTTP, no database."""

from __future__ import annotations

from portal.errors import Invalid


# Who wrote a file's meta (PS3.10 7.1): every DICOM file Lightbox itself writes or receives says so the same way.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.72056030569173802112884584949677597520"
IMPLEMENTATION_VERSION_NAME = "LIGHTBOX"


class DicomRejected(Invalid):
    """A file that cannot be accepted or used as DICOM; `suberror` says why."""


# Imported after DicomRejected: the submodules raise it.
from portal.dicom.dicomjson import read_metadata, to_dicom_json  # noqa: E402
from portal.dicom.frames import frame_bytes  # noqa: E402
from portal.dicom.parse import ParsedInstance, open_dataset, read_instance  # noqa: E402
from portal.dicom.render import render_frame, thumbnail  # noqa: E402
from portal.dicom.store import FileStore, StoredFile, md5_of, sanitize_filename  # noqa: E402
from portal.dicom.zipfiles import safe_extract, stream_zip  # noqa: E402

__all__ = [
    "DicomRejected",
    "FileStore",
    "ParsedInstance",
    "StoredFile",
    "frame_bytes",
    "md5_of",
    "open_dataset",
    "read_instance",
    "read_metadata",
    "render_frame",
    "safe_extract",
    "sanitize_filename",
    "stream_zip",
    "thumbnail",
    "to_dicom_json",
]
