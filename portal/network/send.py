"""Sending series to a node: a SendJob row per request, run by a task with retries.

A node with a DICOMweb URL is sent to over STOW-RS; any other over DIMSE C-STORE, each instance in the
transfer syntax it is stored in (an uncompressed one may also go out in the other uncompressed syntaxes).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)
from pynetdicom import AE

from portal import audit, clock
from portal.archive import find_series, find_study, storage
from portal.errors import Invalid, NotFound
from portal.network import nodes
from portal.tables import Instance, Node, Project, SendJob, Series, User

log = logging.getLogger("lightbox.send")

QUEUED, RUNNING, RETRYING, DONE, FAILED = "queued", "running", "retrying", "done", "failed"
MAX_ATTEMPTS = 3
RETRY_DELAYS_S = (5, 30)  # after the first and second failed attempts
TIMEOUT_S = 30
STOW_BATCH = 20  # instances per STOW-RS request
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_UNCOMPRESSED_ALL = {*UNCOMPRESSED, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}


def _loads(value):
    return json.loads(value) if isinstance(value, str) else value


def as_dict(job: dict, project_name: str) -> dict:
    return {"id": job["id"], "project": project_name, "node": job["node_name"], "via": job["via"],
            "series": _loads(job["series"]), "state": job["state"], "attempts": job["attempts"],
            "total": job["total"], "sent": job["sent"], "failed": job["failed"], "error": job["error"],
            "username": job["username"], "queued_at": clock.iso(job["queued_at"]),
            "started_at": clock.iso(job["started_at"]), "finished_at": clock.iso(job["finished_at"]),
            "status_url": f"/api/v1/projects/{project_name}/send/{job['id']}"}


async def request(project: Project, node_name: str, *, series: list[str] | None = None, study: str | None = None,
                  by: User | None = None, client: str = "") -> dict:
    """Record a send of some series (or of a whole study) of `project` to a node; the caller queues `run`."""
    node = await nodes.get(node_name)
    if bool(series) == bool(study):
        raise Invalid('Send either {"series": [SeriesInstanceUID, ...]} or {"study": StudyInstanceUID}.',
                      "no_data_submitted")
    if study:
        found = await find_study(project, study)
        uids = [r["series_instance_uid"] for r in await Series.select(Series.series_instance_uid).where(
            Series.study == found.id).order_by(Series.series_number, Series.id)]
    else:
        if not isinstance(series, list) or not all(isinstance(u, str) for u in series):
            raise Invalid("'series' is a list of SeriesInstanceUIDs.", "invalid_value")
        uids = list(dict.fromkeys(u.strip() for u in series))
        for uid in uids:
            await find_series(project, uid)  # NotFound names the missing one
    total = await Instance.count().where(Instance.project == project.id,
                                         Instance.series.series_instance_uid.is_in(uids)) if uids else 0
    job = SendJob(project=project.id, node=node.id, node_name=node.name,
                  via="dicomweb" if node.dicomweb_url else "dimse", series=json.dumps(uids), state=QUEUED,
                  total=total, username=by.username if by else "", queued_at=clock.now())
    await job.save()
    await audit.record("send_queued", user=by, object=f"project:{project.name}/send:{job.id}", client=client,
                       detail={"node": node.name, "series": len(uids), "instances": total, "via": job.via})
    return as_dict(await SendJob.select().where(SendJob.id == job.id).first(), project.name)


async def get(project: Project, job_id: int) -> dict:
    row = await SendJob.select().where(SendJob.id == job_id, SendJob.project == project.id).first()
    if row is None:
        raise NotFound(f"No send job {job_id} in project {project.name}.", "send_job_not_found")
    return as_dict(row, project.name)


async def history(project: Project, limit: int = 50) -> list[dict]:
    rows = await SendJob.select().where(SendJob.project == project.id).order_by(SendJob.id, ascending=False).limit(limit)
    return [as_dict(r, project.name) for r in rows]


@dataclass
class Work:
    """What a worker needs to run one attempt: where to, and the files."""

    job_id: int
    project: str
    node: dict
    files: list[str]  # stored file keys (portal/storage)
    attempts: int


async def start(job_id: int) -> Work | None:
    """Mark the job running (one more attempt) and list its files; None when there is nothing to do."""
    job = await SendJob.select().where(SendJob.id == job_id).first()
    if job is None or job["state"] in (DONE, FAILED, RUNNING):
        return None
    project = await Project.objects().get(Project.id == job["project"])
    node = await Node.select().where(Node.id == job["node"]).first() if job["node"] else None
    if node is None:
        await _finish(job_id, FAILED, error=f"The node '{job['node_name']}' was deleted.")
        return None
    rows = await Instance.select(Instance.file_key).where(
        Instance.project == job["project"], Instance.series.series_instance_uid.is_in(_loads(job["series"]) or [""])
    ).order_by(Instance.series, Instance.instance_number, Instance.id)
    attempts = job["attempts"] + 1
    await SendJob.update({SendJob.state: RUNNING, SendJob.attempts: attempts, SendJob.started_at: clock.now(),
                          SendJob.total: len(rows)}).where(SendJob.id == job_id)
    return Work(job_id, project.name, node, [r["file_key"] for r in rows], attempts)


async def _finish(job_id: int, state: str, **changes) -> None:
    values = {SendJob.state: state, **{getattr(SendJob, k): v for k, v in changes.items()}}
    if state in (DONE, FAILED):
        values[SendJob.finished_at] = clock.now()
    await SendJob.update(values).where(SendJob.id == job_id)


async def record(work: Work, sent: int, failed: int, error: str) -> float | None:
    """Store an attempt's outcome; the delay before the next attempt, or None when the job is over."""
    if not error and not failed:
        await _finish(work.job_id, DONE, sent=sent, failed=0, error="")
        state, delay = DONE, None
    elif work.attempts < MAX_ATTEMPTS:
        await _finish(work.job_id, RETRYING, sent=sent, failed=failed, error=error)
        state, delay = RETRYING, RETRY_DELAYS_S[min(work.attempts, len(RETRY_DELAYS_S)) - 1]
    else:
        await _finish(work.job_id, FAILED, sent=sent, failed=failed, error=error)
        state, delay = FAILED, None
    if state != RETRYING:
        await audit.record("send_" + state, username="", object=f"project:{work.project}/send:{work.job_id}",
                           detail={"node": work.node["name"], "sent": sent, "failed": failed, "error": error,
                                   "attempts": work.attempts})
    return delay


# -- the transfer itself (blocking: runs in a worker thread) ------------------------------------------


def transfer(work: Work, progress: Callable[[int], None] | None = None) -> tuple[int, int, str]:
    """Send every file of the job; (sent, failed, error) where error is '' when all arrived."""
    if not work.files:
        return 0, 0, ""
    if work.node["dicomweb_url"]:
        return stow(work.node["dicomweb_url"], work.files)
    return c_store(work.node, work.files)


def _file_meta(store, key: str):
    with store.open(key) as f:
        return dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta


def contexts_for(files: list[str]) -> tuple[list[tuple[str, list[str]]], list[str], int]:
    """Presentation contexts for the stored files' (SOP class, transfer syntax) pairs, and the readable ones."""
    pairs: dict[str, set[str]] = {}
    readable, unreadable = [], 0
    store = storage()
    for path in files:
        try:
            meta = _file_meta(store, path)
            sop_class, syntax = str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
        except Exception:
            unreadable += 1
            continue
        readable.append(path)
        wanted = pairs.setdefault(sop_class, set())
        wanted.update(UNCOMPRESSED if syntax in _UNCOMPRESSED_ALL else (syntax,))
        if syntax in _UNCOMPRESSED_ALL:
            wanted.add(syntax)
    # One context per (class, syntax) so that the peer may accept some syntaxes of a class and not others.
    contexts = [(c, [s]) for c, syntaxes in sorted(pairs.items()) for s in sorted(syntaxes)]
    return contexts, readable, unreadable


def c_store(node: dict, files: list[str], *, calling_ae: str = nodes.LOCAL_AE_TITLE) -> tuple[int, int, str]:
    contexts, readable, failed = contexts_for(files)
    if len(contexts) > 128:
        return 0, len(files), "More than 128 SOP class/transfer syntax pairs in one send; send fewer series at once."
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(node["host"], node["port"], ae_title=node["ae_title"])
    if not assoc.is_established:
        what = "rejected the association" if assoc.is_rejected else "could not be reached"
        return 0, len(files), f"{node['ae_title']} at {node['host']}:{node['port']} {what}."
    sent, attempted, errors = 0, 0, []
    store = storage()
    try:
        for path in readable:
            if not assoc.is_established:  # aborted by the peer: the rest count as failed
                break
            attempted += 1
            try:
                with store.local_copy(path) as local:
                    status = assoc.send_c_store(local)
            except ValueError as exc:  # no accepted context for this class and syntax
                failed += 1
                errors.append(str(exc).splitlines()[0][:200])
                continue
            code = status.get("Status") if status else None
            if code is not None and (code == 0 or code & 0xF000 == 0xB000):  # success or warning
                sent += 1
            else:
                failed += 1
                errors.append(f"{path.rsplit('/', 1)[-1]}: status {code:#06x}" if code is not None
                              else "no response")
    finally:
        if assoc.is_established:
            assoc.release()
    failed += len(readable) - attempted
    error = "" if not failed else (f"{failed} of {len(files)} instance(s) not stored"
                                   + (f" ({errors[0]})" if errors else ""))
    return sent, failed, error


def stow(url: str, files: list, read: Callable | None = None) -> tuple[int, int, str]:
    """STOW-RS the stored files (keys; or anything `read` turns into a file's bytes) to `{url}/studies` in
    batches, as stored (application/dicom parts)."""
    import httpx

    sent, failed, errors = 0, 0, []
    read = read or storage().read_bytes
    with httpx.Client(timeout=TIMEOUT_S) as http:
        for i in range(0, len(files), STOW_BATCH):
            batch = files[i:i + STOW_BATCH]
            boundary = uuid.uuid4().hex
            body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                            + read(p) + b"\r\n" for p in batch) + b"--" + boundary.encode() + b"--\r\n"
            try:
                rsp = http.post(f"{url}/studies", content=body, headers={
                    "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                    "Accept": "application/dicom+json"})
            except httpx.HTTPError as exc:
                return sent, len(files) - sent, f"STOW-RS to {url} failed: {exc}"
            if rsp.status_code in (200, 202):
                bad = _stow_failures(rsp)
                sent += len(batch) - bad
                failed += bad
                if bad:
                    errors.append(f"{bad} instance(s) refused by the server")
            else:
                failed += len(batch)
                errors.append(f"HTTP {rsp.status_code}: {rsp.text[:200]}")
    return sent, failed, "; ".join(errors)


def _stow_failures(rsp) -> int:
    """How many instances the STOW-RS response lists as failed (FailedSOPSequence, 0008,1198)."""
    try:
        data = rsp.json()
    except Exception:
        return 0
    if isinstance(data, list):
        data = data[0] if data else {}
    return len(((data or {}).get("00081198") or {}).get("Value") or [])

