"""Volume files (NIfTI, MGZ, NRRD) into the archive: converted to DICOM images (portal/dicom/volumes.py) that go
through the one ingest path like any instance; the volume itself is kept in the store and recorded with MIQA's
names (lb_volume_source), so that exports can give MIQA back its own file.

Re-sending the same file gives the same images (*already stored*). A changed file under the same names (project,
experiment, scan, frame) is a new version: its images replace the previous version's in the same series (so
the series' decisions, forms and flags stay with it), and the previous volume stays in the store, recorded as
not current.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from portal import clock
from portal.archive import ingest as ingest_mod
from portal.dicom import DicomRejected
from portal.dicom import volumes as vol
from portal.dicom.parse import ReadFile, read_once
from portal.tables import Archive, Instance, Project, Series, VolumeSource

log = logging.getLogger("lightbox.volumes")

is_volume_file = vol.is_volume_file
volume_format = vol.volume_format


@dataclass
class Scan:
    """Where a volume belongs, in MIQA's words."""

    experiment: str
    scan: str
    frame: int = 0
    scan_type: str = ""
    notes: str = ""
    subject_id: str = ""
    session_id: str = ""
    scan_link: str = ""
    file_location: str = ""  # where it came from (shown, and given back by exports)


def _stem(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    for suffix in vol.SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or base
    return base


def scan_of_upload(name: str) -> Scan:
    """Names for a volume sent without an import file: the scan is the file's name without its suffix, the
    experiment its folder (inside a zip or an ingested folder), else the scan's name too."""
    path = PurePosixPath(name.replace("\\", "/"))
    scan = _stem(name)
    parent = str(path.parent) if str(path.parent) not in ("", ".") else ""
    return Scan(experiment=(parent or scan)[:256], scan=scan[:256], file_location=name)


def scan_of_frame(frame) -> Scan:
    """An import file's frame (exchange.records.FrameIn) as the scan its volume is."""
    return Scan(experiment=frame.experiment, scan=frame.scan, frame=frame.frame_number, scan_type=frame.scan_type,
                notes=frame.notes, subject_id=frame.subject_id, session_id=frame.session_id,
                scan_link=frame.scan_link, file_location=frame.file_location)


def _modality(scan_type: str) -> str:
    return "CT" if scan_type.strip().upper().startswith("CT") else "MR"


@dataclass
class Converted:
    """A volume read and written as DICOM: its images read as ingest reads any file."""

    scan: Scan
    format: str
    md5: str
    data: bytes
    reads: list[ReadFile] = field(default_factory=list)
    size: int = 0

    def light(self) -> "Converted":
        """Without the bytes (what an import's plan keeps between reading and placing)."""
        return Converted(scan=self.scan, format=self.format, md5=self.md5, data=b"", size=self.size,
                         reads=[ReadFile(r.parsed, r.md5, r.size, None) for r in self.reads])

    @property
    def series_uid(self) -> str:
        return self.reads[0].parsed.series_instance_uid

    @property
    def study_uid(self) -> str:
        return self.reads[0].parsed.study_instance_uid


def convert(project: Project, scan: Scan, *, path: Path | None = None, data: bytes | None = None,
            name: str = "") -> Converted:
    """Read and convert a volume (blocking: call it in a thread); DicomRejected says why it cannot be used."""
    if data is None:
        data = Path(path).read_bytes()
    name = name or (path.name if path else scan.file_location) or "volume"
    names = vol.Names(project=project.name, experiment=scan.experiment, scan=scan.scan, frame=scan.frame,
                      scan_type=scan.scan_type, subject_id=scan.subject_id, session_id=scan.session_id,
                      modality=_modality(scan.scan_type))
    volume, files = vol.convert(data, PurePosixPath(name).name, names)
    return Converted(scan=scan, format=volume.format, md5=volume.md5, data=data, size=len(data),
                     reads=[read_once(data=b) for b in files])


def prepare(project: Project, scan: Scan, path: Path | None = None, data: bytes | None = None,
            name: str = "") -> Converted | DicomRejected:
    try:
        return convert(project, scan, path=path, data=data, name=name)
    except DicomRejected as exc:
        return exc
    except OSError as exc:
        return DicomRejected(f"{name or path}: cannot read it ({exc.strerror}).", "unreadable")


def source_key(project: Project, scan: Scan, md5: str) -> str:
    digest = hashlib.sha1("\x1f".join([scan.experiment, scan.scan, str(scan.frame), md5]).encode()).hexdigest()
    return f"{project.id}:{digest}"


def _volume_file_key(project: Project, conv: Converted) -> str:
    suffix = {"nifti": ".nii.gz" if conv.data[:2] == b"\x1f\x8b" else ".nii",
              "mgh": ".mgz" if conv.data[:2] == b"\x1f\x8b" else ".mgh", "nrrd": ".nrrd"}[conv.format]
    return ingest_mod.storage().key_for(f"{project.id}/volume/{conv.md5}", suffix=suffix)


def place_volume(project: Project, conv: Converted) -> str:
    """Keep the volume itself in the store (content-addressed: the same file is kept once); its key."""
    store = ingest_mod.storage()
    key = _volume_file_key(project, conv)
    if not store.exists(key):
        store.place(key, data=conv.data)
    return key


def place_slices(project: Project, conv: Converted) -> list[tuple[ReadFile, str, bool]]:
    """Write the images into the store under the keys ingest gives them (before an import's transaction):
    [(read, key, whether it was written now)]."""
    store = ingest_mod.storage()
    out = []
    for r in conv.reads:
        key = store.key_for(f"{project.id}/{r.parsed.sop_instance_uid}/{r.md5}")
        new = not store.exists(key)
        if new:
            store.place(key, data=r.data)
        out.append((r, key, new))
    return out


async def record_source(project: Project, conv: Converted, file_key: str, *, after_commit: list | None = None) -> bool:
    """The volume's row (MIQA's names, where it came from, its stored copy); a changed file becomes the current
    version and the previous version's images leave the series. Returns whether the row is new. Inside a
    caller's transaction, the replaced images' files are deleted by `after_commit` once it commits."""
    key = source_key(project, conv.scan, conv.md5)
    if await VolumeSource.exists().where(VolumeSource.key == key):
        return False
    series = await Series.objects().get(Series.key == f"{project.id}:{conv.series_uid}")
    s = conv.scan
    same_frame = ((VolumeSource.project == project.id) & (VolumeSource.experiment == s.experiment)
                  & (VolumeSource.scan == s.scan) & (VolumeSource.frame_number == s.frame))
    older = await VolumeSource.select(VolumeSource.md5, VolumeSource.slices).where(
        same_frame & (VolumeSource.current == True))  # noqa: E712
    await VolumeSource.update({VolumeSource.current: False}).where(same_frame & (VolumeSource.key != key))
    inserted = await _insert_once(key, VolumeSource(
        key=key, project=project.id, series=series.id, experiment=s.experiment[:256], scan=s.scan[:256],
        frame_number=s.frame, scan_type=s.scan_type[:64], file_location=s.file_location, file_key=file_key,
        md5=conv.md5, size=conv.size, format=conv.format, notes=s.notes, subject_id=s.subject_id[:64],
        session_id=s.session_id[:64], scan_link=s.scan_link, slices=len(conv.reads), current=True,
        created_at=clock.now()))
    if not inserted:
        return False
    replaced: list[str] = []
    for old in older:
        sops = [vol.sop_uid(project.name, s.experiment, s.scan, s.frame, n, old["md5"]) for n in range(old["slices"])]
        keys = [f"{project.id}:{sop}" for sop in sops]
        replaced += await Instance.select(Instance.file_key).where(Instance.key.is_in(keys)).output(as_list=True)
        await Instance.delete().where(Instance.key.is_in(keys))
    if replaced:
        log.info("volume %s / %s frame %s: a new version replaced %d images", s.experiment, s.scan, s.frame,
                 len(replaced))
        store = ingest_mod.storage()
        if after_commit is not None:
            after_commit.append(lambda: [store.delete(k) for k in replaced])
        else:
            await asyncio.to_thread(lambda: [store.delete(k) for k in replaced])
    return True


async def _insert_once(key: str, row: VolumeSource) -> bool:
    """Insert; False when a concurrent ingest of the same volume inserted it first (the unique key)."""
    try:
        await VolumeSource.insert(row)
    except Exception:
        if await VolumeSource.exists().where(VolumeSource.key == key):
            return False
        raise
    return True


async def ingest_volume(conv: Converted | DicomRejected, project: Project, archive: Archive | None, *,
                        filename: str) -> list:
    """Store a converted volume's images through the one ingest path, then record the volume."""
    if isinstance(conv, DicomRejected):
        return [ingest_mod.IngestResult(status=ingest_mod.REJECTED, filename=filename, reason=conv.detail,
                                        suberror=conv.suberror)]
    results = await ingest_mod.ingest_prepared(
        [(r, None, f"{filename} [image {n}]") for n, r in enumerate(conv.reads, 1)], project, archive,
        return_exceptions=True)
    if all(isinstance(r, ingest_mod.IngestResult) and r.ok for r in results):
        key = await asyncio.to_thread(place_volume, project, conv)
        await record_source(project, conv, key)
    return results


async def sources_of_series(series_id: int) -> list[dict]:
    """The current volumes behind a series (frame order): what the series page shows."""
    return await VolumeSource.select().where((VolumeSource.series == series_id)
                                             & (VolumeSource.current == True)).order_by(  # noqa: E712
        VolumeSource.frame_number)


async def sources_of_project(project: Project) -> dict[int, list[dict]]:
    """series id -> its current volumes, frame order (for exports)."""
    out: dict[int, list[dict]] = {}
    for r in await VolumeSource.select().where((VolumeSource.project == project.id)
                                               & (VolumeSource.current == True)).order_by(  # noqa: E712
            VolumeSource.frame_number):
        out.setdefault(r["series"], []).append(r)
    return out


async def notes_of_study(study_id: int) -> str:
    """The MIQA experiment's notes of a study made from volumes ("" for any other study)."""
    row = await VolumeSource.select(VolumeSource.notes).where(
        (VolumeSource.series.study == study_id) & (VolumeSource.current == True)).first()  # noqa: E712
    return row["notes"] if row else ""
